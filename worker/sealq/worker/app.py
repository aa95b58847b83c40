"""Starting a worker from its settings: AWS clients, queue checks, signals, the health server,
and one or more processes.

The CLI only turns flags into `WorkerSettings` and calls `run`. Keeping start-up here (not in
the CLI) makes imports run one way, cli -> app -> worker: the supervisor's spawned children
enter through `serve_child` without importing the CLI, and embedders (the demo, benchmarks,
tests) call `serve` or `open_clients` directly.
"""

from __future__ import annotations

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
from sealq.worker.handler import Handler
from sealq.worker.http import HealthServer
from sealq.worker.loading import load_handler
from sealq.worker.logs import configure, event
from sealq.worker.pool import Worker
from sealq.worker.receiving import sqs_connections
from sealq.worker.settings import SettingsError, WorkerSettings
from sealq.worker.supervisor import run_processes

log = logging.getLogger("sealq.worker")


def run(settings: WorkerSettings) -> int:
    """`sealq run`: configure logging, import the handler once (a bad --handler fails here,
    not in every child), then serve in this process or under the supervisor."""
    configure(settings.log_level, settings.log_format)
    handler = load_handler(settings.handler)
    if settings.processes > 1:
        return run_processes(settings, serve_child)
    return asyncio.run(serve(settings, handler))


def serve_child(values: dict[str, Any]) -> None:
    """A supervisor child's entry point (spawned, so it takes plain values)."""
    # Own process group: a terminal's Ctrl-C reaches only the supervisor, which forwards it
    # exactly once, so a single Ctrl-C is never mistaken for the "exit at once" second signal.
    os.setpgrp()
    settings = WorkerSettings(**values)
    configure(settings.log_level, settings.log_format)
    try:
        code = asyncio.run(serve(settings, load_handler(settings.handler)))
    except SealqError as exc:
        print(f"sealq: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


async def open_clients(stack: AsyncExitStack, settings: WorkerSettings | None = None) -> tuple[Any, Any]:
    """aiobotocore SQS and KMS clients, closed with `stack`. Given the worker's `settings`,
    the SQS client's connection pool fits all its pollers plus room for settling, so deletes
    never wait behind long polls (`receiving.sqs_connections`)."""
    from aiobotocore.session import get_session

    session = get_session()
    pool = None if settings is None else sqs_connections(settings)
    sqs = await stack.enter_async_context(session.create_client("sqs", config=aio_client_config(pool)))
    kms = await stack.enter_async_context(session.create_client("kms", config=aio_client_config()))
    return sqs, kms


async def open_s3(stack: AsyncExitStack, settings: WorkerSettings) -> Any:
    """An aiobotocore S3 client when payloads may come through S3 (`--payload-buckets`)."""
    if not settings.payload_buckets.strip():
        return None
    from aiobotocore.session import get_session

    return await stack.enter_async_context(get_session().create_client("s3", config=aio_client_config()))


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
    """Run one worker until a signal stops it; 0 when it stopped cleanly."""
    async with AsyncExitStack() as stack:
        sqs, kms = await open_clients(stack, settings)
        await check_queues(sqs, settings)
        s3 = await open_s3(stack, settings)
        worker = Worker(settings, handler, sqs=sqs, kms=kms, keystore=KeysetStore(settings.keyset), s3=s3)
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
