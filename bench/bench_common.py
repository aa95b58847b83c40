"""What the worker benchmarks share: the payload, keys, worker settings, and draining."""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import AsyncExitStack
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.keys.keyset import KeyRecord
from sealq.producer.message import OutgoingMessage, build_entry
from sealq.testing import MemoryQueue
from sealq.worker import Message, Worker, WorkerSettings

PAYLOAD = os.urandom(512)
CORES = os.cpu_count() or 1


def make_key(kind: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    return (
        ec.generate_private_key(ec.SECP256R1()) if kind == "P-256" else rsa.generate_private_key(65537, 4096)
    )


async def open_clients(stack: AsyncExitStack) -> tuple[Any, Any]:
    """aiobotocore SQS and KMS clients configured as `sealq run` configures them."""
    from aiobotocore.session import get_session

    from sealq.aws.clients import aio_client_config

    session, config = get_session(), aio_client_config()
    sqs = await stack.enter_async_context(session.create_client("sqs", config=config))
    kms = await stack.enter_async_context(session.create_client("kms", config=config))
    return sqs, kms


def worker_settings(**over: Any) -> WorkerSettings:
    base: dict[str, Any] = {
        "queue_url": "q",
        "dlq_url": "dlq",
        "keyset": "unused",
        "handler": "bench:handle",
        "wait_time_s": 0,
        "concurrency": 16,
        "max_in_flight": 200,
        "pollers": 2,
    }
    base.update(over)
    return WorkerSettings(**base)


async def drain(worker: Worker, target: int, deadline_s: float = 300) -> float:
    """Seconds from the first message handled to `target` handled."""
    task = asyncio.create_task(worker.run())
    while worker.stats.handled == 0 and not task.done():
        await asyncio.sleep(0.0005)
    start = time.perf_counter()
    while worker.stats.handled < target and time.perf_counter() - start < deadline_s:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - start
    worker.stop()
    await task
    return elapsed


async def noop(message: Message) -> None:
    return None


def fill(queue: MemoryQueue, record: KeyRecord, count: int) -> None:
    key = record.sealing_key()
    entries = [build_entry(i, OutgoingMessage(PAYLOAD), key, time.time()) for i in range(64)]
    for i in range(count):
        queue.put(entries[i & 63].body, entries[i & 63].attributes)
