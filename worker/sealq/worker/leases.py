"""Received messages we hold a lease on: the in-flight registry and the visibility heartbeat.

A message is in flight from receipt until SQS has answered for its outcome (deleted, or
made visible again). While its handler runs, the heartbeat extends its visibility before it
lapses, so no other consumer receives it meanwhile; never past SQS's 12 h from receipt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sealq.aws.payloads import S3Pointer
from sealq.envelope.attributes import SEALQ_ATTRIBUTES
from sealq.worker.settings import MAX_VISIBILITY_S

CAP_MARGIN_S = 60
"""Stop extending this long before the 12 h cap: SQS refuses an extension past it."""


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
    visible_until: float  # as far as SQS has confirmed (receipt, or a granted extension)
    group_id: str | None = None  # MessageGroupId (FIFO queues; received only when asked for)
    settling: bool = False  # an outcome (delete or visibility change) has been submitted
    finished: bool = False  # SQS answered for the outcome; the buffer slot is free again
    extending: bool = False  # a heartbeat extension is waiting for SQS's answer
    payload: S3Pointer | None = None  # sent through S3: its object, deleted once handled


def in_flight(raw: dict[str, Any], now: float, visibility_timeout_s: int) -> InFlight:
    """An InFlight from one entry of a ReceiveMessage response, received at `now` (monotonic)."""
    raw_attrs = raw.get("MessageAttributes") or {}
    system = raw.get("Attributes") or {}
    return InFlight(
        message_id=raw["MessageId"],
        receipt=raw["ReceiptHandle"],
        body=raw.get("Body", ""),
        # What a handler sees: sealq's own DLQ labels (left on a message an SQS move task
        # brought back) are dropped in the same pass, so it costs no copy of its own.
        attributes={
            k: v["StringValue"]
            for k, v in raw_attrs.items()
            if "StringValue" in v and k not in SEALQ_ATTRIBUTES
        },
        raw_attributes=raw_attrs,
        receive_count=int(system.get("ApproximateReceiveCount", "1")),
        received_at=now,
        visible_until=now + visibility_timeout_s,
        group_id=system.get("MessageGroupId"),
    )


class Leases:
    """Every message received and not yet finished, by receipt handle."""

    def __init__(self, on_finish: Callable[[], None]) -> None:
        self._items: dict[str, InFlight] = {}
        self._on_finish = on_finish

    def __len__(self) -> int:
        return len(self._items)

    def add(self, batch: list[InFlight]) -> None:
        for item in batch:
            self._items[item.receipt] = item

    def finish(self, item: InFlight) -> None:
        """SQS answered for this message's outcome (whatever the answer): forget it, once."""
        if not item.finished:
            item.finished = True
            self._items.pop(item.receipt, None)
            self._on_finish()

    def due(self, now: float, every_s: float, visibility_timeout_s: int) -> list[tuple[InFlight, int]]:
        """The messages whose visibility would lapse before the next beat, each with the
        extension to ask for, capped by the 12 h limit; marks them `extending`. Their
        `visible_until` moves only once SQS grants it (`extended`): the batcher retries a
        receipt only while the visibility SQS really gave it lasts."""
        out: list[tuple[InFlight, int]] = []
        for item in self._items.values():
            if item.settling or item.extending or item.visible_until - now > every_s * 1.5:
                continue
            left = MAX_VISIBILITY_S - (now - item.received_at) - CAP_MARGIN_S
            extend = int(min(visibility_timeout_s, left))
            if extend <= 0:
                continue
            item.extending = True
            out.append((item, extend))
        return out

    async def heartbeat(
        self, every_s: float, visibility_timeout_s: int, extend: Callable[[InFlight, int], None]
    ) -> None:
        """Forever: every `every_s`, `extend` what is `due`."""
        while True:
            await asyncio.sleep(every_s)
            for item, seconds in self.due(time.monotonic(), every_s, visibility_timeout_s):
                extend(item, seconds)


def extended(item: InFlight, asked_at: float, seconds: int, ok: bool) -> None:
    """SQS's answer to a heartbeat extension asked for at `asked_at` (monotonic): granted,
    the message is invisible until at least `seconds` from then; refused, nothing moves."""
    item.extending = False
    if ok:
        item.visible_until = max(item.visible_until, asked_at + seconds)


class HandBacks:
    """Shutdown's hand-backs (visibility 0), held while a poll of this process could still
    receive them: an open long poll would take a released message at once, release it again
    and so on, each time one more receive count for no handler call. The worker calls
    `let_go` once its pollers are done; from then on a hand-back goes to SQS at once."""

    def __init__(self, release: Callable[[InFlight], None], stopping: asyncio.Event) -> None:
        self._release = release
        self._stopping = stopping
        self._held: list[InFlight] | None = []  # None: let go

    def __call__(self, item: InFlight) -> None:
        if self._held is not None and self._stopping.is_set():
            self._held.append(item)  # still in the leases: the heartbeat keeps it invisible
        else:
            self._release(item)

    def let_go(self) -> None:
        held, self._held = self._held or [], None
        for item in held:
            self._release(item)
