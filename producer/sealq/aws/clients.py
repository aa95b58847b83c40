"""AWS clients made one way everywhere: the standard credential chain, region and
`AWS_ENDPOINT_URL*` settings, plus bounded retries and timeouts.

botocore's defaults (legacy retry mode, 5 attempts, 60 s connect timeout) make an unreachable
endpoint look like a hang for a CLI user; here a refused connection fails within a few
seconds. `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE`, when set, still win.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from botocore.config import Config

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
"""Longer than SQS's longest long poll (20 s), so a ReceiveMessage wait never times out."""
MAX_ATTEMPTS = 3
"""Counting the first try: a refused connection gives up after about 3 s at most."""


def _config_kwargs() -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
    }
    if not (os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")):
        kwargs["retries"] = {"mode": "standard", "total_max_attempts": MAX_ATTEMPTS}
    return kwargs


def client_config() -> Config:
    """The botocore Config sealq's boto3 clients use."""
    return Config(**_config_kwargs())


def aio_client_config(max_pool_connections: int | None = None) -> AioConfig:
    """The same settings for aiobotocore clients; `max_pool_connections` sizes the client's
    connection pool (botocore's default: 10), which a worker's concurrent long polls share
    with its deletes."""
    from aiobotocore.config import AioConfig

    kwargs = _config_kwargs()
    if max_pool_connections is not None:
        kwargs["max_pool_connections"] = max_pool_connections
    return AioConfig(**kwargs)


def client(service: str) -> Any:
    """A boto3 client for `service` ("sqs", "kms", "s3") from the standard configuration."""
    import boto3

    return boto3.client(service, config=client_config())  # type: ignore[call-overload]
