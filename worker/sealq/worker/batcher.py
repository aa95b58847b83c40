"""Batched SQS calls (DeleteMessageBatch, ChangeMessageVisibilityBatch) with per-entry results.

Entries are sent in groups of at most ten, at most `flush_s` after the first one waits.
Entries SQS fails through no fault of ours, and whole calls that fail, are retried with
backoff; each submitter learns through its callback whether its entry finally succeeded, so
an ack is never silently lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sealq.aws.errors import error_code

log = logging.getLogger("sealq.worker")

Done = Callable[[bool], None]
Call = Callable[[list[dict[str, Any]]], Awaitable[Mapping[str, Any]]]

MAX_ENTRIES = 10
SQS_ERRORS = (TimeoutError, ClientError, BotoCoreError, OSError)
"""What a failed SQS call raises: worth retrying, never a reason to drop a message."""


class Batcher:
    def __init__(self, name: str, call: Call, *, flush_s: float = 0.02, retries: int = 4) -> None:
        self.name = name
        self._call = call
        self._flush_s = flush_s
        self._retries = retries
        self._waiting: list[tuple[dict[str, Any], Done, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.failed_entries = 0

    def submit(self, entry: dict[str, Any], done: Done, attempt: int = 0) -> None:
        """Queue one entry (its `Id` is assigned here); `done(ok)` is called exactly once."""
        self._waiting.append((entry, done, attempt))
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

    async def _send(self, batch: list[tuple[dict[str, Any], Done, int]]) -> None:
        entries = [{**entry, "Id": str(i)} for i, (entry, _, _) in enumerate(batch)]
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
        retry: list[tuple[dict[str, Any], Done, int]] = []
        failed = {item["Id"]: item for item in response.get("Failed", [])}
        for i, (entry, done, attempt) in enumerate(batch):
            sid = str(i)
            if sid in ok_ids:
                done(True)
            elif sid in failed and failed[sid].get("SenderFault", False):
                self.failed_entries += 1
                log.warning("%s entry refused: %s", self.name, failed[sid].get("Code", "error"))
                done(False)
            else:
                retry.append((entry, done, attempt))
        if retry:
            await self._retry(retry)

    async def _retry(self, batch: list[tuple[dict[str, Any], Done, int]]) -> None:
        again = [(e, d, a + 1) for e, d, a in batch if a < self._retries]
        for _, done, attempt in batch:
            if attempt >= self._retries:
                self.failed_entries += 1
                done(False)
        if again:
            await asyncio.sleep(min(0.1 * 2 ** again[0][2], 2.0))
            for entry, done, attempt in again:
                self.submit(entry, done, attempt)

    async def close(self) -> None:
        """Send everything queued and wait for every outstanding call (and its retries)."""
        while self._waiting or self._tasks:
            self._flush()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
