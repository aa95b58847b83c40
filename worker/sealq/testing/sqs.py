"""An in-memory SQS for the calls the worker makes, keeping the SQS rules it depends on.

For fast tests of outcomes and for the benchmark (decrypt-and-dispatch throughput without
network noise). Async methods take and return what aiobotocore does. Rules kept: long polls
wait for a message or the deadline; a received message is invisible for its visibility
timeout and comes back (receive count + 1) unless deleted; a receipt handle works only
while its message is still invisible under that receive; SendMessage and SendMessageBatch
refuse what SQS refuses (an empty body, more than ten attributes, an empty value, a name SQS
reserves or cannot take, body plus attributes over 1 MiB counted in UTF-8 bytes; a batch over
ten entries or 1 MiB in all).
A standard queue refuses a MessageDeduplicationId (FIFO only) and keeps a MessageGroupId (a
fair queue's tenant, no ordering). FIFO queues: `sealq.testing.fifo_sqs.MemoryFifoQueue`.
Not kept: message retention, redrive policies, a network (`MemorySQS.delay_s` adds a round
trip's latency to every call, for tests and benchmarks of latency hiding).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from sealq.aws.limits import (
    SQS_MAX_ATTRIBUTES,
    SQS_MAX_BATCH_BYTES,
    SQS_MAX_BATCH_ENTRIES,
    SQS_MAX_MESSAGE_BYTES,
    message_size,
)

if TYPE_CHECKING:
    from sealq.testing.fifo_sqs import MemoryFifoQueue


T = TypeVar("T")

@dataclass(slots=True)
class _Stored:
    message_id: str
    body: str
    attributes: dict[str, Any]
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str = ""
    visibility_s: float | None = None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A snapshot of one message in a MemoryQueue, for tests to assert on."""

    message_id: str
    body: str
    attributes: dict[str, Any]
    receive_count: int
    visible: bool
    visibility_s: float | None
    """The timeout ChangeMessageVisibility last set since it was received (None: not set),
    e.g. a worker's retry delay, or 0 for a message handed back at shutdown."""
    group_id: str | None = None
    """Its MessageGroupId on a FIFO queue."""

    def attribute(self, name: str) -> str | None:
        """A String attribute's value, e.g. `attribute("sealq-reason")` on a DLQ copy."""
        value = self.attributes.get(name)
        return None if value is None else value.get("StringValue")


