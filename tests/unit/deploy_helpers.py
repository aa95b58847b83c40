"""What the docker/ deployment tests share: where the files are, and the worker facts the
manifests must agree with, read from the worker itself rather than restated."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sealq.worker.http import HealthServer
from sealq.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
IAM = DOCKER / "iam"


def settings_from_env(env: Mapping[str, str]) -> WorkerSettings:
    """The settings a worker started with these SEALQ_* variables would run with."""
    values: dict[str, Any] = {"queue_url": "q", "dlq_url": "d", "keyset": "k", "handler": "m:f"}
    for name in WorkerSettings.model_fields:
        if f"SEALQ_{name.upper()}" in env:
            values[name] = env[f"SEALQ_{name.upper()}"]
    return WorkerSettings(**values)


def shutdown_bound_s(env: Mapping[str, str]) -> float:
    """Longest a SIGTERM'd worker takes before its last delete flush (`Worker._shutdown`):
    a long poll in flight may finish (min(wait + 2 s, grace)), then running handlers get
    the grace. A container's stop timeout must be above this."""
    s = settings_from_env(env)
    return min(s.wait_time_s + 2.0, s.shutdown_grace_s) + s.shutdown_grace_s


def worker_routes() -> set[str]:
    """The paths the worker's HTTP server answers (anything else is its 404)."""
    stub = SimpleNamespace(
        last_poll_at=None, settings=SimpleNamespace(wait_time_s=20), draining=False, ready=True
    )
    server = HealthServer.__new__(HealthServer)
    server.worker = cast(Any, stub)
    server._started = 0.0
    return {p for p in ("/healthz", "/readyz", "/live", "/ready", "/") if server.route(p)[0] != 404}
