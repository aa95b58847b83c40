"""The container files, checked as far as this machine allows (no Docker engine here): the
compose file and Dockerfile say what the README promises, and the setup script and the
image's entrypoint command work outside Docker against the stand-in."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from sealq.demo.standin import StandIn
from tests.integration.cli_helpers import cli_env, sealq

ROOT = Path(__file__).resolve().parents[2]


def _image_env() -> dict[str, str]:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    block = text.split("ENV ", 1)[1].split("\nUSER", 1)[0]
    return dict(re.findall(r"(\w+)=(\S+)", block))


def test_dockerfile_is_pinned_non_root_with_healthcheck_and_stop_signal() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", b) for b in bases)
    final = text.rsplit("\nFROM ", 1)[1]
    assert "USER sealq" in final and "STOPSIGNAL SIGTERM" in final
    assert "HEALTHCHECK" in final and '"sealq", "health"' in final
    assert "gcc" not in final and "build-essential" not in final
    # The image runs `sealq run`: the base install alone cannot (it lacks aiobotocore, pydantic).
    assert re.search(r"pip install [^\n]*'\.\[worker\]'", text)


def test_compose_wires_standin_setup_worker_and_producer() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"localstack", "setup", "worker", "producer"}
    assert re.fullmatch(r"localstack/localstack:\d+\.\d+\.\d+", services["localstack"]["image"])
    worker = services["worker"]
    grace = float(_image_env()["SEALQ_SHUTDOWN_GRACE_S"])
    assert float(worker["stop_grace_period"].rstrip("s")) > grace
    assert worker["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    env = worker["environment"]
    for name in ("SEALQ_QUEUE_URL", "SEALQ_DLQ_URL", "SEALQ_KEYSET", "SEALQ_HANDLER", "AWS_ENDPOINT_URL"):
        assert name in env
    assert env["SEALQ_HANDLER"].startswith("sealq.examples.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_setup_script_and_entrypoint_work_outside_docker(standin: StandIn, tmp_path: Path) -> None:
    env = cli_env(
        standin,
        tmp_path,
        SEALQ_DATA=str(tmp_path / "data"),
        SEALQ_KEYSET=str(tmp_path / "data" / "keyset.json"),
        SEALQ_QUEUE_NAME="compose-like",
    )
    setup = [sys.executable, str(ROOT / "docker" / "setup.py")]
    first = subprocess.run(setup, env=env, capture_output=True, text=True, timeout=60, check=True)
    again = subprocess.run(setup, env=env, capture_output=True, text=True, timeout=60, check=True)
    urls = json.loads(first.stdout.strip().splitlines()[-1])
    assert json.loads(again.stdout.strip().splitlines()[-1]) == urls  # idempotent
    jwks = json.loads((tmp_path / "data" / "jwks.json").read_text())
    assert len(jwks["keys"]) == 1

    port = _free_port()
    run_env = {
        **env,
        **_image_env(),
        "SEALQ_METRICS_PORT": str(port),
        "SEALQ_METRICS_HOST": "127.0.0.1",
        "SEALQ_QUEUE_URL": urls["queue_url"],
        "SEALQ_DLQ_URL": urls["dlq_url"],
        "SEALQ_HANDLER": "sealq.examples.print_handler:handle",
        "SEALQ_WAIT_TIME_S": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "sealq.cli", "run"],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        health = sealq(run_env, "health", check=False)
        while health.returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            health = sealq(run_env, "health", check=False)
        assert health.returncode == 0, health.stderr
        sent = sealq(
            run_env,
            "send",
            "--queue-url",
            urls["queue_url"],
            "--jwks",
            str(tmp_path / "data" / "jwks.json"),
            "--client-id",
            "compose-demo",
            stdin=b'{"order": 1}\n{"order": 2}\n{"order": 3}\n',
        )
        assert "sent 3" in sent.stdout
        metrics = ""
        while "sealq_handled_total 3.0" not in metrics and time.monotonic() < deadline + 10:
            time.sleep(0.2)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                metrics = response.read().decode()
        assert "sealq_handled_total 3.0" in metrics
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err[-2000:]
    assert out.count("client=compose-demo") == 3
    assert all(json.loads(line)["level"] for line in err.splitlines() if line.startswith("{"))
