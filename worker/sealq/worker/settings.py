"""Worker settings from CLI flags and SEALQ_* environment variables, checked at start.

Cross-field rules are checked here, once, so a misconfiguration fails at start with a
message saying what to change, instead of as lost or duplicated messages later.
"""

from __future__ import annotations

import os

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sealq.aws.fifo import is_fifo_url
from sealq.errors import SealqError
from sealq.keys.shred import DEFAULT_KEY_GRACE_S

MAX_VISIBILITY_S = 12 * 3600


class SettingsError(SealqError):
    """A worker setting (flag or SEALQ_* variable) is invalid; the message names it and the fix."""


class WorkerSettings(BaseSettings):
    """Every worker setting. `sealq run` makes one flag per field (`--queue-url` for
    `queue_url`), with the description as its help and the default rendered from here; each
    is also `SEALQ_<FIELD>` in the environment. A `default_help` extra describes a default
    computed at start."""

    model_config = SettingsConfigDict(env_prefix="SEALQ_", extra="forbid")

    queue_url: str = Field(description="SQS queue to consume")
    dlq_url: str = Field(description="dead-letter queue for messages that cannot be handled")
    keyset: str = Field(description="keyset file or s3://bucket/key")
    handler: str = Field(description="module:function, an async def handle(message)")
    concurrency: int = Field(16, ge=1, le=1000, description="handler calls at once, per process")
    processes: int = Field(
        1, ge=1, le=64, description="worker processes; more than 1 uses more cores for P-256"
    )
    pollers: int | None = Field(
        None,
        ge=1,
        le=100,
        description="concurrent receives, fixed; unset, their number adapts to the queue",
        json_schema_extra={"default_help": "adaptive"},
    )
    max_pollers: int = Field(
        32, ge=1, le=100, description="adaptive receiving: most concurrent receives per process"
    )
    max_in_flight: int = Field(
        1000, ge=1, le=10000, description="received but unfinished messages, the memory bound"
    )
    wait_time_s: int = Field(20, ge=0, le=20, description="long-poll wait")
    visibility_timeout_s: int = Field(
        60, ge=1, le=MAX_VISIBILITY_S, description="visibility timeout set on receive"
    )
    heartbeat_s: float = Field(20.0, gt=0, description="extend running handlers this often")
    handler_timeout_s: float = Field(300.0, gt=0, description="a handler running longer is a failure")
    max_attempts: int = Field(5, ge=1, le=1000, description="handler tries before handler-error")
    backoff_base_s: float = Field(2.0, ge=0, description="first retry delay, doubling each time")
    backoff_max_s: float = Field(300.0, ge=0, le=MAX_VISIBILITY_S, description="longest retry delay")
    shutdown_grace_s: float = Field(25.0, ge=0, description="time running handlers get on SIGTERM")
    key_grace_s: int = Field(
        DEFAULT_KEY_GRACE_S, ge=0, description="messages sealed before key expiry still open this long after"
    )
    allowed_cmk_arns: str = Field(
        default_factory=str,
        description="comma-separated CMK ARNs keys may be wrapped by; others are refused",
        json_schema_extra={"default_help": "any CMK"},
    )
    keyset_refresh_s: float = Field(60.0, gt=0, description="re-read the keyset this often")
    crypto_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 2,
        ge=1,
        le=64,
        description="threads for decryption",
        json_schema_extra={"default_help": "CPU count"},
    )
    payload_buckets: str = Field(
        default_factory=str,
        description="comma-separated S3 buckets payloads sent through S3 may be read from",
        json_schema_extra={"default_help": "none: such messages are dead-lettered payload-unavailable"},
    )
    max_payload_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, le=2**31, description="largest S3 payload fetched; larger is too-large"
    )
    payload_fetches: int = Field(
        4,
        ge=1,
        le=1000,
        description="S3 payloads fetched or in handling at once: with --max-payload-bytes, the memory bound",
    )
    keep_payloads: bool = Field(
        False, description="leave handled payloads in S3 for a bucket lifecycle rule instead of deleting them"
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve /healthz, /readyz and /metrics on this port"
    )
    metrics_host: str = Field("127.0.0.1", description="address for that port; 0.0.0.0 in a container")
    log_level: str = Field("info", description="debug, info, warning or error")
    log_format: str = Field(
        "auto", pattern="^(auto|json|text)$", description="auto (text on a terminal, else JSON), json or text"
    )

    @field_validator("handler")
    @classmethod
    def _handler(cls, value: str) -> str:
        module, _, func = value.partition(":")
        if not module or not func:
            raise ValueError("must look like package.module:function")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("use debug, info, warning or error")
        return value.lower()

    @model_validator(mode="after")
    def _cross_field(self) -> WorkerSettings:
        if self.heartbeat_s >= self.visibility_timeout_s:
            raise ValueError(
                f"heartbeat_s ({self.heartbeat_s}) must be shorter than visibility_timeout_s "
                f"({self.visibility_timeout_s}), or messages reappear while being handled"
            )
        if self.max_in_flight < self.concurrency:
            raise ValueError(
                f"max_in_flight ({self.max_in_flight}) must be at least concurrency "
                f"({self.concurrency}), or consumers sit idle"
            )
        if self.queue_url == self.dlq_url:
            raise ValueError("dlq_url must differ from queue_url")
        if self.fifo != is_fifo_url(self.dlq_url):
            raise ValueError(
                "queue_url and dlq_url must both be FIFO queues (names ending in .fifo) or both "
                "standard: SQS requires a FIFO queue's dead-letter queue to be FIFO too"
            )
        return self

    @property
    def fifo(self) -> bool:
        """A FIFO source queue (its name ends in .fifo): handled in order per message group."""
        return is_fifo_url(self.queue_url)


def load_settings(**values: object) -> WorkerSettings:
    """Build settings from explicit values (CLI flags) over SEALQ_* variables."""
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return WorkerSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            flag = f"--{field.replace('_', '-')} / SEALQ_{field.upper()}" if field else "settings"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{flag}: {msg}" if field else msg)
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
