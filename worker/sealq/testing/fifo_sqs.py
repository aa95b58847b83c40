"""An in-memory SQS FIFO queue, keeping the FIFO rules of AWS's SQS Developer Guide that the
worker's ordering depends on, so component tests catch ordering bugs.

- Order: messages of one group are delivered in the order they were sent; one receive may
  return several consecutive messages of a group.
- Group lock: while any message of a group is in flight (received, not deleted, its
  visibility timeout not over, including a timeout a retry set), no later message of that
  group is delivered. A message made visible again goes back to the head of its group.
- Sending: MessageGroupId is required (MissingParameter); a MessageDeduplicationId, unless
  the queue has ContentBasedDeduplication (then SHA-256 of the body); a repeated id within
  five minutes is accepted but not delivered again; DelaySeconds per message is refused.
- ReceiveMessage returns MessageGroupId, MessageDeduplicationId and SequenceNumber only when
  asked for (`MessageSystemAttributeNames`), as SQS does.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

from sealq.aws.fifo import DEDUP_WINDOW_S, id_problem, is_fifo_url
from sealq.testing.sqs import QueuedMessage, long_poll

_FIFO_FIELDS = ("MessageGroupId", "MessageDeduplicationId", "SequenceNumber")


@dataclass(slots=True)
class _Message:
    message_id: str
    sequence: int
    group_id: str
    dedup_id: str
    body: str
    attributes: dict[str, Any]
    receive_count: int = 0
    invisible_until: float = 0.0
    receipt: str = ""
    visibility_s: float | None = None


class MemoryFifoQueue:
    """One FIFO queue, with MemoryQueue's interface; its name must end in `.fifo`."""

    def __init__(self, name: str = "memory.fifo", *, content_based_deduplication: bool = False) -> None:
        if not is_fifo_url(name):
            raise ValueError("a FIFO queue's name ends in .fifo")
        self.name = name
        self.content_based_deduplication = content_based_deduplication
        self._messages: dict[int, _Message] = {}  # by sequence number: dicts keep insertion order
        self._by_receipt: dict[str, _Message] = {}
        self._seen: dict[str, tuple[float, str]] = {}  # dedup id -> (until, message id)
        self._sequence = itertools.count(1)
        self._receipts = itertools.count(1)
        self._arrived = asyncio.Event()
        self.deleted = 0
        self.calls: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def put(
        self,
        body: str,
        attributes: dict[str, Any] | None = None,
        *,
        receive_count: int = 0,
        group_id: str = "g",
        dedup_id: str | None = None,
    ) -> str:
        """Enqueue as is (no SendMessage checks, no deduplication)."""
        sequence = next(self._sequence)
        message_id = f"f-{sequence}"
        self._messages[sequence] = _Message(
            message_id, sequence, group_id, dedup_id or message_id, body, attributes or {}, receive_count
        )
        self._arrived.set()
        return message_id

    def accept(self, entry: dict[str, Any]) -> tuple[str | None, str]:
        """SendMessage(Batch)'s FIFO rules: (error code, message), or (None, MessageId)."""
        group = entry.get("MessageGroupId")
        if not group:
            return "MissingParameter", "The request must contain the parameter MessageGroupId."
        if "DelaySeconds" in entry:
            return "InvalidParameterValue", "DelaySeconds per message is not valid for a FIFO queue"
        dedup = entry.get("MessageDeduplicationId")
        if dedup is None:
            if not self.content_based_deduplication:
                return "InvalidParameterValue", (
                    "The queue should either have ContentBasedDeduplication enabled or "
                    "MessageDeduplicationId provided explicitly"
                )
            dedup = hashlib.sha256(entry["MessageBody"].encode()).hexdigest()
        for name, value in (("MessageGroupId", group), ("MessageDeduplicationId", dedup)):
            if (problem := id_problem(name, value)) is not None:
                return "InvalidParameterValue", problem
        now = time.monotonic()
        seen = self._seen.get(dedup)
        if seen is not None and seen[0] > now:
            return None, seen[1]  # accepted, not delivered again
        body, attributes = entry["MessageBody"], entry.get("MessageAttributes")
        message_id = self.put(body, attributes, group_id=group, dedup_id=dedup)
        self._seen[dedup] = (now + DEDUP_WINDOW_S, message_id)
        return None, message_id

    def messages(self) -> list[QueuedMessage]:
        """Every message still in the queue, in send order."""
        now = time.monotonic()
        return [
            QueuedMessage(
                m.message_id,
                m.body,
                dict(m.attributes),
                m.receive_count,
                m.invisible_until <= now,
                m.visibility_s,
                m.group_id,
            )
            for m in self._messages.values()
        ]

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _available(self, now: float, limit: int) -> list[_Message]:
        """Up to `limit` messages: the oldest of each unlocked group and those right behind it."""
        locked: set[str] = set()
        taken: list[_Message] = []
        for m in self._messages.values():
            if len(taken) >= limit:
                break
            if m.group_id in locked:
                continue
            if m.invisible_until > now:  # in flight: the rest of its group waits
                locked.add(m.group_id)
                continue
            taken.append(m)
        return taken

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        self._count("ReceiveMessage")
        limit = int(kw.get("MaxNumberOfMessages", 1))
        deadline = time.monotonic() + float(kw.get("WaitTimeSeconds", 0))
        visibility = float(kw.get("VisibilityTimeout", 30))
        wanted = set(kw.get("MessageSystemAttributeNames") or kw.get("AttributeNames") or ())
        now, taken = await long_poll(self._arrived, deadline, lambda at: self._available(at, limit))
        out: list[dict[str, Any]] = []
        for m in taken:
            self._by_receipt.pop(m.receipt, None)
            m.receive_count += 1
            m.invisible_until = now + visibility
            m.visibility_s = None
            m.receipt = f"fr-{next(self._receipts)}"
            self._by_receipt[m.receipt] = m
            attributes = {"ApproximateReceiveCount": str(m.receive_count)}
            system = {"MessageGroupId": m.group_id, "MessageDeduplicationId": m.dedup_id}
            system["SequenceNumber"] = str(m.sequence)
            attributes.update((k, v) for k, v in system.items() if "All" in wanted or k in wanted)
            out.append(
                {
                    "MessageId": m.message_id,
                    "ReceiptHandle": m.receipt,
                    "Body": m.body,
                    "MessageAttributes": m.attributes,
                    "Attributes": attributes,
                }
            )
        return {"Messages": out} if out else {}

    def _held(self, receipt: str, now: float) -> _Message | None:
        """The message a receipt handle still holds (its visibility timeout not over)."""
        m = self._by_receipt.get(receipt)
        if m is None or m.invisible_until <= now:
            return None
        return m

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        self._count("DeleteMessageBatch")
        now = time.monotonic()
        ok, failed = [], []
        for entry in kw["Entries"]:
            m = self._held(entry["ReceiptHandle"], now)
            if m is None:
                failed.append({"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True})
                continue
            del self._messages[m.sequence]
            del self._by_receipt[m.receipt]
            self.deleted += 1
            ok.append({"Id": entry["Id"]})
        self._arrived.set()
        return {"Successful": ok, "Failed": failed}

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self._count("ChangeMessageVisibilityBatch")
        now = time.monotonic()
        ok, failed = [], []
        for entry in kw["Entries"]:
            m = self._held(entry["ReceiptHandle"], now)
            if m is None:
                failed.append({"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True})
                continue
            m.visibility_s = int(entry["VisibilityTimeout"])
            m.invisible_until = now + m.visibility_s
            ok.append({"Id": entry["Id"]})
        self._arrived.set()
        return {"Successful": ok, "Failed": failed}
