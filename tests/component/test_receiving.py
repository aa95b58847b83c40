"""Adaptive receiving on the in-memory SQS with a round trip added to every call.

What is asserted are counts (concurrent ReceiveMessage calls, settle calls that had to wait
for a connection), never rates: the rates are bench/worker.py's (`--only latency`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.jwe import seal_at
from sealq.keys.store import KeysetStore
from sealq.testing.kms import FakeKMS, record_for, write_keyset
from sealq.testing.sqs import MemoryQueue, MemorySQS
from sealq.worker.handler import Message
from sealq.worker.pool import Worker
from sealq.worker.receiving import sqs_connections
from sealq.worker.settings import WorkerSettings
from tests.component.test_pool import LIVE, attrs, sealing, until

KEY = ec.generate_private_key(ec.SECP256R1())
ROUND_TRIP_S = 0.02


class PooledSQS(MemorySQS):
    """A MemorySQS reached through a connection pool, as aiobotocore's client is: at most
    `pool` calls at once, a connection held for the whole call (a long poll's whole wait).
    Counts what the tests assert on."""

    def __init__(self, *queues: MemoryQueue, pool: int | None = None) -> None:
        super().__init__(*queues, delay_s=ROUND_TRIP_S)
        self._pool = asyncio.Semaphore(pool) if pool else None
        self.receiving = 0
        self.peak_receiving = 0
        self.settle_waits = 0
        """Deletes or visibility changes that found every connection taken."""

    @asynccontextmanager
    async def _connection(self, settle: bool) -> AsyncIterator[None]:
        if self._pool is None:
            yield
            return
        if settle and self._pool.locked():
            self.settle_waits += 1
        async with self._pool:
            yield

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        async with self._connection(settle=False):
            self.receiving += 1
            self.peak_receiving = max(self.peak_receiving, self.receiving)
            try:
                return await super().receive_message(**kw)
            finally:
                self.receiving -= 1

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        async with self._connection(settle=True):
            return await super().delete_message_batch(**kw)

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        async with self._connection(settle=True):
            return await super().change_message_visibility_batch(**kw)


class Setup:
    def __init__(self, path: Path) -> None:
        self.kms = FakeKMS()
        self.record = record_for(self.kms, KEY, LIVE)
        write_keyset(path, self.record)
        self.path = path
        self.src, self.dlq = MemoryQueue("src"), MemoryQueue("dlq")
        self.handled = 0
        self.key = sealing(LIVE, KEY)

    def settings(self, **over: Any) -> WorkerSettings:
        values: dict[str, Any] = {
            "queue_url": "src",
            "dlq_url": "dlq",
            "keyset": str(self.path),
            "handler": "tests.component.test_receiving:unused",
            "max_in_flight": 200,
            "wait_time_s": 1,
            "shutdown_grace_s": 1,
            "crypto_threads": 1,
        }
        values.update(over)
        return WorkerSettings(**values)

    def worker(self, sqs: PooledSQS, settings: WorkerSettings) -> Worker:
        async def handle(message: Message) -> None:
            self.handled += 1

        return Worker(settings, handle, sqs=sqs, kms=self.kms, keystore=KeysetStore(self.path))

    def put(self, count: int) -> None:
        token = seal_at(b"order", self.key, time.time())
        for _ in range(count):
            self.src.put(token, attrs(LIVE))


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path / "keyset.json")


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: worker.ready or task.done(), what="worker ready")
        yield
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def test_pollers_grow_under_a_backlog_and_fall_back_to_one_long_poll_when_idle(setup: Setup) -> None:
    sqs = PooledSQS(setup.src, setup.dlq)
    worker = setup.worker(sqs, setup.settings(max_pollers=6))
    setup.put(1000)
    async with running(worker):
        assert worker.pollers == 1  # idle at start: a single long poll
        await until(lambda: setup.src.deleted == 1000, what="backlog drained")
        assert sqs.peak_receiving == 6, "a backlog 20 ms away grows the receives to --max-pollers"
        # Idle: each long poll (1 s here) that comes back empty ends one poller.
        await until(lambda: worker.pollers == 1, timeout=8, what="back to one poller")
        sqs.peak_receiving, calls = 0, setup.src.calls["ReceiveMessage"]
        await asyncio.sleep(2.2)
        assert sqs.peak_receiving == 1 and worker.pollers == 1
        assert setup.src.calls["ReceiveMessage"] - calls <= 3, "one 1 s long poll at a time"
        setup.put(300)  # the next burst grows them again
        await until(lambda: setup.src.deleted == 1300, what="second burst drained")
        assert sqs.peak_receiving == 6


async def test_fixed_pollers_never_adapt(setup: Setup) -> None:
    sqs = PooledSQS(setup.src, setup.dlq)
    worker = setup.worker(sqs, setup.settings(pollers=3, max_pollers=6))
    setup.put(300)
    async with running(worker):
        await until(lambda: setup.src.deleted == 300, what="backlog drained")
        assert sqs.peak_receiving == 3
        await asyncio.sleep(1.3)  # past an empty long poll
        assert worker.pollers == 3
        await until(lambda: sqs.receiving == 3, what="three idle long polls")


@pytest.mark.parametrize("pool", ["sized", "default"])
async def test_deletes_never_wait_behind_parked_long_polls(setup: Setup, pool: str) -> None:
    """After a burst, every poller (12, as many as adaptive receiving may run) sits in a 20 s
    long poll on the empty queue. Messages that arrive then are received by one of them;
    their deletes must not wait for a connection. `sized` is the pool `sealq run` gives its
    client; `default` (botocore's 10) shows what this test catches: deletes queue behind
    the long polls. (Fixed pollers here, so the count parked is not up to timing.)"""
    settings = setup.settings(pollers=12, wait_time_s=20)
    sqs = PooledSQS(setup.src, setup.dlq, pool=sqs_connections(settings) if pool == "sized" else 10)
    worker = setup.worker(sqs, settings)
    setup.put(800)
    async with running(worker):
        await until(lambda: setup.handled == 800, what="burst handled")
        parked = 10 if pool == "default" else 12
        await until(lambda: sqs.receiving == parked, what=f"{parked} long polls parked")
        setup.put(5)
        await until(lambda: setup.handled == 805, what="the late messages handled")
        if pool == "default":
            await until(lambda: sqs.settle_waits > 0, what="a delete waiting for a connection")
            return
        await until(lambda: setup.src.deleted == 805, what="the late messages deleted")
        assert sqs.settle_waits == 0
        assert worker.pollers == 12 and sqs.receiving == 12


async def test_sealq_run_sizes_the_sqs_client_pool_for_its_pollers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring the test above relies on: `sealq run`'s SQS client (no network is touched)."""
    from contextlib import AsyncExitStack

    from sealq.worker.app import open_clients

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    settings = WorkerSettings(queue_url="q", dlq_url="d", keyset="k", handler="m:f")
    async with AsyncExitStack() as stack:
        sqs, _ = await open_clients(stack, settings)
        assert sqs.meta.config.max_pool_connections == sqs_connections(settings) == 32 + 32
