"""Batched SQS calls (DeleteMessageBatch, ChangeMessageVisibilityBatch) with per-entry results.

Entries are sent in groups of at most ten, at most `flush_s` after the first one waits.
Entries SQS fails through no fault of ours, and whole calls that fail, are retried with
backoff until the entry's deadline: the time its receipt stops being worth using (the
settler passes the message's `visible_until`), so an outage shorter than the visibility
timeout costs no redelivery. Each submitter learns through its callback whether its entry
finally succeeded, so an ack is never silently lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sealq.aws.errors import error_code

log = logging.getLogger("sealq.worker")

Done = Callable[[bool], None]
Call = Callable[[list[dict[str, Any]]], Awaitable[Mapping[str, Any]]]
Waiting = tuple[dict[str, Any], Done, int, float]
"""entry, callback, attempts so far, deadline (monotonic)"""

MAX_ENTRIES = 10
_IDS = tuple(str(i) for i in range(MAX_ENTRIES))
"""Entry ids by position in a call, made once rather than per entry per call."""
SQS_ERRORS = (TimeoutError, ClientError, BotoCoreError, OSError)
"""What a failed SQS call raises: worth retrying, never a reason to drop a message."""
RETRY_BASE_S = 0.1
RETRY_MAX_S = 2.0
"""Backoff between attempts: 0.1 s doubling to 2 s, so a healed SQS is noticed within 2 s."""
RECEIPT_MARGIN_S = 0.5
"""Stop this long before the deadline: SQS may hand the message out again right at it."""
DEFAULT_DEADLINE_S = 5.0
"""For an entry submitted without a deadline."""
CLOSE_LIMIT_S = 5.0
"""Once closing (shutdown), no entry is retried past this from the close: shutdown is bounded;
what is given up is a duplicate delivery later, never a loss."""


def retry_delay(attempt: int, now: float, deadline: float) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None once the receipt may no longer be
    valid: backoff doubles from RETRY_BASE_S to RETRY_MAX_S, and the last attempt is made
    RECEIPT_MARGIN_S before the deadline rather than not at all."""
    latest = deadline - RECEIPT_MARGIN_S
    if now >= latest:
        return None
    backoff: float = RETRY_BASE_S * 2 ** min(attempt, 16)
    return min(backoff, RETRY_MAX_S, latest - now)


class Batcher:
    def __init__(
        self,
        name: str,
        call: Call,
        *,
        flush_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._call = call
        self._flush_s = flush_s
        self._clock = clock
        self._waiting: list[Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._close_by: float | None = None
        self.failed_entries = 0

    def submit(self, entry: dict[str, Any], done: Done, deadline: float | None = None) -> None:
        """Queue one entry (its `Id` is assigned here), retried until `deadline` (monotonic
        seconds; default DEFAULT_DEADLINE_S from now); `done(ok)` is called exactly once."""
        if deadline is None:
            deadline = self._clock() + DEFAULT_DEADLINE_S
        self._queue((entry, done, 0, deadline))

    def _queue(self, waiting: Waiting) -> None:
        self._waiting.append(waiting)
        if len(self._waiting) >= MAX_ENTRIES:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_ENTRIES], self._waiting[MAX_ENTRIES:]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Waiting]) -> None:
        entries = [{**waiting[0], "Id": sid} for sid, waiting in zip(_IDS, batch, strict=False)]
        try:
            response = await self._call(entries)
        except SQS_ERRORS as exc:
            log.warning(
                "%s call failed (%s); retrying its %d entries",
                self.name,
                error_code(exc),
                len(batch),
            )
            await self._retry(batch)
            return
        ok_ids = {item["Id"] for item in response.get("Successful", [])}
        retry: list[Waiting] = []
        failed = {item["Id"]: item for item in response.get("Failed", [])}
        for sid, waiting in zip(_IDS, batch, strict=False):  # batches hold at most ten
            if sid in ok_ids:
                waiting[1](True)
            elif sid in failed and failed[sid].get("SenderFault", False):
                self.failed_entries += 1
                log.warning("%s entry refused: %s", self.name, failed[sid].get("Code", "error"))
                waiting[1](False)
            else:
                retry.append(waiting)
        if retry:
            await self._retry(retry)

    async def _retry(self, batch: list[Waiting]) -> None:
        """Re-queue each entry after its backoff while its receipt can still be valid."""
        now = self._clock()
        later: list[tuple[float, Waiting]] = []
        for entry, done, attempt, deadline in batch:
            if self._close_by is not None:
                deadline = min(deadline, self._close_by)
            delay = retry_delay(attempt, now, deadline)
            if delay is None:
                self.failed_entries += 1
                done(False)
            else:
                later.append((delay, (entry, done, attempt + 1, deadline)))
        if later:
            await asyncio.sleep(min(delay for delay, _ in later))
            for _, waiting in later:
                self._queue(waiting)

    async def close(self) -> None:
        """Send everything queued and wait for every outstanding call and its retries (each
        entry retried at most CLOSE_LIMIT_S more from here)."""
        self._close_by = self._clock() + CLOSE_LIMIT_S + RECEIPT_MARGIN_S
        while self._waiting or self._tasks:
            self._flush()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
