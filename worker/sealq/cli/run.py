"""`sealq run`: the worker process. Flags override SEALQ_* variables; AWS endpoints and
credentials come only from the standard AWS configuration."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from typing import Any

from sealq.aws.clients import aio_client_config
from sealq.aws.errors import AwsError, describe_aws_error
from sealq.errors import SealqError
from sealq.keys.store import KeysetStore
from sealq.worker.handler import Handler, load_handler
from sealq.worker.http import HealthServer, probe
from sealq.worker.logs import configure, event
from sealq.worker.pool import Worker
from sealq.worker.settings import SettingsError, WorkerSettings, load_settings

log = logging.getLogger("sealq.worker")

# flag -> help; every one is also SEALQ_<FLAG> (upper case, '-' -> '_').
_FLAGS: dict[str, tuple[type, str]] = {
    "queue-url": (str, "SQS queue to consume"),
    "dlq-url": (str, "dead-letter queue for messages that cannot be handled"),
    "keyset": (str, "keyset file or s3://bucket/key"),
    "handler": (str, "module:function, an async def handle(message)"),
    "concurrency": (int, "handler calls at once, per process (default 16)"),
    "processes": (int, "worker processes; more than 1 uses more cores for P-256 (default 1)"),
    "pollers": (int, "concurrent long polls (default 2)"),
    "max-in-flight": (int, "received but unfinished messages, the memory bound (default 100)"),
    "wait-time-s": (int, "long-poll wait (default 20)"),
    "visibility-timeout-s": (int, "visibility timeout set on receive (default 60)"),
    "heartbeat-s": (float, "extend running handlers this often (default 20)"),
    "handler-timeout-s": (float, "a handler running longer is a failure (default 300)"),
    "max-attempts": (int, "handler tries before handler-error (default 5)"),
    "backoff-base-s": (float, "first retry delay (default 2, doubling)"),
    "backoff-max-s": (float, "longest retry delay (default 300)"),
    "shutdown-grace-s": (float, "time running handlers get on SIGTERM (default 25)"),
    "key-grace-s": (
        int,
        "messages sealed before key expiry still open this long after (default 300)",
    ),
    "keyset-refresh-s": (float, "re-read the keyset this often (default 60)"),
    "crypto-threads": (int, "threads for decryption (default: CPU count)"),
    "metrics-port": (int, "serve /healthz, /readyz and /metrics on this port (default: off)"),
    "metrics-host": (str, "address for that port (default 127.0.0.1; 0.0.0.0 in a container)"),
    "log-level": (str, "debug, info, warning or error (default info)"),
    "log-format": (str, "auto (text on a terminal, else JSON), json or text"),
}


def add_run_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the worker pool",
        description="Consume a queue: decrypt each message and hand it to your handler. "
        "Every flag can also be set as SEALQ_<FLAG>, e.g. SEALQ_QUEUE_URL.",
    )
    for flag, (kind, text) in _FLAGS.items():
        p.add_argument(f"--{flag}", type=kind, help=text)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    values = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag in _FLAGS}
    settings = load_settings(**values)
    configure(settings.log_level, settings.log_format)
    handler = load_handler(settings.handler)  # fail here, once, not in every child
    if settings.processes > 1:
        from sealq.worker.supervisor import run_processes

        return run_processes(settings)
    return asyncio.run(serve(settings, handler))


async def open_clients(stack: AsyncExitStack) -> tuple[Any, Any]:
    from aiobotocore.session import get_session

    session = get_session()
    config = aio_client_config()
    sqs = await stack.enter_async_context(session.create_client("sqs", config=config))
    kms = await stack.enter_async_context(session.create_client("kms", config=config))
    return sqs, kms


def install_signal_handlers(worker: Worker) -> None:
    """First SIGTERM/SIGINT: graceful stop. Second: leave at once (SQS redelivers the rest)."""
    loop = asyncio.get_running_loop()
    seen = 0

    def on_signal(signum: int) -> None:
        nonlocal seen
        seen += 1
        name = signal.Signals(signum).name
        if seen == 1:
            event(log, logging.INFO, "stopping", signal=name, grace_s=worker.settings.shutdown_grace_s)
            worker.stop()
        else:
            event(log, logging.WARNING, "second signal: exiting now", signal=name)
            sys.stderr.flush()
            os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def serve(settings: WorkerSettings, handler: Handler) -> int:
    async with AsyncExitStack() as stack:
        sqs, kms = await open_clients(stack)
        await check_queues(sqs, settings)
        worker = Worker(settings, handler, sqs=sqs, kms=kms, keystore=KeysetStore(settings.keyset))
        install_signal_handlers(worker)
        if settings.metrics_port is not None:
            server = HealthServer(worker, settings.metrics_host, settings.metrics_port)
            try:
                port = await server.start()
            except OSError as exc:
                raise SettingsError(
                    f"--metrics-port {settings.metrics_port}: cannot listen ({exc.strerror}); "
                    "pick a free port"
                ) from None
            stack.push_async_callback(server.stop)
            event(log, logging.INFO, "http listening", host=settings.metrics_host, port=port)
        await worker.run()
    return 0


async def check_queues(sqs: Any, settings: WorkerSettings) -> None:
    """Fail at start, in one line, on a queue URL that is wrong, rather than logging
    receive failures forever. GetQueueAttributes touches no message."""
    for flag, url in (("--queue-url", settings.queue_url), ("--dlq-url", settings.dlq_url)):
        try:
            await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except AwsError as exc:
            raise SealqError(describe_aws_error(exc, f"{flag} {url}")) from None


def add_health_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "health",
        help="exit 0 when a local worker's /healthz answers OK (for container health checks)",
    )
    p.add_argument("--port", type=int, default=int(os.environ.get("SEALQ_METRICS_PORT") or 9090))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--path", default="/healthz", choices=["/healthz", "/readyz"])
    p.set_defaults(func=cmd_health)


def cmd_health(args: argparse.Namespace) -> int:
    ok, detail = probe(f"http://{args.host}:{args.port}{args.path}")
    print(detail if ok else f"sealq: unhealthy: {detail}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
