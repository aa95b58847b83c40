"""An in-memory stand-in for the SQS calls the worker makes, with SQS's visibility semantics.

For the benchmark (decrypt-and-dispatch throughput without network noise) and for fast
tests of the pool's outcomes. Async methods take and return what aiobotocore does.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class _Stored:
    message_id: str
    body: str
    attributes: dict[str, Any]
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str = ""


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

    def put(self, body: str, attributes: dict[str, Any] | None = None) -> str:
        message_id = f"m-{next(self._ids)}"
        self._ready.append(_Stored(message_id, body, attributes or {}))
        self._arrived.set()
        return message_id

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _expire_visibility(self, now: float) -> None:
        if not self._invisible:
            return
        back = [r for r, m in self._invisible.items() if m.visible_at <= now]
        for receipt in back:
            self._ready.append(self._invisible.pop(receipt))

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        self._count("ReceiveMessage")
        limit = int(kw.get("MaxNumberOfMessages", 1))
        deadline = time.monotonic() + float(kw.get("WaitTimeSeconds", 0))
        visibility = float(kw.get("VisibilityTimeout", 30))
        while True:
            now = time.monotonic()
            self._expire_visibility(now)
            if self._ready or now >= deadline:
                break
            self._arrived.clear()
            try:
                async with asyncio.timeout(min(deadline - now, 0.05)):
                    await self._arrived.wait()
            except TimeoutError:
                pass
        out: list[dict[str, Any]] = []
        while self._ready and len(out) < limit:
            m = self._ready.popleft()
            m.receive_count += 1
            m.visible_at = now + visibility
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
            m.visible_at = now + int(entry["VisibilityTimeout"])
            ok.append({"Id": entry["Id"]})
        self._expire_visibility(now)
        if self._ready:
            self._arrived.set()
        return {"Successful": ok, "Failed": failed}


class MemorySQS:
    """Routes calls by QueueUrl to MemoryQueues, like one SQS client serving several queues."""

    def __init__(self, *queues: MemoryQueue) -> None:
        self.queues = {q.name: q for q in queues}

    def __getitem__(self, url: str) -> MemoryQueue:
        return self.queues[url]

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        return await self.queues[kw["QueueUrl"]].receive_message(**kw)

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        return await self.queues[kw["QueueUrl"]].delete_message_batch(**kw)

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        return await self.queues[kw["QueueUrl"]].change_message_visibility_batch(**kw)

    async def send_message(self, **kw: Any) -> dict[str, Any]:
        queue = self.queues[kw["QueueUrl"]]
        return {"MessageId": queue.put(kw["MessageBody"], kw.get("MessageAttributes", {}))}
