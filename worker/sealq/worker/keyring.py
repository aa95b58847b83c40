"""The keys a running worker knows: the keyset index, kept current, and the unwrapped keys.

The keyset is re-read on an interval, and (rate-limited, single-flight) when a message names
a kid we do not know, so a key `keys rotate` adds is used at once and one `keys expire` ends
stops decrypting within the interval, without a restart. Unwrapped private keys live in
`keycache.KeyCache` (one KMS Decrypt per kid) and are dropped when the keyset ends them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sealq.envelope.jwe import OpeningKey
from sealq.keys.store import KeysetError, KeysetStore
from sealq.worker.classify import KeyEntry, KeyIndex
from sealq.worker.keycache import KeyCache
from sealq.worker.logs import event

log = logging.getLogger("sealq.worker")


class Keyring:
    """The current keyset index and the unwrapped keys, with the re-read rules above."""

    def __init__(
        self,
        store: KeysetStore,
        cache: KeyCache,
        *,
        clock: Callable[[], float],
        key_grace_s: float,
        refresh_s: float,
        unknown_kid_refresh_min_s: float,
    ) -> None:
        self.cache = cache
        self.index: KeyIndex | None = None  # None until the first read succeeded
        self._store = store
        self._clock = clock
        self._grace_s = key_grace_s
        self._refresh_s = refresh_s
        self._unknown_min_s = unknown_kid_refresh_min_s
        self._last_read = 0.0  # monotonic start of the last attempt, failed ones too
        self._fresh_since = float("-inf")  # monotonic start of the last successful read
        self._reading: asyncio.Task[None] | None = None  # the re-read under way or waiting its turn

    def knows(self, kid: str) -> bool:
        return self.index is not None and self.index.get(kid) is not None

    async def load(self) -> None:
        """Read the keyset; evict cached keys it no longer has or has ended. Raises KeysetError."""
        started = time.monotonic()
        self._last_read = started  # attempts, failed ones too, count for the rate limit
        index = KeyIndex(await asyncio.to_thread(self._store.load))
        self._fresh_since = started  # a successful read that began at this moment
        if self.index is not None:
            for kid in self.cache.kids():
                entry = index.get(kid)
                if entry is None or entry.shredded:
                    self.cache.evict(kid)
                    event(log, logging.INFO, "key evicted", kid=kid, why="expired in keyset")
        added = index.kids() - (self.index.kids() if self.index is not None else frozenset())
        self.index = index
        if added:
            event(log, logging.INFO, "keyset loaded", keys=len(index), new=sorted(added))

    async def refresh(self) -> None:
        """Single-flight re-read, now (or join the one under way); a failure keeps the keys we have."""
        await self._join(self._read)

    def fresh_for(self, received_at: float) -> bool:
        """Whether a keyset read that *began after* `received_at` has succeeded. A message can
        only name a key that was in the keyset before it was sent, so such a read would have
        seen it: only then is a kid unknown."""
        return self._fresh_since >= received_at

    async def read_since(self, received_at: float) -> bool:
        """`fresh_for(received_at)`, waiting in process for the next re-read the rate limit
        allows (single-flight: every waiter shares it) rather than sending the message back
        to SQS to try its luck again: under a flood of unknown kids every one of them is
        labelled by the next read. False only if that read, begun after `received_at`, failed.
        Waiters are messages already received, so their number is bounded by `max_in_flight`."""
        while not self.fresh_for(received_at):
            if self._reading is None and self._last_read >= received_at:
                return False  # the read that would have told failed
            await self._join(self._read_when_allowed)
        return True

    def next_read_in_s(self) -> float:
        """How long until the rate limit allows another unknown-kid re-read."""
        return self._unknown_min_s - (time.monotonic() - self._last_read)

    async def close(self) -> None:
        """Shutdown: stop a re-read that is still waiting for its turn."""
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
            self._reading = None

    async def _join(self, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._reading is None:
            self._reading = asyncio.create_task(start())
        task = self._reading
        try:
            await asyncio.shield(task)
        finally:
            if self._reading is task and task.done():
                self._reading = None

    async def _read_when_allowed(self) -> None:
        wait_s = self.next_read_in_s()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        await self._read()

    async def _read(self) -> None:
        try:
            await self.load()
        except KeysetError as exc:  # logged once here, not once per waiting message
            event(log, logging.WARNING, "keyset refresh failed", error=str(exc))

    async def key(self, entry: KeyEntry) -> OpeningKey:
        """The unwrapped key (single-flight KMS Decrypt). Raises KeyUnavailable or KeyRefused."""
        return await self.cache.get(entry)

    async def housekeeping(self) -> None:
        """Forever: drop keys past expiry + grace, and re-read the keyset when it is due."""
        while True:
            await asyncio.sleep(min(5.0, self._refresh_s))
            for kid in self.cache.evict_expired(self._clock(), self._grace_s):
                event(log, logging.INFO, "key evicted", kid=kid, why="expired")
            if time.monotonic() - self._last_read >= self._refresh_s:
                await self.refresh()
