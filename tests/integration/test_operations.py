"""Operating sealq after the demo's mix has run, as an on-call operator would: the DLQ
commands agree with the demo's own report, redrive + a fixed handler finishes the
handler errors, purge removes only what it is told, watch turns green."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.cli_helpers import CLEARED_ENV, sealq
from tests.integration.conftest import standin_home

ROOT = Path(__file__).resolve().parents[2]


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`sealq demo --keep`: the mix has run and its stand-in keeps serving the queues."""
    work = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV and not k.startswith("AWS_")}
    env["SEALQ_STANDIN_HOME"] = str(standin_home())
    report, err = work / "report.json", work / "stderr.txt"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sealq.cli", "demo", "--keep", "--report", str(report)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=work,
        )
    try:
        _wait(lambda: "SEALQ_KEYSET=" in err.read_text() or proc.poll() is not None, 150, "the demo")
        assert proc.poll() is None, err.read_text()[-2000:]
        exported = dict(re.findall(r"^export (\w+)=(\S+)$", err.read_text(), re.M))
        cli_env = {
            **env,
            **exported,
            "AWS_CONFIG_FILE": str(work / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(work / "none"),
        }
        yield {"report": json.loads(report.read_text()), "env": cli_env, "work": work}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _sqs(env: dict[str, str]) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def _visible(env: dict[str, str], url: str) -> int:
    attrs = _sqs(env).get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def _by_reason_and_kid(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for group in stats["groups"]:
        by_kid = out.setdefault(group["reason"], {})
        by_kid[group["kid"] or "-"] = by_kid.get(group["kid"] or "-", 0) + group["count"]
    return out


def test_operator_workflow_on_the_demo_dlq(demo: dict[str, Any]) -> None:
    report, env = demo["report"], demo["env"]
    assert report["ok"], report["problems"]
    dlq, queue = report["dlq_url"], report["queue_url"]
    total = sum(report["dead_lettered"].values())

    # stats agrees with the demo, by reason and by kid, and hides nothing afterwards
    stats = json.loads(sealq(env, "dlq", "stats", "--dlq-url", dlq, "--json").stdout)
    assert stats["total"] == total
    assert _by_reason_and_kid(stats) == report["dead_lettered_by_kid"]
    assert _visible(env, dlq) == total

    # peek shows attributes and sizes, never a body or plaintext
    peek = sealq(env, "dlq", "peek", "--dlq-url", dlq, "-n", "50", "--json").stdout
    assert len(json.loads(peek)["messages"]) == total
    for needle in ("not a sealed message", '"order"', "SKU-", "eyJ"):
        assert needle not in peek

    # the work queue is not a DLQ: refused from its attributes, no message touched
    wrong = sealq(env, "dlq", "stats", "--dlq-url", queue, check=False)
    assert wrong.returncode != 0 and len(wrong.stderr.strip().splitlines()) == 1
    assert "not a dead-letter queue" in wrong.stderr

    # clients on expired keys are flagged
    watch = sealq(env, "dlq", "watch", "--dlq-url", dlq, "--once", "--max", "key-expired=0", check=False)
    assert watch.returncode == 3 and "legacy-cron" in watch.stdout + watch.stderr

    # redrive the handler errors, then a worker with a fixed handler finishes them
    moved = json.loads(
        sealq(
            env,
            "dlq",
            "redrive",
            "--dlq-url",
            dlq,
            "--queue-url",
            queue,
            "--reason",
            "handler-error",
            "--json",
        ).stdout
    )
    assert moved["redriven"] == report["dead_lettered"]["handler-error"]
    out = demo["work"] / "fixed.jsonl"
    run_env = {**env, "SEALQ_EXAMPLE_OUT": str(out)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sealq.cli",
            "run",
            "--queue-url",
            queue,
            "--dlq-url",
            dlq,
            "--keyset",
            env["SEALQ_KEYSET"],
            "--handler",
            "sealq.examples.file_handler:handle",
            "--wait-time-s",
            "1",
        ],
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = moved["redriven"]
        _wait(lambda: out.exists() and len(out.read_text().splitlines()) == done, 30, "the redriven")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert all(json.loads(line)["client_id"] == "shop-eu" for line in out.read_text().splitlines())
    after = json.loads(sealq(env, "dlq", "stats", "--dlq-url", dlq, "--json").stdout)
    assert "handler-error" not in after["by_reason"]
    assert after["total"] == total - moved["redriven"]

    # purge only the expired-key messages; watch is green again
    sealq(env, "dlq", "purge", "--dlq-url", dlq, "--reason", "key-expired", "--yes")
    final = json.loads(sealq(env, "dlq", "stats", "--dlq-url", dlq, "--json").stdout)
    expected = {r: n for r, n in report["dead_lettered"].items() if r not in ("handler-error", "key-expired")}
    assert final["by_reason"] == expected
    assert sealq(env, "dlq", "watch", "--dlq-url", dlq, "--once", "--max", "key-expired=0").returncode == 0
