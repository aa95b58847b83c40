"""Running the `sealq` CLI against the local AWS stand-in, shared by the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3

from sealq.demo.standin import StandIn
from sealq.envelope.jwe import OpeningKey
from sealq.keys.kms import unwrap
from sealq.keys.store import parse_keyset

# Anything here would override or leak into what the stand-in's env sets up.
CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "SEALQ_KEYSET",
)


def cli_env(standin: StandIn, home: Path, **overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(standin.env())
    env["AWS_CONFIG_FILE"] = str(home / "no-aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(home / "no-aws-credentials")
    env["SEALQ_KEYSET"] = str(home / "keyset.json")
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def sealq(
    env: dict[str, str], *args: str, stdin: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "sealq.cli", *args],
        env=env,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, f"sealq {' '.join(args)} failed: {proc.stderr}"
    return proc


def standin_client(standin: StandIn, service: str) -> Any:
    """A boto3 client bound to the stand-in explicitly, whatever the process env says."""
    env = standin.env()
    return boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    ).client(service, endpoint_url=standin.endpoint_url)  # type: ignore[call-overload]


def unwrap_kid(kms: Any, keyset: Path, kid: str) -> OpeningKey:
    return unwrap(kms, parse_keyset(keyset.read_bytes()).get(kid))
