"""Receiving: poller tasks long-poll SQS into a bounded buffer of received batches.

Backpressure: a poller takes buffer slots before it asks SQS for messages, so memory is
bounded by `max_in_flight` whatever the queue depth. A slot is given back only when SQS has
answered for that message's outcome (`leases.Leases.finish`).

Adaptive: how many pollers run is `pollers.PollerPolicy`'s decision after every receive;
`Receiver` starts a poller when the target grows, and a poller whose receive finds the count
above target ends. Fixed `--pollers N` is the same loop with a policy that never moves.

Shutdown: once `stopping` is set, pollers stop asking and none is started; a poll already in
flight may finish (a long poll cut off mid-request may still hand messages to the dead
connection, hiding them for a whole visibility timeout), and what it brings is handed back
(`release`) once no poll of this process is left to receive it again (`Receiver.stop`).

Deletes and visibility changes share the SQS client but never wait behind receives: the
client's connection pool (`sqs_connections`) holds every poller's connection plus
SETTLE_CONNECTIONS more.
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
from sealq.worker.pollers import PollerPolicy
from sealq.worker.settings import WorkerSettings
from sealq.worker.stats import Stats

log = logging.getLogger("sealq.worker")

Buffer = asyncio.Queue[list[InFlight] | None]
"""Received batches waiting for a consumer; `None` tells a consumer to stop."""

SETTLE_CONNECTIONS = 32
"""Connections kept for deletes, visibility changes and DLQ sends beyond one per poller:
about 400 batches a second at a 50 ms round trip (4,000 messages/s) without queueing."""
MAX_WAITING_BATCHES = 1
"""Received batches that may wait for a consumer while the pollers still grow."""
SHUTDOWN_POLL_MARGIN_S = 2.0
"""A poll in flight at shutdown gets its wait plus this to answer."""


MIN_SETTLE_CONNECTIONS = 4
"""With a client whose pool is too small for `--max-pollers`, fewer pollers so that at
least this many connections stay free for settling."""


def policy_for(settings: WorkerSettings, pool: int | None = None) -> PollerPolicy:
    """Fixed `--pollers N`, else adaptive up to `--max-pollers`; adaptive never takes more
    of a `pool` of connections than leaves MIN_SETTLE_CONNECTIONS to settling."""
    if settings.pollers is not None:
        return PollerPolicy.fixed(settings.pollers)
    cap = settings.max_pollers
    if pool is not None:
        cap = max(1, min(cap, pool - MIN_SETTLE_CONNECTIONS))
    return PollerPolicy.adaptive(cap, settings.max_in_flight)


def pool_size(sqs: Any) -> int | None:
    """An aiobotocore client's connection pool size (`meta.config`), None for other clients."""
    config = getattr(getattr(sqs, "meta", None), "config", None)
    size = getattr(config, "max_pool_connections", None)
    return size if isinstance(size, int) else None


def sqs_connections(settings: WorkerSettings) -> int:
    """The SQS client's connection pool size (`max_pool_connections`): every poller can hold
    one connection for a whole long poll, and settling still has SETTLE_CONNECTIONS of its
    own (botocore's default pool of 10 would let 10 parked long polls stall every delete)."""
    return policy_for(settings).cap + SETTLE_CONNECTIONS


class Slots:
    """Room for received, unfinished messages: `max_in_flight` in all. A counter and one
    waiter, not a semaphore: slots come back one message at a time (`Leases.finish`), and a
    semaphore release per message and ten acquires per receive were measurable per message."""

    def __init__(self, capacity: int) -> None:
        self._lock = asyncio.Lock()
        self._room: asyncio.Future[None] | None = None
        self.batch = min(10, capacity)
        self.free = capacity
        """Slots no poller holds: room for `free // batch` more receives at once."""

    async def take_batch(self) -> int:
        """Wait for room for a full receive (ten, or the capacity if smaller): receiving one
        message at a time as single slots free up would cost a call per message. One poller
        collects at a time, so two half-filled pollers cannot deadlock; it takes the whole
        batch at once, so a poller cancelled while it waits holds nothing."""
        async with self._lock:
            while self.free < self.batch:
                self._room = asyncio.get_running_loop().create_future()
                try:
                    await self._room
                finally:
                    self._room = None
            self.free -= self.batch
        return self.batch

    def give(self, count: int = 1) -> None:
        self.free += count
        room = self._room
        if room is not None and self.free >= self.batch and not room.done():
            room.set_result(None)


