"""The message path, top to bottom: classify -> key -> open -> handler -> outcome.

`Pipeline.outcome` is that path for one message. It only decides: every way out of it is a
value from `outcomes`, chosen by `outcomes.Rules`, and `settling.Settler` carries it out.

One measured optimisation shapes the entry: consumers take whole received batches, and
`run_batch` classifies them and opens every message whose key is already cached in ONE call
(P-256 inline on the loop, everything else in one crypto-thread call: see `opening`), so
the cost of a thread hand-off is paid once per batch. Each message then continues `outcome`
from its open result, concurrently, so one slow or failing message never holds back the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import Executor
from typing import Any

from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_CONTENT_TYPE
from sealq.envelope.jwe import OpeningKey
from sealq.errors import OpenError, Reason
from sealq.worker.classify import Fetch, Open, Reject, UnknownKid, Verdict, classify
from sealq.worker.deadlines import Deadlines
from sealq.worker.groups import GroupLocks, in_groups
from sealq.worker.handler import Handler, Message
from sealq.worker.keycache import KeyRefused, KeyUnavailable
from sealq.worker.keyring import Keyring
from sealq.worker.leases import InFlight
from sealq.worker.logs import event
from sealq.worker.opening import Job, open_batch, runs_inline
from sealq.worker.outcomes import DELETE, Outcome, Release, Rules
from sealq.worker.payloads import NOT_CONFIGURED, PayloadStore
from sealq.worker.receiving import Buffer
from sealq.worker.settings import WorkerSettings
from sealq.worker.settling import Settler
from sealq.worker.stats import Stats

log = logging.getLogger("sealq.worker")

Opened = bytes | OpenError | None
"""A message's plaintext or why it cannot be opened; None: not opened with its batch."""


