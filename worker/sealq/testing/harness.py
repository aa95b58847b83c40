"""Run a handler on one sealed message through sealq's real worker, and say what became of it.

`run_handler` seals a payload to a test key exactly as a Producer would, puts it on an
in-memory queue and runs the real `Worker` over it (classification, key unwrap through a fake
KMS, opening, the handler, the outcome) until the message is settled. So a handler's test
sees what production would do with what the handler does: handled, dead-lettered with
which reason, or retried after how long.

The outcome is read the way an operator would see it, from the queues: a copy in the DLQ
with its `sealq-reason`, a retry as the visibility the worker set on the source message, a
handled message as gone from both. A retry that sealq makes before it can decide about a
message (a kid it has not seen yet: it re-reads the keyset first) is followed to its end,
as SQS would deliver the message again.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sealq.envelope.attributes import ATTR_DETAIL, ATTR_REASON
from sealq.errors import Reason
from sealq.keys.store import KeysetStore
from sealq.producer.message import Body
from sealq.testing.keys import TestKey
from sealq.testing.kms import FakeKMS, write_keyset
from sealq.testing.sqs import MemoryQueue, MemorySQS, QueuedMessage
from sealq.worker import Message, Worker, WorkerSettings
from sealq.worker.loading import as_handler

QUEUE, DLQ = "sealq-testing-queue", "sealq-testing-dlq"
_POLL_S = 0.005
_LONG_POLL_CAP_S = 0.05


class Settled(StrEnum):
    HANDLED = "handled"
    """The handler returned; the message was deleted."""
    DEAD_LETTERED = "dead-lettered"
    """Copied to the DLQ with a reason, then deleted: it will not come back by itself."""
    RETRIED = "retried"
    """Left in the queue, invisible for `retry_in_s`: SQS delivers it again after that."""


@dataclass(frozen=True)
class HandlerOutcome:
    """What the worker did with the message, and what the handler saw and raised."""

    settled: Settled
    reason: Reason | None = None
    """Dead-lettered: the `sealq-reason` on the DLQ copy."""
    detail: str | None = None
    """Dead-lettered: the `sealq-detail` beside it, if the worker gave one."""
    retry_in_s: float | None = None
    """Retried: the visibility timeout the worker set, i.e. the delay before redelivery."""
    messages: tuple[Message, ...] = ()
    """Every message the handler was called with, in order (empty: never called)."""
    error: BaseException | None = None
    """What the handler raised on its last call, if it raised."""
    dead_letter: QueuedMessage | None = field(default=None, repr=False)
    """Dead-lettered: the DLQ copy (original body, attributes plus reason and detail)."""

    @property
    def handled(self) -> bool:
        return self.settled is Settled.HANDLED

    @property
    def dead_lettered(self) -> bool:
        return self.settled is Settled.DEAD_LETTERED

    @property
    def retried(self) -> bool:
        return self.settled is Settled.RETRIED

    @property
    def handler_called(self) -> bool:
        return bool(self.messages)


class _Watched:
    """The user's handler, recording its calls; the worker sees no difference. It is adapted
    as `sealq run` adapts it (`as_handler`): a plain function runs in a thread, a declared
    payload type is validated first, a signature sealq cannot call fails here."""

    def __init__(self, handler: Callable[..., object]) -> None:
        self._handler = as_handler(handler)
        self.worker: Worker | None = None
        self.messages: list[Message] = []
        self.error: BaseException | None = None
        self.running = 0
        self.retried_before_last_call = 0

    async def __call__(self, message: Message) -> object:
        assert self.worker is not None
        self.messages.append(message)
        self.retried_before_last_call = self.worker.stats.retried
        self.running += 1
        try:
            result = await self._handler(message)
        except BaseException as exc:
            self.error = exc
            raise
        else:
            self.error = None
            return result
        finally:
            self.running -= 1


class _QuickPollSQS(MemorySQS):
    """Long polls of at most 50 ms, so the worker stops at once when the outcome is known
    (a stopping worker lets a poll in flight finish)."""

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        wait = min(float(kw.get("WaitTimeSeconds", 0)), _LONG_POLL_CAP_S)
        return await super().receive_message(**{**kw, "WaitTimeSeconds": wait})


def _settings(keyset: Path, max_attempts: int, handler_timeout_s: float) -> WorkerSettings:
    # Every value given, so SEALQ_* variables in the caller's environment change nothing;
    # the rules a user's handler meets (backoff, key grace) keep the worker's defaults.
    fields = WorkerSettings.model_fields
    defaults = {name: fields[name].default for name in ("backoff_base_s", "backoff_max_s", "key_grace_s")}
    return WorkerSettings(
        queue_url=QUEUE,
        dlq_url=DLQ,
        keyset=str(keyset),
        handler="sealq.testing:run_handler",  # not loaded: the handler is passed in
        concurrency=1,
        pollers=1,
        max_in_flight=1,
        wait_time_s=1,
        visibility_timeout_s=max(60, int(handler_timeout_s) + 30),
        heartbeat_s=20,
        handler_timeout_s=handler_timeout_s,
        max_attempts=max_attempts,
        shutdown_grace_s=5,
        keyset_refresh_s=60,
        crypto_threads=1,
        **defaults,
    )


def _attributes(base: Mapping[str, Any], overrides: Mapping[str, str | None] | None) -> dict[str, Any]:
    out = dict(base)
    for name, value in (overrides or {}).items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = {"DataType": "String", "StringValue": value}
    return out


async def run_handler(
    handler: Callable[..., object],
    payload: Body = b"",
    *,
    key: TestKey | None = None,
    client_id: str | None = None,
    content_type: str | None = None,
    attributes: Mapping[str, str | None] | None = None,
    body: str | None = None,
    receive_count: int = 1,
    max_attempts: int = 5,
    handler_timeout_s: float = 10.0,
    timeout_s: float = 30.0,
) -> HandlerOutcome:
    """Seal `payload` to `key` (a fresh P-256 TestKey if None), deliver it once to `handler`
    (an `async def handle(message)`, or a plain function, run in a thread) through a real
    Worker, and return the outcome.

    - `handler` may declare a payload type (`handle(order: Order[, message])`) and `payload`
      may be a pydantic model: it is sent as a Producer sends it (its JSON, content-type
      application/json) and validated into the handler's type as in production.

    - `client_id`, `content_type`: the attributes a Producer sets from them.
    - `attributes`: String attributes set after sealing; they may replace sealq's own (a
      different `key-id`) or, given as None, remove them.
    - `body`: send this raw body instead of the sealed payload (a corrupt or foreign token);
      the attributes stay those of the sealed message.
    - `receive_count`: the delivery this is (SQS's ApproximateReceiveCount); with
      `max_attempts` it decides whether a failing handler is retried or dead-lettered.
    - `handler_timeout_s`: a handler running longer fails (and is retried), as in production;
      the error it shows is the CancelledError that cut it off.

    Raises TimeoutError if nothing is settled within `timeout_s`. Never writes a private key to
    disk: the temporary keyset holds only the fake KMS's opaque blob.
    """
    if receive_count < 1:
        raise ValueError("receive_count counts deliveries and starts at 1")
    key = key if key is not None else TestKey()
    entry = key.seal(payload, client_id=client_id, content_type=content_type)
    source, dlq = MemoryQueue(QUEUE), MemoryQueue(DLQ)
    source.put(
        entry.body if body is None else body,
        _attributes(entry.attributes, attributes),
        receive_count=receive_count - 1,
    )
    kms = FakeKMS()
    with tempfile.TemporaryDirectory(prefix="sealq-testing-") as tmp:
        path = Path(tmp) / "keyset.json"
        write_keyset(path, key.record(kms))
        watched = _Watched(handler)
        worker = watched.worker = Worker(
            _settings(path, max_attempts, handler_timeout_s),
            watched,
            sqs=_QuickPollSQS(source, dlq),
            kms=kms,
            keystore=KeysetStore(path),
        )
        await _run_until_settled(worker, watched, timeout_s)
    return _outcome(source, dlq, watched)


async def _run_until_settled(worker: Worker, watched: _Watched, timeout_s: float) -> None:
    task = asyncio.create_task(worker.run(), name="sealq-testing-worker")
    deadline = time.monotonic() + timeout_s
    settled = False
    try:
        while not task.done() and not settled:
            stats = worker.stats
            handler_retried = (
                watched.messages and not watched.running and stats.retried > watched.retried_before_last_call
            )
            settled = bool(stats.handled or stats.dead_lettered_total or handler_retried)
            if not settled and time.monotonic() > deadline:
                break
            await asyncio.sleep(_POLL_S)
    finally:
        worker.stop()
        await task  # the worker's own failure, if it had one, surfaces here
    if not settled:
        raise TimeoutError(f"the worker settled no message within {timeout_s} s")


def _outcome(source: MemoryQueue, dlq: MemoryQueue, watched: _Watched) -> HandlerOutcome:
    messages, error = tuple(watched.messages), watched.error
    dead, left = dlq.messages(), source.messages()
    if dead:
        copy = dead[0]
        reason = copy.attribute(ATTR_REASON)
        return HandlerOutcome(
            Settled.DEAD_LETTERED,
            reason=Reason(reason) if reason is not None else None,
            detail=copy.attribute(ATTR_DETAIL),
            messages=messages,
            error=error,
            dead_letter=copy,
        )
    if not left:
        return HandlerOutcome(Settled.HANDLED, messages=messages, error=error)
    delay = left[0].visibility_s
    if delay is None or delay <= 0:
        raise RuntimeError("the worker stopped without settling the message (a bug in sealq)")
    return HandlerOutcome(Settled.RETRIED, retry_in_s=delay, messages=messages, error=error)


def run_handler_sync(handler: Callable[..., object], payload: Body = b"", **options: Any) -> HandlerOutcome:
    """`run_handler` for synchronous tests (not from inside a running event loop)."""
    return asyncio.run(run_handler(handler, payload, **options))
