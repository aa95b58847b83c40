"""The shutdown bound the manifests' stop timeouts are checked against
(`deploy_helpers.shutdown_bound_s`) holds for a real worker: stopped with a handler that
never finishes and its pollers in a long poll, it is done within the bound, and not before
the handler's grace ran out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from sealq.producer.message import OutgoingMessage, build_entry
from sealq.testing.kms import FakeKMS, record_for, write_keyset
from sealq.testing.sqs import MemoryQueue, MemorySQS
from sealq.worker.handler import Message
from sealq.worker.pool import Worker
from tests.unit.deploy_helpers import settings_from_env, shutdown_bound_s

FLUSH_ROOM_S = 0.5
"""What the manifests' margin above the bound pays for: the final delete flush, here in memory."""


async def test_a_stopped_worker_is_done_within_the_bound(tmp_path: Path) -> None:
    env = {"SEALQ_WAIT_TIME_S": "1", "SEALQ_SHUTDOWN_GRACE_S": "1.5"}
    kms = FakeKMS()
    record = record_for(kms, ec.generate_private_key(ec.SECP256R1()), "p256-stop")
    store = write_keyset(tmp_path / "keyset.json", record)
    queue, dlq = MemoryQueue("q"), MemoryQueue("dlq")
    entry = build_entry(0, OutgoingMessage(b"slow"), record.sealing_key(), time.time())
    queue.put(entry.body, entry.attributes)
    started = asyncio.Event()

    async def handle(message: Message) -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes by itself

    settings = settings_from_env(env).model_copy(update={"queue_url": "q", "dlq_url": "dlq"})
    worker = Worker(settings, handle, sqs=MemorySQS(queue, dlq), kms=kms, keystore=store)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.2)  # the pollers are back in a long poll on the empty queue
    begun = time.monotonic()
    worker.stop()
    await asyncio.wait_for(task, 30)
    took = time.monotonic() - begun
    assert settings.shutdown_grace_s <= took <= shutdown_bound_s(env) + FLUSH_ROOM_S
    assert worker.stats.handled == 0  # cut off at the grace, not finished