def being_cancelled() -> bool:
    """Whether the running task itself is being cancelled (as opposed to some code inside
    it raising CancelledError, which a user's handler can do)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _all(tasks: list[asyncio.Task[Any]]) -> None:
    """`asyncio.gather(*tasks, return_exceptions=True)`, then raise the first error in order:
    every message runs to its outcome, and a bug in one is raised once the others are done,
    so `consume` retries only the messages left unfinished. Awaiting the tasks one by one
    costs ~2 us a message less than gather's wrapping (measured). Cancelled itself, it
    cancels them all and waits for them before it re-raises, as gather would."""
    error: BaseException | None = None
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError as exc:
            if being_cancelled():
                for other in tasks:
                    other.cancel()
                await asyncio.wait(tasks)
                raise
            error = error or exc  # the task itself was cancelled (not by us): a bug
        except Exception as exc:
            error = error or exc
    if error is not None:
        raise error


class Pipeline:
    """Consumers: received batches in, one outcome per message out to the settler."""

    def __init__(
        self,
        settings: WorkerSettings,
        handler: Handler,
        *,
        keyring: Keyring,
        settler: Settler,
        release: Callable[[InFlight], None],
        rules: Rules,
        stats: Stats,
        crypto: Executor,
        clock: Callable[[], float],
        max_message_bytes: int,
        stopping: asyncio.Event,
        payloads: PayloadStore | None = None,
    ) -> None:
        self._handler = handler
        self._keyring = keyring
        self._peek = keyring.cache.peek
        self._settler = settler
        self._release = release  # shutdown's hand-backs (`leases.HandBacks`)
        self._rules = rules
        self._stats = stats
        self._crypto = crypto
        self._clock = clock
        self._max_bytes = max_message_bytes
        self._grace_s = settings.key_grace_s
        self._deadlines = Deadlines(settings.handler_timeout_s)
        self._handlers = asyncio.Semaphore(settings.concurrency)  # bounds handler calls only
        self._stopping = stopping
        self._groups = GroupLocks() if settings.fifo else None  # FIFO: in order per group (`groups`)
        self._payloads = payloads
        self.waiting: set[asyncio.Task[None]] = set()
        """Messages with an unknown kid waiting, apart from their batch, for a keyset re-read."""

    async def consume(self, buffer: Buffer) -> None:
        """One consumer: take received batches until told to stop (None). Nothing unfinished
        is dropped: cancelled by shutdown, it is released; after a bug of ours, retried."""
        while (batch := await buffer.get()) is not None:
            try:
                await self.run_batch(batch)
            except asyncio.CancelledError:
                if being_cancelled():
                    for item in batch:
                        if not item.settling:
                            self._release(item)
                    raise
                self._unexpected(batch, "CancelledError")
            except Exception as exc:  # never log bodies: the type name says enough
                self._unexpected(batch, type(exc).__name__)

    def _unexpected(self, batch: list[InFlight], error: str) -> None:
        event(log, logging.ERROR, "unexpected error", error=error)
        for item in batch:
            if not item.settling:  # one outcome each: a queued delete or change is not "left"
                self._settler.retry(item, self._rules.internal_error(item.receive_count))

    async def run_batch(self, batch: list[InFlight]) -> None:
        """Classify all, open those whose key is cached in one call, then each on its own."""
        items: list[InFlight] = []  # all but those waiting apart (`_wait_for_keyset`)
        verdicts: list[Verdict] = []
        keys: list[OpeningKey | None] = []
        jobs: list[Job] = []
        index = self._keyring.index
        assert index is not None
        now = self._clock()  # once a batch: classifying it never waits
        grace_s, max_bytes, peek = self._grace_s, self._max_bytes, self._peek
        for item in batch:
            try:
                verdict = classify(item.body, item.attributes, index, now, grace_s, max_bytes)
            except Exception as exc:  # a parsing bug must not stall the batch or loop forever
                verdict = Reject(Reason.MALFORMED, f"unexpected {type(exc).__name__} while parsing")
            key = None
            if isinstance(verdict, Open):
                key = peek(verdict.entry.record.kid)
                if key is not None:
                    jobs.append((verdict.parsed, key, item.body))
            elif (
                isinstance(verdict, UnknownKid)
                and self._groups is None  # FIFO: it keeps its place in its group instead
                and not self._keyring.fresh_for(item.received_at)
            ):
                self._wait_for_keyset(item, verdict)  # up to a second: not on this consumer
                continue
            items.append(item)
            verdicts.append(verdict)
            keys.append(key)
        results = iter(await self._open(jobs) if jobs else ())
        opened: list[Opened] = [None if key is None else next(results) for key in keys]
        steps: Iterable[Coroutine[Any, Any, object]] = (
            map(self._settle, items, verdicts, keys, opened)
            if self._groups is None
            else self._in_group_order(items, verdicts, keys, opened, self._groups)
        )
        create_task = asyncio.get_running_loop().create_task
        await _all([create_task(step) for step in steps])

    async def _settle(self, item: InFlight, verdict: Verdict, key: OpeningKey | None, opened: Opened) -> bool:
        """One message to its outcome; True if it left the queue (handled or dead-lettered)."""
        outcome = await self.outcome(item, verdict, key, opened)
        if outcome is DELETE:  # the common case, without a coroutine of its own
            self._settler.handled(item)
            return True
        if isinstance(outcome, Release):  # shutdown: held until no poll of ours can take it
            self._release(item)
            return False
        return await self._settler.settle(item, outcome)

    def _in_group_order(
        self,
        items: list[InFlight],
        verdicts: list[Verdict],
        keys: list[OpeningKey | None],
        opened: list[Opened],
        groups: GroupLocks,
    ) -> list[Coroutine[Any, Any, None]]:
        """FIFO: one task per group, each taking its messages in order (`groups`)."""
        rows = zip(items, verdicts, keys, opened, strict=True)
        state = {id(item): (verdict, key, o) for item, verdict, key, o in rows}

        def step(item: InFlight) -> Awaitable[bool]:
            return self._settle(item, *state[id(item)])

        return [groups.run(run, step, self._release) for run in in_groups(items)]

    def _wait_for_keyset(self, item: InFlight, verdict: UnknownKid) -> None:
        """An unknown kid whose next keyset read is up to a second away waits for it in its
        own task, so its consumer goes on with the rest (a flood of made-up kids must not
        stall good messages). It holds its in-flight slot meanwhile: waiters are bounded by
        `max_in_flight`. Shutdown lets it finish within the grace (`finish_waiting`)."""
        task = asyncio.create_task(self._waited(item, verdict))
        self.waiting.add(task)
        task.add_done_callback(self.waiting.discard)

    async def _waited(self, item: InFlight, verdict: UnknownKid) -> None:
        try:
            await self._settle(item, verdict, None, None)
        except asyncio.CancelledError:  # only shutdown cancels these: give it back to SQS
            if not item.settling:
                self._release(item)
            raise
        except Exception as exc:  # never log bodies: the type name says enough
            self._unexpected([item], type(exc).__name__)

    async def finish_waiting(self, timeout_s: float) -> None:
        """Shutdown: let messages waiting for a keyset read reach their outcome within
        `timeout_s`; those still waiting then are released."""
        if self.waiting:
            _, late = await asyncio.wait(set(self.waiting), timeout=max(timeout_s, 0.0))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def outcome(
        self,
        item: InFlight,
        verdict: Verdict,
        key: OpeningKey | None,
        opened: Opened,
        token: str | None = None,
    ) -> Outcome:
        """One message from its classification to its outcome. `run_batch` classified it
        (`verdict`) and, if its key was cached, already opened it (`key`, `opened`).
        `token`: the sealed token fetched from S3 for a pointer message (`_offloaded`)."""
        if opened is None:
            if isinstance(verdict, UnknownKid):  # a key rotated in since our last keyset read?
                fresh = await self._keyring.read_since(item.received_at)
                if fresh:
                    verdict = self._classify(item, token)
                if isinstance(verdict, UnknownKid):
                    return self._rules.unknown_kid(verdict.kid, fresh, self._keyring.next_read_in_s())
            if isinstance(verdict, Fetch):
                return await self._offloaded(item, verdict)
            if isinstance(verdict, Reject):
                return self._rules.rejected(verdict)
            try:
                key = await self._keyring.key(verdict.entry)  # one KMS Decrypt per kid
            except (KeyUnavailable, KeyRefused) as exc:
                return self._rules.key_failed(exc, item.receive_count)
            if token is None:
                (opened,) = await self._open([(verdict.parsed, key, item.body)])
            else:  # megabytes of AES-GCM and base64: on a crypto thread, never on the loop
                (opened,) = await self._in_thread([(verdict.parsed, key, token)])
        if isinstance(opened, OpenError):
            return self._rules.open_failed(opened)
        assert key is not None
        message = Message(
            plaintext=opened,
            kid=key.kid,
            message_id=item.message_id,
            receive_count=item.receive_count,
            client_id=item.attributes.get(ATTR_CLIENT_ID),
            content_type=item.attributes.get(ATTR_CONTENT_TYPE),
            attributes=item.attributes,
        )
        handlers = self._handlers
        await handlers.acquire()  # not `async with`: two coroutines a message fewer
        try:
            if self._stopping.is_set():
                return self._rules.unstarted()
            started = time.monotonic()
            try:
                with self._deadlines.call():
                    await self._handler(message)
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and being_cancelled():
                    raise  # shutdown is cancelling us, not the handler failing
                return self._rules.after_handler(exc, item.receive_count)
            finally:
                self._stats.handler_seconds.observe(time.monotonic() - started)
        finally:
            handlers.release()
        return self._rules.after_handler(None, item.receive_count)

    async def _offloaded(self, item: InFlight, verdict: Fetch) -> Outcome:
        """Sent through S3: fetch the token and carry on with it as if it came inline. The
        slot is held until the outcome is decided, so the token and its plaintext count
        against the payload memory bound (`payloads`) all the while."""
        store = self._payloads
        if store is None:
            return self._rules.payload_failed(NOT_CONFIGURED, item.receive_count)
        async with store.slots:
            data = await store.fetch(verdict.pointer)
            if not isinstance(data, bytearray):
                return self._rules.payload_failed(data, item.receive_count)
            item.payload = verdict.pointer  # deleted from S3 once the message is handled
            loop = asyncio.get_running_loop()
            token, fetched = await loop.run_in_executor(self._crypto, self._classify_fetched, item, data)
            del data
            return await self.outcome(item, fetched, None, None, token)

    def _classify_fetched(self, item: InFlight, data: bytearray) -> tuple[str, Verdict]:
        """On a crypto thread: a fetched object decoded and classified (parsing base64s it)."""
        try:
            token = data.decode("ascii")
        except UnicodeDecodeError:
            return "", Reject(Reason.MALFORMED, "payload is not a token")
        return token, self._classify(item, token)

    def _classify(self, item: InFlight, token: str | None = None) -> Verdict:
        index = self._keyring.index
        assert index is not None
        now = self._clock()
        if token is None:
            return classify(item.body, item.attributes, index, now, self._grace_s, self._max_bytes)
        assert self._payloads is not None
        max_bytes = self._payloads.max_bytes
        return classify(token, item.attributes, index, now, self._grace_s, max_bytes, fetched=True)

    async def _open(self, jobs: list[Job]) -> list[bytes | OpenError]:
        # Asked once per distinct key (a batch is usually under one), not once per message.
        if all(map(runs_inline, {key for _, key, _ in jobs})):
            return open_batch(jobs)
        return await self._in_thread(jobs)

    async def _in_thread(self, jobs: list[Job]) -> list[bytes | OpenError]:
        return await asyncio.get_running_loop().run_in_executor(self._crypto, open_batch, jobs)