class MemoryQueue:
    """One queue. `receive_message` honours long polling and visibility timeouts."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._ready: deque[_Stored] = deque()
        self._invisible: dict[str, _Stored] = {}
        self._ids = itertools.count(1)
        self._receipts = itertools.count(1)
        self._arrived = asyncio.Event()
        self.deleted = 0
        self.calls: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ready) + len(self._invisible)

    def accept(self, entry: dict[str, Any]) -> tuple[str | None, str]:
        """SendMessage(Batch)'s per-message rules for this kind of queue, after `send_problem`:
        (error code, message) if SQS would refuse the entry, else (None, its MessageId)."""
        if "MessageDeduplicationId" in entry:
            return (
                "InvalidParameterValue",
                "The request include parameter that is not valid for this queue type.",
            )
        return None, self.put(entry["MessageBody"], entry.get("MessageAttributes"))

    def put(self, body: str, attributes: dict[str, Any] | None = None, *, receive_count: int = 0) -> str:
        """Enqueue as is (no SendMessage checks); `receive_count` = deliveries so far."""
        message_id = f"m-{next(self._ids)}"
        self._ready.append(_Stored(message_id, body, attributes or {}, receive_count))
        self._arrived.set()
        return message_id

    def messages(self) -> list[QueuedMessage]:
        """Every message still in the queue, visible ones first."""
        now = time.monotonic()
        self._expire_visibility(now)
        return [
            QueuedMessage(
                m.message_id,
                m.body,
                dict(m.attributes),
                m.receive_count,
                visible,
                m.visibility_s,
            )
            for visible, stored in ((True, list(self._ready)), (False, list(self._invisible.values())))
            for m in stored
        ]

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _expire_visibility(self, now: float) -> None:
        if not self._invisible:
            return
        back = [r for r, m in self._invisible.items() if m.visible_at <= now]
        for receipt in back:
            self._ready.append(self._invisible.pop(receipt))

    def _any_visible(self, now: float) -> bool:
        self._expire_visibility(now)
        return bool(self._ready)

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        self._count("ReceiveMessage")
        limit = int(kw.get("MaxNumberOfMessages", 1))
        deadline = time.monotonic() + float(kw.get("WaitTimeSeconds", 0))
        visibility = float(kw.get("VisibilityTimeout", 30))
        now, _ = await long_poll(self._arrived, deadline, self._any_visible)
        out: list[dict[str, Any]] = []
        while self._ready and len(out) < limit:
            m = self._ready.popleft()
            m.receive_count += 1
            m.visible_at = now + visibility
            m.visibility_s = None
            m.receipt = f"r-{next(self._receipts)}"
            self._invisible[m.receipt] = m
            out.append(
                {
                    "MessageId": m.message_id,
                    "ReceiptHandle": m.receipt,
                    "Body": m.body,
                    "MessageAttributes": m.attributes,
                    "Attributes": {"ApproximateReceiveCount": str(m.receive_count)},
                }
            )
        return {"Messages": out} if out else {}

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        self._count("DeleteMessageBatch")
        ok, failed = [], []
        for entry in kw["Entries"]:
            if self._invisible.pop(entry["ReceiptHandle"], None) is not None:
                self.deleted += 1
                ok.append({"Id": entry["Id"]})
            else:
                failed.append({"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True})
        return {"Successful": ok, "Failed": failed}

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self._count("ChangeMessageVisibilityBatch")
        now = time.monotonic()
        ok, failed = [], []
        for entry in kw["Entries"]:
            m = self._invisible.get(entry["ReceiptHandle"])
            if m is None:
                failed.append({"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True})
                continue
            m.visibility_s = int(entry["VisibilityTimeout"])
            m.visible_at = now + m.visibility_s
            ok.append({"Id": entry["Id"]})
        self._expire_visibility(now)
        if self._ready:
            self._arrived.set()
        return {"Successful": ok, "Failed": failed}


class MemorySQS:
    """Routes calls by QueueUrl to MemoryQueues (or MemoryFifoQueues), like one SQS client
    serving several queues.

    `delay_s` (default 0) is added to every call before SQS acts on it, like a network
    round trip: 0.02 makes it behave as an SQS 20 ms away."""

    def __init__(self, *queues: MemoryQueue | MemoryFifoQueue, delay_s: float = 0.0) -> None:
        self.queues = {q.name: q for q in queues}
        self.delay_s = delay_s

    def __getitem__(self, url: str) -> MemoryQueue | MemoryFifoQueue:
        return self.queues[url]

    async def _trip(self) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        await self._trip()
        return await self.queues[kw["QueueUrl"]].receive_message(**kw)

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        await self._trip()
        return await self.queues[kw["QueueUrl"]].delete_message_batch(**kw)

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        await self._trip()
        return await self.queues[kw["QueueUrl"]].change_message_visibility_batch(**kw)

    async def send_message(self, **kw: Any) -> dict[str, Any]:
        await self._trip()
        queue = self.queues[kw["QueueUrl"]]
        body, attributes = kw["MessageBody"], kw.get("MessageAttributes") or {}
        problem = send_problem(body, attributes)
        if problem is not None:
            raise _refused("InvalidParameterValue", problem, "SendMessage")
        code, said = queue.accept(kw)
        if code is not None:
            raise _refused(code, said, "SendMessage")
        return {"MessageId": said}

    async def send_message_batch(self, **kw: Any) -> dict[str, Any]:
        await self._trip()
        queue = self.queues[kw["QueueUrl"]]
        entries = kw["Entries"]
        if not entries:
            raise _refused("EmptyBatchRequest", "There should be at least one entry", "SendMessageBatch")
        if len(entries) > SQS_MAX_BATCH_ENTRIES:
            raise _refused("TooManyEntriesInBatchRequest", "At most 10 entries", "SendMessageBatch")
        total = sum(message_size(e["MessageBody"], e.get("MessageAttributes")) for e in entries)
        if total > SQS_MAX_BATCH_BYTES:
            raise _refused(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {SQS_MAX_BATCH_BYTES} bytes",
                "SendMessageBatch",
            )
        ok, failed = [], []
        for entry in entries:
            attributes = entry.get("MessageAttributes") or {}
            problem = send_problem(entry["MessageBody"], attributes)
            code, said = ("InvalidParameterValue", problem) if problem is not None else queue.accept(entry)
            if code is None:
                ok.append({"Id": entry["Id"], "MessageId": said})
            else:
                failed.append({"Id": entry["Id"], "Code": code, "Message": said, "SenderFault": True})
        return {"Successful": ok, "Failed": failed}


_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_RESERVED = ("aws.", "amazon.")


async def long_poll(arrived: asyncio.Event, deadline: float, ready: Callable[[float], T]) -> tuple[float, T]:
    """ReceiveMessage's WaitTimeSeconds: until `ready(now)` finds something or `deadline`
    passes, waking when a message arrives (or visibility may have run out, every 50 ms)."""
    while True:
        now = time.monotonic()
        found = ready(now)
        if found or now >= deadline:
            return now, found
        arrived.clear()
        try:
            async with asyncio.timeout(min(deadline - now, 0.05)):
                await arrived.wait()
        except TimeoutError:
            pass


def send_problem(body: str, attributes: dict[str, Any]) -> str | None:
    """Why SQS would refuse (InvalidParameterValue) this message, or None if it takes it."""
    if not body:
        return "The request must contain the parameter MessageBody"
    if len(attributes) > SQS_MAX_ATTRIBUTES:
        return f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum"
    for name, value in attributes.items():
        if name.lower().startswith(_RESERVED):
            return f"Message attribute name {name!r} is reserved for use by SQS"
        if _NAME.fullmatch(name) is None or name.startswith(".") or name.endswith(".") or ".." in name:
            return f"Message attribute name {name!r} is invalid"
        if not str(value.get("DataType", "")).startswith(("String", "Number", "Binary")):
            return f"Message attribute {name!r} has no valid DataType"
        if value.get("StringValue", value.get("BinaryValue")) in (None, "", b""):
            return f"Message attribute {name!r} must contain a non-empty value"
    if message_size(body, attributes) > SQS_MAX_MESSAGE_BYTES:
        return f"Message must be shorter than {SQS_MAX_MESSAGE_BYTES} bytes"
    return None


def _refused(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)
