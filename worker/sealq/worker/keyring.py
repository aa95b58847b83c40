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
from collections.abc import Callable

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
        self._reading: asyncio.Task[None] | None = None

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
        """Single-flight re-read; a failure keeps the keys we have."""
        if self._reading is None:
            self._reading = asyncio.create_task(self.load())
        task = self._reading
        try:
            await asyncio.shield(task)
        except KeysetError as exc:
            event(log, logging.WARNING, "keyset refresh failed", error=str(exc))
        finally:
            if self._reading is task and task.done():
                self._reading = None

    async def read_since(self, received_at: float) -> bool:
        """Whether a keyset read that *began after* `received_at` has succeeded, re-reading
        first if the rate limit allows. A message can only name a key that was in the keyset
        before it was sent, so such a read would have seen it: only then is a kid unknown."""
        if self._fresh_since >= received_at:
            return True
        if self._reading is not None or time.monotonic() - self._last_read >= self._unknown_min_s:
            await self.refresh()
        return self._fresh_since >= received_at

    def next_read_in_s(self) -> float:
        """How long until the rate limit allows another unknown-kid re-read."""
        return self._unknown_min_s - (time.monotonic() - self._last_read)

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
