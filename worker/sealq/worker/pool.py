"""The worker: wires receiving, the message pipeline, settling, leases and the keyring onto
one event loop, and owns its lifecycle (run, stop, graceful shutdown). See DESIGN section 6.

- Backpressure: memory is bounded by `max_in_flight` whatever the queue depth (`receiving`).
- Nothing is lost: a message is deleted only after its handler succeeded or it is safely in
  the DLQ (`settling`); every other path leaves it in SQS (visibility backoff, or visibility
  0 on shutdown) to be delivered again.
- Crypto: P-256 opens inline on the loop (cheaper than a thread hand-off); RSA, P-384 and
  P-521 go to a thread pool, where they release the GIL, use every core and never stall the
  loop (`opening` has the figures).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sealq.envelope.jwe import DEFAULT_MAX_TOKEN_BYTES
from sealq.keys.keyset import parse_cmk_list
from sealq.keys.store import KeysetStore
from sealq.worker.keycache import KeyCache
from sealq.worker.keyring import Keyring
from sealq.worker.leases import HandBacks, Leases
from sealq.worker.loading import as_handler
from sealq.worker.logs import event
from sealq.worker.outcomes import Rules
from sealq.worker.payloads import PayloadStore, parse_buckets
from sealq.worker.pipeline import Pipeline
from sealq.worker.receiving import Buffer, Receiver, Slots
from sealq.worker.settings import WorkerSettings
from sealq.worker.settling import Settler
from sealq.worker.stats import KidLabels, Stats

log = logging.getLogger("sealq.worker")


@dataclass(frozen=True, slots=True)
class Tuning:
    """Internal constants, not settings: fixed in production, shortened by tests."""

    unknown_kid_refresh_min_s: float = 1.0
    """At most one keyset re-read a second on account of unknown kids: a flood of bogus kids
    costs one small read a second, and a real new key waits at most a second."""
    kms_retry_s: int = 15
    """Visibility backoff for a message whose key KMS cannot unwrap right now."""
    empty_poll_pause_s: float = 0.2
    """Pause after an empty poll that returned faster than this (short polling): no spin."""
    max_foreign_kids: int = 100
    """Distinct kids outside the keyset used as metric labels; the rest are `other`."""


class Worker:
    """One process's worker: `run` until `stop`, then a graceful shutdown.

    `handler` is adapted once here (`typed.as_handler`): async or plain, taking the
    `Message` or a declared payload type; a signature sealq cannot call raises HandlerLoadError."""

    def __init__(
        self,
        settings: WorkerSettings,
        handler: Callable[..., object],
        *,
        sqs: Any,
        kms: Any,
        keystore: KeysetStore,
        clock: Callable[[], float] = time.time,
        max_message_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        tuning: Tuning = Tuning(),
        s3: Any = None,
    ) -> None:
        s = self.settings = settings
        self.stats = Stats()
        self._stopping = asyncio.Event()
        self._crypto = ThreadPoolExecutor(s.crypto_threads, thread_name_prefix="sealq-crypto")
        self.keys = KeyCache(
            kms, executor=self._crypto, clock=clock, allowed_cmks=parse_cmk_list(s.allowed_cmk_arns)
        )
        self._keyring = Keyring(
            keystore,
            self.keys,
            clock=clock,
            key_grace_s=s.key_grace_s,
            refresh_s=s.keyset_refresh_s,
            unknown_kid_refresh_min_s=tuning.unknown_kid_refresh_min_s,
        )
        rules = Rules(
            max_attempts=s.max_attempts,
            backoff_base_s=s.backoff_base_s,
            backoff_max_s=s.backoff_max_s,
            kms_retry_s=tuning.kms_retry_s,
            rng=random.Random(),  # noqa: S311 - jitter, not secrets
        )
        payloads = None
        if s3 is not None:
            payloads = PayloadStore(
                s3,
                buckets=parse_buckets(s.payload_buckets),
                max_bytes=s.max_payload_bytes,
                at_once=s.payload_fetches,
                keep=s.keep_payloads,
            )
        self.payloads = payloads
        """Payloads sent through S3 (`s3` given): fetch and delete counts for tests."""
        slots = Slots(s.max_in_flight)
        self._leases = Leases(on_finish=slots.give)
        self._settler = Settler(
            sqs,
            queue_url=s.queue_url,
            dlq_url=s.dlq_url,
            rules=rules,
            leases=self._leases,
            stats=self.stats,
            kid_label=KidLabels(self._keyring.knows, tuning.max_foreign_kids),
            payloads=payloads,
        )
        self._hand_back = HandBacks(self._settler.release, self._stopping)
        self._buffer: Buffer = asyncio.Queue()
        self._receiver = Receiver(
            sqs,
            s,
            buffer=self._buffer,
            slots=slots,
            leases=self._leases,
            stats=self.stats,
            release=self._hand_back,
            stopping=self._stopping,
            empty_poll_pause_s=tuning.empty_poll_pause_s,
        )
        self._pipeline = Pipeline(
            s,
            as_handler(handler),
            keyring=self._keyring,
            settler=self._settler,
            release=self._hand_back,
            rules=rules,
            stats=self.stats,
            crypto=self._crypto,
            clock=clock,
            max_message_bytes=max_message_bytes,
            stopping=self._stopping,
            payloads=payloads,
        )

    @property
    def ready(self) -> bool:
        return self._keyring.index is not None and not self._stopping.is_set()

    @property
    def draining(self) -> bool:
        return self._stopping.is_set()

    @property
    def in_flight(self) -> int:
        return len(self._leases)

    @property
    def pollers(self) -> int:
        """Concurrent receives now (adaptive: moves with the queue; `--pollers N`: N)."""
        return len(self._receiver.pollers)

    @property
    def last_poll_at(self) -> float | None:
        """When (monotonic) a ReceiveMessage call last completed; None before the first."""
        return self._receiver.last_poll_at

    def stop(self) -> None:
        """Begin a graceful shutdown; `run` returns once it is done."""
        self._stopping.set()

    async def run(self) -> None:
        await self._keyring.load()
        s = self.settings
        self._receiver.start()
        # Enough batch consumers to keep every crypto thread busy while handlers run;
        # handler calls themselves are bounded by the `concurrency` semaphore.
        count = -(-s.concurrency // 10) + s.crypto_threads
        consume = self._pipeline.consume
        consumers = [asyncio.create_task(consume(self._buffer), name=f"consumer-{i}") for i in range(count)]
        heartbeat = self._leases.heartbeat(s.heartbeat_s, s.visibility_timeout_s, self._settler.extend)
        chores = [asyncio.create_task(heartbeat), asyncio.create_task(self._keyring.housekeeping())]
        event(
            log,
            logging.INFO,
            "worker started",
            queue=s.queue_url,
            concurrency=s.concurrency,
            pollers=s.pollers if s.pollers is not None else f"adaptive, at most {self._receiver.policy.cap}",
            keys=len(self._keyring.index or ()),
        )
        try:
            await self._stopping.wait()
        finally:
            await self._shutdown(consumers, chores)

    async def _shutdown(
        self,
        consumers: list[asyncio.Task[None]],
        chores: list[asyncio.Task[None]],
    ) -> None:
        self._stopping.set()
        started = time.monotonic()
        # A poll already in flight may finish (bounded); what it brings, like every other
        # hand-back, is held until the polls are over (see `leases.HandBacks`). Idle pollers
        # just stop.
        await self._receiver.stop()
        # No poll of ours can receive them again now: give back what was held meanwhile,
        # then what is received but not started (one shutdown, one receive count at most).
        self._hand_back.let_go()
        while not self._buffer.empty():
            for item in self._buffer.get_nowait() or ():
                self._hand_back(item)
        for _ in consumers:
            self._buffer.put_nowait(None)
        grace_ends = time.monotonic() + self.settings.shutdown_grace_s
        _, late = await asyncio.wait(consumers, timeout=self.settings.shutdown_grace_s)
        for task in late:
            task.cancel()  # `Pipeline.consume` releases the messages it was working on
        await asyncio.gather(*consumers, return_exceptions=True)
        await self._pipeline.finish_waiting(grace_ends - time.monotonic())
        await self._keyring.close()
        for task in chores:
            task.cancel()
        await asyncio.gather(*chores, return_exceptions=True)
        await self._settler.close()
        self._crypto.shutdown(wait=False, cancel_futures=True)
        event(
            log,
            logging.INFO,
            "worker stopped",
            handled=self.stats.handled,
            released=self.stats.released,
            unfinished_handlers=len(late),
            seconds=round(time.monotonic() - started, 3),
        )
