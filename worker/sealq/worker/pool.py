"""The worker pool: pollers fill a bounded buffer, consumers open and hand off, outcomes are
acted on in batches. One class, one event loop; see DESIGN section 6.

- Backpressure: a poller takes buffer slots before it asks SQS for messages, so memory is
  bounded by `max_in_flight` whatever the queue depth.
- Nothing is lost: a message is deleted only after its handler succeeded or it is safely in
  the DLQ; every other path leaves it in SQS (visibility backoff, or visibility 0 on
  shutdown) to be delivered again.
- Crypto: P-256 opens inline on the loop (cheaper than a thread hand-off); RSA, P-384 and
  P-521 go to a thread pool, where they release the GIL, use every core and never stall the
  loop (worker/crypto.py has the figures).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sealq.aws.errors import error_code
from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_CONTENT_TYPE, ATTR_KEY_ID
from sealq.envelope.jwe import DEFAULT_MAX_TOKEN_BYTES, OpeningKey
from sealq.envelope.jwk import KID_PATTERN
from sealq.errors import OpenError, Reason
from sealq.keys.store import KeysetError, KeysetStore
from sealq.worker.batcher import Batcher
from sealq.worker.classify import KeyIndex, Open, Reject, UnknownKid, Verdict, classify
from sealq.worker.handler import Handler, HandlerRejected, Message
from sealq.worker.keycache import KeyCache, KeyRefused, KeyUnavailable
from sealq.worker.logs import event
from sealq.worker.opening import Job, open_batch, runs_inline
from sealq.worker.outcomes import backoff_s, dead_letter_attributes
from sealq.worker.settings import MAX_VISIBILITY_S, WorkerSettings
from sealq.worker.stats import Stats

log = logging.getLogger("sealq.worker")

AWS_ERRORS = (ClientError, BotoCoreError, OSError, asyncio.TimeoutError)
UNKNOWN_KID_REFRESH_MIN_S = 1.0
"""At most one keyset re-read a second on account of unknown kids: a flood of bogus kids
costs one small read a second, and a real new key waits at most a second."""
KMS_RETRY_S = 15
EMPTY_POLL_PAUSE_S = 0.2
MAX_FOREIGN_KIDS = 100
MAX_LOGGED_CLIENT_ID = 128


def _being_cancelled() -> bool:
    """Whether the running task itself is being cancelled (as opposed to some code inside
    it raising CancelledError, which a user's handler can do)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass(slots=True)
class InFlight:
    """A received message from receipt to outcome."""

    message_id: str
    receipt: str
    body: str
    attributes: dict[str, str]
    raw_attributes: dict[str, Any]
    receive_count: int
    received_at: float
    visible_until: float
    settling: bool = False  # an outcome (delete or visibility change) has been submitted
    finished: bool = field(default=False)


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        handler: Handler,
        *,
        sqs: Any,
        kms: Any,
        keystore: KeysetStore,
        clock: Callable[[], float] = time.time,
        max_message_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
    ) -> None:
        self.settings = settings
        self.stats = Stats()
        self._handler = handler
        self._sqs = sqs
        self._store = keystore
        self._clock = clock
        self._max_bytes = max_message_bytes
        self._crypto = ThreadPoolExecutor(settings.crypto_threads, thread_name_prefix="sealq-crypto")
        self.keys = KeyCache(kms, executor=self._crypto, clock=clock)
        self._index: KeyIndex | None = None
        self._last_refresh = 0.0
        self._fresh_since = float("-inf")
        self._foreign_kids: set[str] = set()
        self._refreshing: asyncio.Task[None] | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets
        self._buffer: asyncio.Queue[list[InFlight] | None] = asyncio.Queue()
        self._handlers = asyncio.Semaphore(settings.concurrency)
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._slot_lock = asyncio.Lock()
        self._receiving: set[asyncio.Task[Any]] = set()
        self._inflight: dict[str, InFlight] = {}
        self._stop = asyncio.Event()
        self._stopping = False
        self.last_poll_at: float | None = None
        q = settings.queue_url
        self._deleter = Batcher(
            "DeleteMessageBatch",
            lambda entries: self._sqs.delete_message_batch(QueueUrl=q, Entries=entries),
        )
        self._visibility = Batcher(
            "ChangeMessageVisibilityBatch",
            lambda entries: self._sqs.change_message_visibility_batch(QueueUrl=q, Entries=entries),
        )

    # ----- lifecycle -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._index is not None and not self._stopping

    @property
    def draining(self) -> bool:
        return self._stopping

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def stop(self) -> None:
        """Begin a graceful shutdown; `run` returns once it is done."""
        self._stopping = True
        self._stop.set()

    async def run(self) -> None:
        await self._load_keyset()
        s = self.settings
        pollers = [asyncio.create_task(self._poll(), name=f"poller-{i}") for i in range(s.pollers)]
        # Enough batch consumers to keep every crypto thread busy while handlers run;
        # handler calls themselves are bounded by the `concurrency` semaphore.
        count = -(-s.concurrency // 10) + s.crypto_threads
        consumers = [asyncio.create_task(self._consume(), name=f"consumer-{i}") for i in range(count)]
        chores = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._housekeeping())]
        event(
            log,
            logging.INFO,
            "worker started",
            queue=s.queue_url,
            concurrency=s.concurrency,
            pollers=s.pollers,
            keys=len(self._index or ()),
        )
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(pollers, consumers, chores)

    async def _shutdown(
        self,
        pollers: list[asyncio.Task[None]],
        consumers: list[asyncio.Task[None]],
        chores: list[asyncio.Task[None]],
    ) -> None:
        self._stopping = True
        started = time.monotonic()
        # A long poll cut off mid-request may still hand messages to the dead connection,
        # hiding them for a whole visibility timeout; so a poll already in flight may finish
        # (bounded) and what it brings is released at once. Idle pollers just stop.
        for task in pollers:
            if task not in self._receiving:
                task.cancel()
        busy = [t for t in pollers if not t.done() and t in self._receiving]
        if busy:
            wait = min(self.settings.wait_time_s + 2.0, self.settings.shutdown_grace_s)
            _, slow = await asyncio.wait(busy, timeout=wait)
            for task in slow:
                task.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        # Received but not started: give them back to SQS at once.
        while not self._buffer.empty():
            for item in self._buffer.get_nowait() or ():
                self._release(item)
        for _ in consumers:
            self._buffer.put_nowait(None)
        _, late = await asyncio.wait(consumers, timeout=self.settings.shutdown_grace_s)
        for task in late:
            task.cancel()  # _consume releases the message it was working on
        await asyncio.gather(*consumers, return_exceptions=True)
        for task in chores:
            task.cancel()
        await asyncio.gather(*chores, return_exceptions=True)
        await self._deleter.close()
        await self._visibility.close()
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

    # ----- keyset ----------------------------------------------------------------------

    async def _load_keyset(self) -> None:
        started = time.monotonic()
        self._last_refresh = started  # attempts, failed ones too, count for the rate limit
        keyset = await asyncio.to_thread(self._store.load)
        index = KeyIndex(keyset)
        self._fresh_since = started  # a successful read that began at this moment
        if self._index is not None:
            for kid in self.keys.kids():
                entry = index.get(kid)
                if entry is None or entry.shredded:
                    self.keys.evict(kid)
                    event(log, logging.INFO, "key evicted", kid=kid, why="expired in keyset")
        added = index.kids() - (self._index.kids() if self._index is not None else frozenset())
        self._index = index
        if added:
            event(log, logging.INFO, "keyset loaded", keys=len(index), new=sorted(added))

    async def _refresh(self) -> None:
        """Single-flight keyset re-read; a failure keeps the keys we have."""
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._load_keyset())
        task = self._refreshing
        try:
            await asyncio.shield(task)
        except KeysetError as exc:
            event(log, logging.WARNING, "keyset refresh failed", error=str(exc))
        finally:
            if self._refreshing is task and task.done():
                self._refreshing = None

    async def _refresh_for_unknown(self, item: InFlight) -> bool:
        """True once a keyset read that *began after the message arrived* has succeeded, so
        an unknown kid is really unknown. A message can only name a key that was in the
        keyset before it was sent, so such a read would have seen it. Re-reads are
        rate-limited; while the limit holds or a read fails, the caller retries the message
        later instead of dead-lettering it: a key rotated in is never called unknown."""
        if self._fresh_since >= item.received_at:
            return True
        if self._refreshing is not None or time.monotonic() - self._last_refresh >= UNKNOWN_KID_REFRESH_MIN_S:
            await self._refresh()
        return self._fresh_since >= item.received_at

    # ----- receiving -------------------------------------------------------------------

    async def _take_slots(self) -> int:
        """Wait for room for a full receive (ten, or max_in_flight if smaller): receiving
        one message at a time as single slots free up would cost a call per message.
        One poller collects at a time, so two half-filled pollers cannot deadlock."""
        wanted = min(10, self.settings.max_in_flight)
        async with self._slot_lock:
            for _ in range(wanted):
                await self._slots.acquire()
        return wanted

    def _give_slots(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    async def _poll(self) -> None:
        s = self.settings
        failures = 0
        while not self._stopping:
            wanted = await self._take_slots()
            if self._stopping:
                self._give_slots(wanted)
                return
            me = asyncio.current_task()
            assert me is not None
            self._receiving.add(me)
            poll_started = time.monotonic()
            try:
                response = await self._sqs.receive_message(
                    QueueUrl=s.queue_url,
                    MaxNumberOfMessages=wanted,
                    WaitTimeSeconds=s.wait_time_s,
                    VisibilityTimeout=s.visibility_timeout_s,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except asyncio.CancelledError:
                self._give_slots(wanted)
                raise
            except AWS_ERRORS as exc:
                self._give_slots(wanted)
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
                self._receiving.discard(me)
            failures = 0
            self.last_poll_at = time.monotonic()
            self.stats.poll_seconds.observe(self.last_poll_at - poll_started)
            messages = response.get("Messages", [])
            self._give_slots(wanted - len(messages))
            if not messages:
                if self.last_poll_at - poll_started < EMPTY_POLL_PAUSE_S:
                    # Short polling (wait_time_s=0) on an empty queue: do not spin.
                    await asyncio.sleep(EMPTY_POLL_PAUSE_S)
                continue
            now = time.monotonic()
            batch = [self._in_flight(raw, now) for raw in messages]
            for item in batch:
                self._inflight[item.receipt] = item
            self.stats.received += len(batch)
            if self._stopping:
                for item in batch:
                    self._release(item)
                return
            self._buffer.put_nowait(batch)

    def _in_flight(self, raw: dict[str, Any], now: float) -> InFlight:
        raw_attrs = raw.get("MessageAttributes") or {}
        attrs = {k: v["StringValue"] for k, v in raw_attrs.items() if "StringValue" in v}
        return InFlight(
            message_id=raw["MessageId"],
            receipt=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            attributes=attrs,
            raw_attributes=raw_attrs,
            receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            received_at=now,
            visible_until=now + self.settings.visibility_timeout_s,
        )

    # ----- processing ------------------------------------------------------------------
    #
    # Consumers take whole received batches (up to ten messages): classification runs on
    # the loop, and all the batch's decryption goes to the crypto threads in ONE call, so
    # the per-message cost of handing work to a thread is paid once per batch. Each
    # message then gets its own handler call, outcome and ack, so one slow or failing
    # message never holds back the others.

    async def _consume(self) -> None:
        while True:
            batch = await self._buffer.get()
            if batch is None:
                return
            try:
                await self._process_batch(batch)
            except asyncio.CancelledError:
                if _being_cancelled():
                    for item in batch:
                        if not item.finished:
                            self._release(item)
                    raise
                event(log, logging.ERROR, "unexpected error", error="CancelledError")
                for item in batch:
                    if not item.finished:
                        self._retry(item, "internal-error")
            except Exception as exc:  # a bug of ours: keep the messages, never log bodies
                event(log, logging.ERROR, "unexpected error", error=type(exc).__name__)
                for item in batch:
                    if not item.finished:
                        self._retry(item, "internal-error")

    def _verdict(self, item: InFlight) -> Verdict:
        assert self._index is not None
        return classify(
            item.body, item.attributes, self._index, self._clock(), self.settings.key_grace_s, self._max_bytes
        )

    async def _process_batch(self, batch: list[InFlight]) -> None:
        jobs: list[tuple[InFlight, OpeningKey, Open]] = []
        steps: list[Awaitable[None]] = []
        for item in batch:
            try:
                verdict = self._verdict(item)
            except Exception as exc:  # a parsing bug must not stall the batch or loop forever
                verdict = Reject(Reason.MALFORMED, f"unexpected {type(exc).__name__} while parsing")
            key = self.keys.peek(verdict.entry.record.kid) if isinstance(verdict, Open) else None
            if key is not None:
                jobs.append((item, key, verdict))  # type: ignore[arg-type]
            else:
                steps.append(self._process_slowly(item, verdict))
        if jobs:
            results = await self._open([(v.parsed, key, item.body) for item, key, v in jobs])
            for (item, key, _), result in zip(jobs, results, strict=True):
                if isinstance(result, OpenError):
                    steps.append(self._dead_letter(item, result.reason, ""))
                else:
                    steps.append(self._dispatch(item, key, result))
        # Every step runs to its end; a bug in one is reported once the others are done,
        # so the caller retries only the messages left unfinished.
        for outcome in await asyncio.gather(*steps, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def _process_slowly(self, item: InFlight, verdict: Verdict) -> None:
        """A message that needs a keyset refresh, a KMS call, or a dead-letter."""
        if isinstance(verdict, UnknownKid):
            if not await self._refresh_for_unknown(item):
                wait = UNKNOWN_KID_REFRESH_MIN_S - (time.monotonic() - self._last_refresh)
                self._retry(item, "unknown-kid", verdict.kid, delay_s=max(1, math.ceil(wait)))
                return
            verdict = self._verdict(item)
            if isinstance(verdict, UnknownKid):
                verdict = Reject(Reason.UNKNOWN_KEY, "")
        if isinstance(verdict, Reject):
            await self._dead_letter(item, verdict.reason, verdict.detail)
            return
        try:
            key = await self.keys.get(verdict.entry)
        except KeyUnavailable as exc:
            self._retry(item, "kms-unavailable", str(exc), delay_s=KMS_RETRY_S)
            return
        except KeyRefused as exc:
            await self._dead_letter(item, Reason.DECRYPT_FAILED, str(exc))
            return
        (result,) = await self._open([(verdict.parsed, key, item.body)])
        if isinstance(result, OpenError):
            await self._dead_letter(item, result.reason, "")
        else:
            await self._dispatch(item, key, result)

    async def _open(self, jobs: list[Job]) -> list[bytes | OpenError]:
        if all(runs_inline(key) for _, key, _ in jobs):
            return open_batch(jobs)
        return await asyncio.get_running_loop().run_in_executor(self._crypto, open_batch, jobs)

    async def _dispatch(self, item: InFlight, key: OpeningKey, plaintext: bytes) -> None:
        message = Message(
            plaintext=plaintext,
            kid=key.kid,
            message_id=item.message_id,
            receive_count=item.receive_count,
            client_id=item.attributes.get(ATTR_CLIENT_ID),
            content_type=item.attributes.get(ATTR_CONTENT_TYPE),
            attributes=item.attributes,
        )
        del plaintext
        async with self._handlers:
            if self._stopping:  # never started: SQS delivers it again at once
                self._release(item)
                return
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.settings.handler_timeout_s):
                    await self._handler(message)
            except HandlerRejected as exc:
                await self._dead_letter(item, Reason.HANDLER_REJECTED, str(exc))
                return
            except (Exception, asyncio.CancelledError) as exc:  # any handler failure is a retry
                if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                    raise  # shutdown is cancelling us, not the handler failing
                name = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                if item.receive_count >= self.settings.max_attempts:
                    detail = f"{name} after {item.receive_count} attempts"
                    await self._dead_letter(item, Reason.HANDLER_ERROR, detail)
                else:
                    self._retry(item, "handler-error", name)
                return
            finally:
                self.stats.handler_seconds.observe(time.monotonic() - started)
        self.stats.handled += 1
        if log.isEnabledFor(logging.DEBUG):  # per message: skip building the fields when off
            latency_ms = round((time.monotonic() - item.received_at) * 1000, 1)
            event(
                log,
                logging.DEBUG,
                "handled",
                message_id=item.message_id,
                kid=key.kid,
                client_id=message.client_id,
                latency_ms=latency_ms,
            )
        self._delete(item)

    # ----- outcomes --------------------------------------------------------------------

    def _finish(self, item: InFlight) -> None:
        if not item.finished:
            item.finished = True
            self._inflight.pop(item.receipt, None)
            self._slots.release()

    def _delete(self, item: InFlight) -> None:
        def done(ok: bool) -> None:
            if not ok:
                self.stats.ack_failures += 1
                event(
                    log,
                    logging.WARNING,
                    "delete failed; SQS will deliver it again",
                    message_id=item.message_id,
                )
            self._finish(item)

        item.settling = True
        self._deleter.submit({"ReceiptHandle": item.receipt}, done)

    def _set_visibility(self, item: InFlight, seconds: int) -> None:
        item.settling = True
        self._visibility.submit(
            {"ReceiptHandle": item.receipt, "VisibilityTimeout": seconds},
            lambda ok: self._finish(item),
        )

    def _retry(self, item: InFlight, why: str, detail: str = "", delay_s: int | None = None) -> None:
        s = self.settings
        delay = (
            delay_s
            if delay_s is not None
            else backoff_s(item.receive_count, s.backoff_base_s, s.backoff_max_s, self._rng)
        )
        self.stats.retried += 1
        event(
            log,
            logging.INFO,
            "retry later",
            message_id=item.message_id,
            why=why,
            error=detail or None,
            attempt=item.receive_count,
            retry_in_s=delay,
        )
        self._set_visibility(item, delay)

    def _release(self, item: InFlight) -> None:
        """Hand an unfinished message straight back to SQS (shutdown)."""
        self.stats.released += 1
        self._set_visibility(item, 0)

    def _kid_label(self, item: InFlight) -> str:
        """The kid as a metric label and log field: senders choose it, so only a well-formed
        kid is used, and at most MAX_FOREIGN_KIDS distinct ones outside the keyset."""
        kid = item.attributes.get(ATTR_KEY_ID, "")
        if KID_PATTERN.fullmatch(kid) is None:
            return "-" if not kid else "invalid"
        known = self._index is not None and self._index.get(kid) is not None
        if known or kid in self._foreign_kids:
            return kid
        if len(self._foreign_kids) < MAX_FOREIGN_KIDS:
            self._foreign_kids.add(kid)
            return kid
        return "other"

    async def _dead_letter(self, item: InFlight, reason: Reason, detail: str) -> None:
        kid = self._kid_label(item)
        try:
            await self._sqs.send_message(
                QueueUrl=self.settings.dlq_url,
                MessageBody=item.body,
                MessageAttributes=dead_letter_attributes(
                    item.raw_attributes, reason, detail, body_bytes=len(item.body.encode())
                ),
            )
        except AWS_ERRORS as exc:
            # Not in the DLQ, so not deleted: it comes back and we try again.
            self._retry(item, "dlq-send-failed", error_code(exc))
            return
        self.stats.dead_lettered[(reason.value, kid)] += 1
        event(
            log,
            logging.WARNING,
            "dead-lettered",
            message_id=item.message_id,
            kid=kid,
            client_id=(item.attributes.get(ATTR_CLIENT_ID) or "")[:MAX_LOGGED_CLIENT_ID] or None,
            reason=reason.value,
        )
        self._delete(item)

    # ----- background chores -----------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Extend every unfinished message whose visibility would lapse before the next tick,
        never past SQS's 12 h limit from receipt."""
        s = self.settings
        while True:
            await asyncio.sleep(s.heartbeat_s)
            now = time.monotonic()
            for item in list(self._inflight.values()):
                if item.settling or item.visible_until - now > s.heartbeat_s * 1.5:
                    continue
                left = MAX_VISIBILITY_S - (now - item.received_at) - 60
                extend = int(min(s.visibility_timeout_s, left))
                if extend <= 0:
                    continue
                item.visible_until = now + extend
                self._visibility.submit(
                    {"ReceiptHandle": item.receipt, "VisibilityTimeout": extend}, lambda ok: None
                )

    async def _housekeeping(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(min(5.0, s.keyset_refresh_s))
            for kid in self.keys.evict_expired(self._clock(), s.key_grace_s):
                event(log, logging.INFO, "key evicted", kid=kid, why="expired")
            if time.monotonic() - self._last_refresh >= s.keyset_refresh_s:
                await self._refresh()
