"""Receiving: poller tasks long-poll SQS into a bounded buffer of received batches.

Backpressure: a poller takes buffer slots before it asks SQS for messages, so memory is
bounded by `max_in_flight` whatever the queue depth. A slot is given back only when SQS has
answered for that message's outcome (`leases.Leases.finish`).

Shutdown: once `stopping` is set, pollers stop asking; a poll already in flight may finish
(a long poll cut off mid-request may still hand messages to the dead connection, hiding them
for a whole visibility timeout), and what it brings is handed back (`release`) once no
poll of this process is left to receive it again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from sealq.aws.errors import error_code
from sealq.worker.batcher import SQS_ERRORS
from sealq.worker.leases import InFlight, Leases, in_flight
from sealq.worker.logs import event
from sealq.worker.settings import WorkerSettings
from sealq.worker.stats import Stats

log = logging.getLogger("sealq.worker")

Buffer = asyncio.Queue[list[InFlight] | None]
"""Received batches waiting for a consumer; `None` tells a consumer to stop."""


class Slots:
    """Room for received, unfinished messages: `max_in_flight` in all."""

    def __init__(self, capacity: int) -> None:
        self._free = asyncio.Semaphore(capacity)
        self._lock = asyncio.Lock()
        self._batch = min(10, capacity)

    async def take_batch(self) -> int:
        """Wait for room for a full receive (ten, or the capacity if smaller): receiving one
        message at a time as single slots free up would cost a call per message. One poller
        collects at a time, so two half-filled pollers cannot deadlock."""
        async with self._lock:
            for _ in range(self._batch):
                await self._free.acquire()
        return self._batch

    def give(self, count: int = 1) -> None:
        for _ in range(count):
            self._free.release()


class Receiver:
    """The pollers' loop (`poll`, one task each) and what the worker reads about them."""

    def __init__(
        self,
        sqs: Any,
        settings: WorkerSettings,
        *,
        buffer: Buffer,
        slots: Slots,
        leases: Leases,
        stats: Stats,
        release: Callable[[InFlight], None],
        stopping: asyncio.Event,
        empty_poll_pause_s: float,
    ) -> None:
        self._sqs = sqs
        self._settings = settings
        self._buffer = buffer
        self._slots = slots
        self._leases = leases
        self._stats = stats
        self._release = release
        self._stopping = stopping
        self._empty_pause_s = empty_poll_pause_s
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets
        self._system_attributes = ["ApproximateReceiveCount"]
        if settings.fifo:  # the group is what ordered handling and a FIFO DLQ copy need
            self._system_attributes.append("MessageGroupId")
        self.busy: set[asyncio.Task[Any]] = set()
        """Pollers with a ReceiveMessage call in flight (shutdown lets those finish)."""
        self.last_poll_at: float | None = None

    async def poll(self) -> None:
        """One poller: receive into the buffer until stopping."""
        s = self._settings
        failures = 0
        while not self._stopping.is_set():
            wanted = await self._slots.take_batch()
            if self._stopping.is_set():
                self._slots.give(wanted)
                return
            me = asyncio.current_task()
            assert me is not None
            self.busy.add(me)
            poll_started = time.monotonic()
            try:
                response = await self._sqs.receive_message(
                    QueueUrl=s.queue_url,
                    MaxNumberOfMessages=wanted,
                    WaitTimeSeconds=s.wait_time_s,
                    VisibilityTimeout=s.visibility_timeout_s,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=self._system_attributes,
                )
            except asyncio.CancelledError:
                self._slots.give(wanted)
                raise
            except SQS_ERRORS as exc:
                self._slots.give(wanted)
                failures += 1
                delay = min(2 ** min(failures, 5), 30) * self._rng.uniform(0.5, 1.0)
                event(
                    log,
                    logging.WARNING,
                    "receive failed",
                    error=error_code(exc),
                    retry_in_s=round(delay, 1),
                )
                await asyncio.sleep(delay)
                continue
            finally:
                self.busy.discard(me)
            failures = 0
            self.last_poll_at = time.monotonic()
            self._stats.poll_seconds.observe(self.last_poll_at - poll_started)
            messages = response.get("Messages", [])
            self._slots.give(wanted - len(messages))
            if not messages:
                if self.last_poll_at - poll_started < self._empty_pause_s:
                    # Short polling (wait_time_s=0) on an empty queue: do not spin.
                    await asyncio.sleep(self._empty_pause_s)
                continue
            now = time.monotonic()
            batch = [in_flight(raw, now, s.visibility_timeout_s) for raw in messages]
            self._leases.add(batch)
            self._stats.received += len(batch)
            if self._stopping.is_set():
                for item in batch:
                    self._release(item)
                return
            self._buffer.put_nowait(batch)
