"""A second local AWS stand-in: LocalStack, closer to AWS than ministack.

LocalStack follows AWS where ministack is lenient: real KMS crypto (a blob opens only
under its own CMK and context), SQS size and attribute rules, and ``StartMessageMoveTask``.
It runs without Docker ("host mode") on Python 3.13, in a venv of its own built on first
use like ministack's (sealq.demo.standin_install), bound to 127.0.0.1 only.

    with open_standin("localstack") as aws:   # or "ministack"; same interface as StandIn
        boto3.client("sqs", endpoint_url=aws.endpoint_url, ...)

Python 3.13 is found as $SEALQ_LOCALSTACK_PYTHON, else ``python3.13`` on PATH, else under
pyenv's versions dir ($PYENV_ROOT or ~/.pyenv). `python -m sealq.demo.standin --backend
localstack` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from sealq.demo.standin import REGION, StandIn
from sealq.demo.standin_install import (
    HOME_ENV,
    StandInError,
    VenvSpec,
    ensure_venv,
    log_tail,
)
from sealq.demo.standin_process import HOST

LOCALSTACK_VERSION = "4.14.0"
"""The tag docker/compose pins; bumping it builds a fresh venv beside the old one."""

PYTHON_ENV = "SEALQ_LOCALSTACK_PYTHON"
"""A Python 3.13 interpreter to build LocalStack's venv with (overrides the search)."""

BACKENDS = ("ministack", "localstack")

_PACKAGES = (
    f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
    # Newer majors of these break 4.14.0's runtime.
    "cbor2<6",
    "pyopenssl<26",
    "localstack-twisted<26",
)
_PROBE = "import sys, venv; print('ok' if sys.version_info[:2] == (3, 13) else 'no')"


def _is_python313(candidate: str) -> bool:
    try:
        out = subprocess.run(
            [candidate, "-c", _PROBE],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "ok"


def find_python() -> str | None:
    """A usable Python 3.13 for LocalStack's venv, or None when this machine has none.

    A set but unusable $SEALQ_LOCALSTACK_PYTHON is an error, not a quiet fallback.
    """
    configured = os.environ.get(PYTHON_ENV)
    if configured:
        if not _is_python313(configured):
            raise StandInError(f"{PYTHON_ENV}={configured} is not a Python 3.13 with venv; fix or unset it.")
        return configured
    candidates: list[str] = []
    on_path = shutil.which("python3.13")
    if on_path:  # may be a pyenv shim that refuses when 3.13 is not selected
        candidates.append(on_path)
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    versions = sorted((pyenv_root / "versions").glob("3.13*/bin/python3.13"), reverse=True)
    candidates += [str(p) for p in versions]
    return next((c for c in candidates if _is_python313(c)), None)


ENABLE_HINT = (
    f"LocalStack needs Python 3.13 (none found): install it (e.g. `pyenv install 3.13`) "
    f"or point {PYTHON_ENV} at a python3.13"
)


class LocalStack(StandIn):
    """One LocalStack (host mode) on a free 127.0.0.1 port; the same interface as StandIn."""

    backend = "localstack"
    health_path = "/_localstack/health"

    def __init__(
        self,
        home: Path | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = 90.0,
        stop_timeout: float = 5.0,  # it often ignores SIGTERM for longer; then SIGKILL
        python: str | None = None,
    ) -> None:
        super().__init__(home, port=port, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self._python = python

    def install(self) -> Path:
        python = self._python or find_python()
        if python is None:
            raise StandInError(ENABLE_HINT + ".")
        spec = VenvSpec(
            name=f"localstack-{LOCALSTACK_VERSION}-py313",
            packages=_PACKAGES,
            exe="bin/python",
            check="import localstack.runtime.main, localstack.services.sqs.provider",
            python=python,
        )
        return ensure_venv(self.home, spec) / spec.exe

    def _command(self, exe: Path) -> list[str]:
        return [str(exe), "-m", "localstack.runtime.main"]

    def _child_env(self, port: int, run_dir: Path) -> dict[str, str]:
        return {
            # hypercorn binds only where told; the default server binds 0.0.0.0.
            "GATEWAY_LISTEN": f"{HOST}:{port}",
            "GATEWAY_SERVER": "hypercorn",
            # Queue URLs name 127.0.0.1, not localhost.localstack.cloud (a DNS lookup).
            "LOCALSTACK_HOST": f"{HOST}:{port}",
            "SERVICES": "sqs,kms,s3",
            "SQS_ENDPOINT_STRATEGY": "path",
            "DNS_ADDRESS": "0",  # no DNS server of its own
            "DISABLE_EVENTS": "1",  # no analytics
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "PERSISTENCE": "0",
            "LOCALSTACK_VOLUME_DIR": str(run_dir / "volume"),
            "TMPDIR": str(run_dir),
            "DOCKER_HOST": f"unix://{run_dir / 'no-docker.sock'}",
        }

    def reset(self) -> None:
        """Drop every queue and bucket (LocalStack's community edition has no reset call).

        KMS keys cannot be deleted at once; tests create their own and never list them.
        """
        self._require_started()
        import boto3  # the base install's dependency; only needed here

        env = self.env()
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        sqs: Any = session.client("sqs", endpoint_url=self.endpoint_url)
        s3: Any = session.client("s3", endpoint_url=self.endpoint_url)
        try:
            for url in sqs.list_queues().get("QueueUrls", []):
                sqs.delete_queue(QueueUrl=url)
            for bucket in s3.list_buckets().get("Buckets", []):
                name = bucket["Name"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
                    for obj in page.get("Contents", []):
                        s3.delete_object(Bucket=name, Key=obj["Key"])
                s3.delete_bucket(Bucket=name)
        except Exception as exc:  # botocore's errors share no narrower base
            raise StandInError(self._failure(f"reset failed: {exc}")) from exc


def open_standin(backend: str, home: Path | None = None) -> StandIn:
    """A stopped stand-in of the named backend ("ministack" or "localstack")."""
    if backend == "ministack":
        return StandIn(home)
    if backend == "localstack":
        return LocalStack(home)
    raise StandInError(f"unknown stand-in backend {backend!r}; use one of {', '.join(BACKENDS)}.")


def main(argv: list[str] | None = None) -> int:
    """Run a stand-in in the foreground until SIGINT/SIGTERM (manual use, demos)."""
    parser = argparse.ArgumentParser(
        prog="python -m sealq.demo.standin",
        description="Run a local AWS stand-in (ministack or LocalStack) on 127.0.0.1.",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="ministack")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help=f"venv/log dir (default: ${HOME_ENV} or ~/.cache/sealq/standin)",
    )
    parser.add_argument("--port", type=int, default=None, help="fixed port (default: a free one)")
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    kind = LocalStack if args.backend == "localstack" else StandIn
    standin = kind(args.home, port=args.port)
    try:
        standin.start()
    except StandInError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        print(standin.endpoint_url, flush=True)
        for key, value in standin.env().items():
            if key.startswith("AWS_"):
                print(f"export {key}={value}")
        print(f"# pid {standin.pid}, log {standin.log_path}; Ctrl-C to stop", flush=True)
        while not stop_requested.wait(0.5):
            if not standin.is_running():
                print(
                    f"error: {standin.backend} exited; log {standin.log_path}:\n"
                    f"{log_tail(standin.log_path) if standin.log_path else ''}",
                    file=sys.stderr,
                )
                return 1
        return 0
    finally:
        standin.stop()


if __name__ == "__main__":
    sys.exit(main())
