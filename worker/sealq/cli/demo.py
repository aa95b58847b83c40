"""`sealq demo`: arguments, the stand-in's lifetime and printing; the demo itself (the mix,
the worker run, the checks) is `sealq.demo.run`, imported only when the command runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealq.errors import SealqError
from sealq.extras import require

if TYPE_CHECKING:
    from sealq.demo.run import Mix


def add_demo_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser("demo", help="run sealq end to end on the embedded local AWS stand-in")
    p.add_argument("--report", type=Path, help="also write the summary as JSON to this file")
    p.add_argument("--timeout-s", type=float, default=120.0, help="give up after this long")
    p.add_argument(
        "--keep", action="store_true", help="leave the stand-in running afterwards (Ctrl-C stops it)"
    )
    p.set_defaults(func=cmd_demo)


def render(report: dict[str, Any], mix: Mix, problems: list[str]) -> str:
    expected = mix.expected()
    rows = [("handled", report["handled"], expected["handled"])]
    rows += [
        (f"dead-lettered: {r}", report["dead_lettered"].get(r, 0), n)
        for r, n in expected["dead_lettered"].items()
    ]
    rows.append(("KMS Decrypt calls", report["kms_decrypt_calls"], expected["kms_decrypt_calls"]))
    lines = [f"{'':<34}{'got':>8}{'expected':>10}"]
    lines += [f"{name:<34}{got:>8}{want:>10}{'' if got == want else '  <-'}" for name, got, want in rows]
    lines.append(f"{'messages/s (whole mix, incl. backoff waits)':<44}{report['messages_per_s']:>8}")
    lines.append(f"DLQ: {report['dlq_depth']} message(s) at {report['dlq_url']}")
    lines.append(
        "OK: every count is what the mix implies" if not problems else "FAILED: " + "; ".join(problems)
    )
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    require("worker", "sealq demo")
    from sealq.demo.run import HANDLED, Mix, check, run_pool, send_mix, setup_aws, summarize
    from sealq.demo.standin import StandIn
    from sealq.worker.logs import JsonFormatter

    workdir = Path(tempfile.mkdtemp(prefix="sealq-demo-"))
    log_file = workdir / "worker.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("sealq")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    mix = Mix()
    show = sys.stderr.isatty()
    HANDLED.clear()
    with StandIn() as standin:
        os.environ.update(standin.env())
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_S3"):
            os.environ.pop(name, None)
        print(f"stand-in at {standin.endpoint_url}; work dir {workdir}", file=sys.stderr)
        aws = setup_aws(workdir)
        send_mix(aws["sqs"], aws["queue_url"], mix, aws["p256"], aws["rsa"], aws["stale"])
        print(f"sent {mix.total} messages; running the worker pool", file=sys.stderr)
        worker, elapsed, metrics = asyncio.run(run_pool(aws, mix, args.timeout_s, show))
        report = summarize(worker, elapsed, mix, aws)
        report["metrics"] = metrics
        problems = check(report, mix)
        report["ok"] = not problems
        report["problems"] = problems
        report["worker_log"] = str(log_file)
        print(render(report, mix, problems))
        if args.report:
            try:
                args.report.write_text(json.dumps(report, indent=2) + "\n")
            except OSError as exc:
                raise SealqError(f"cannot write --report {args.report}: {exc.strerror}") from None
        if args.keep:
            print("\nThe stand-in keeps running; in another shell:", file=sys.stderr)
            for k, v in standin.env().items():
                print(f"export {k}={v}", file=sys.stderr)
            print(f"export SEALQ_KEYSET={aws['store'].location}", file=sys.stderr)
            try:
                while standin.is_running():
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    return 0 if not problems else 1
