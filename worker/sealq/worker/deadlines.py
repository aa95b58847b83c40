"""Handler timeouts without a loop timer per call: one timer per tick for all calls due in it.

`asyncio.timeout` schedules and cancels a timer per call (a TimerHandle, a heap push, and a
cancelled entry left in the heap until the loop sweeps it): measured, about 3% of all the
instructions a P-256 message costs through the worker (bench/per_message.py). Here each call
gets an `asyncio.Timeout` without a deadline of its own, filed under the tick its deadline
falls in; one timer per tick expires the calls still running then by rescheduling their
Timeout to now, so the stdlib still does the cancelling and raises the TimeoutError, exactly
as `asyncio.timeout` would. The price: a call times out up to one tick after its deadline
(never before), a tick being 1% of the timeout, at most MAX_TICK_S; at most ~100 ticks (the
timeout / tick) are pending at once, whatever the message rate.
"""

from __future__ import annotations

import asyncio
import math

MAX_TICK_S = 0.1


class Deadlines:
    """`watch` a Timeout entered with no deadline; `Deadlines` expires it `seconds` later."""

    __slots__ = ("_due", "_seconds", "_tick_s")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._tick_s = min(MAX_TICK_S, seconds / 100)
        self._due: dict[int, set[asyncio.Timeout]] = {}

    def __len__(self) -> int:
        """Ticks with a timer pending."""
        return len(self._due)

    def watch(self, timeout: asyncio.Timeout) -> set[asyncio.Timeout]:
        """Expire `timeout` (entered, without a deadline) once `seconds` have passed; discard
        it from the returned set when its call ends."""
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + self._seconds) / self._tick_s)
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = set()
            loop.call_at(tick * self._tick_s, self._expire, tick)
        due.add(timeout)
        return due

    def _expire(self, tick: int) -> None:
        now = asyncio.get_running_loop().time()
        for timeout in self._due.pop(tick):
            timeout.reschedule(now)  # the stdlib cancels the task and raises TimeoutError
