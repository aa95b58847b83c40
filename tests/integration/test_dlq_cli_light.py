"""`sealq.cli.dlq` is imported whenever the `sealq` parser is built, so neither importing it
nor running `sealq dlq stats` may load the asyncio stack, the worker pool, the demo or the
stand-in: an operator's box needs boto3, nothing more."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from sealq.demo.standin import StandIn
from tests.integration.cli_helpers import cli_env, standin_client

# The `sealq.cli` package's own __init__ builds the whole parser; the probe stands in an empty
# package for it, so what gets loaded is what `sealq.cli.dlq` itself pulls in.
PROBE = """
import importlib.util, json, sys, types
spec = importlib.util.find_spec("sealq.cli")
package = types.ModuleType("sealq.cli")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["sealq.cli"] = package
assert not any(n.startswith("sealq.") for n in sys.modules if n != "sealq.cli"), sorted(sys.modules)

from sealq.cli.dlq import add_dlq_parser
from sealq.cli.parser import OneLineArgumentParser

parser = OneLineArgumentParser(prog="sealq")
add_dlq_parser(parser.add_subparsers(dest="command", required=True))
loaded_by_import = set(sys.modules)
code = None
if len(sys.argv) > 1:
    args = parser.parse_args(["dlq", "stats", "--json", "--dlq-url", sys.argv[1]])
    code = args.func(args)

def heavy(names):
    return sorted(
        n for n in names
        if n.split(".")[0] in ("aiobotocore", "aiohttp", "ministack")
        or n.startswith(("sealq.worker", "sealq.demo", "sealq.testing"))
    )

print(json.dumps({"code": code, "import": heavy(loaded_by_import), "run": heavy(sys.modules)}))
"""


def test_importing_and_running_dlq_stats_stays_light(standin: StandIn, tmp_path: Path) -> None:
    sqs = standin_client(standin, "sqs")
    url = sqs.create_queue(QueueName=f"sealq-light-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="sealed")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, url],
        env=cli_env(standin, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[0])["total"] == 1  # the command's own output, then the probe's
    probe = json.loads(lines[-1])
    assert probe == {"code": 0, "import": [], "run": []}