class Receiver:
    """The pollers: started by `start`, grown and shrunk by the policy, ended by `stop`."""

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
        policy: PollerPolicy | None = None,
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
        pool = pool_size(sqs)
        self.policy = policy or policy_for(settings, pool)
        if policy is None and self.policy.cap < policy_for(settings).cap:
            event(
                log,
                logging.WARNING,
                "SQS client pool too small for --max-pollers; fewer pollers",
                pool=pool,
                max_pollers=self.policy.cap,
                fix="create the client with sealq.aws.aio_client_config(sqs_connections(settings))",
            )
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets
        self._system_attributes = ["ApproximateReceiveCount"]
        if settings.fifo:  # the group is what ordered handling and a FIFO DLQ copy need
            self._system_attributes.append("MessageGroupId")
        self._started = 0
        self.pollers: set[asyncio.Task[Any]] = set()
        """Every poller task still running."""
        self.busy: set[asyncio.Task[Any]] = set()
        """Pollers with a ReceiveMessage call in flight (shutdown lets those finish)."""
        self.last_poll_at: float | None = None

    def start(self) -> None:
        """Start the policy's initial pollers."""
        self._fit()

    def _fit(self) -> None:
        """Start pollers up to the policy's target (never once stopping)."""
        while len(self.pollers) < self.policy.target and not self._stopping.is_set():
            self._started += 1
            task = asyncio.create_task(self._poll(), name=f"poller-{self._started}")
            self.pollers.add(task)
            task.add_done_callback(self.pollers.discard)

    def _surplus(self) -> bool:
        """Whether this poller is one too many for the target: it ends (the set shrinks at
        once, so of several pollers finding a surplus only as many as it counts end)."""
        if len(self.pollers) <= self.policy.target:
            return False
        me = asyncio.current_task()
        self.pollers.discard(me)
        return True

    def _room(self) -> bool:
        """One more receive would find its slots free, and at most one received batch is
        waiting for a consumer (more: the consumers, not SQS, are what limits the rate; one
        is jitter, a consumer just busy for a moment)."""
        return self._slots.free >= self._slots.batch and self._buffer.qsize() <= MAX_WAITING_BATCHES

    async def stop(self) -> None:
        """Shutdown (`stopping` is set): idle pollers end now; a poll in flight may finish
        within its wait (bounded by the shutdown grace), then it is cut off. Returns once no
        poll of this process can receive again."""
        polling = []
        for task in list(self.pollers):
            if task in self.busy:
                polling.append(task)
            else:
                task.cancel()
        if polling:
            s = self._settings
            wait = min(s.wait_time_s + SHUTDOWN_POLL_MARGIN_S, s.shutdown_grace_s)
            _, slow = await asyncio.wait(polling, timeout=wait)
            for task in slow:
                task.cancel()
        while self.pollers:  # none is started once stopping, so this ends
            await asyncio.gather(*list(self.pollers), return_exceptions=True)

    async def _poll(self) -> None:
        """One poller: receive into the buffer until stopping or surplus."""
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
                self.policy.failed()
                if self._surplus():
                    return
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
            self.policy.received(len(messages), wanted, self._room())
            if messages:
                now = time.monotonic()
                batch = [in_flight(raw, now, s.visibility_timeout_s) for raw in messages]
                self._leases.add(batch)
                self._stats.received += len(batch)
                if self._stopping.is_set():
                    for item in batch:
                        self._release(item)
                    return
                self._buffer.put_nowait(batch)
            if self._surplus():
                return
            self._fit()
            if not messages and self.last_poll_at - poll_started < self._empty_pause_s:
                # Short polling (wait_time_s=0) on an empty queue: do not spin.
                await asyncio.sleep(self._empty_pause_s)
