"""Handler timeouts without a loop timer per call: one timer per tick for all calls due in it.

`asyncio.timeout` schedules and cancels a timer per call (a TimerHandle, a heap push, and a
cancelled entry left in the heap until the loop sweeps it): measured, about 3% of all the
instructions a P-256 message costs through the worker (bench/per_message.py). Here each call
is filed under the tick its deadline falls in; one timer per tick expires the calls still
running then. The price: a call times out up to one tick after its deadline (never before),
a tick being 1% of the timeout, at most MAX_TICK_S; at most ~100 ticks (the timeout / tick)
are pending at once, whatever the message rate.

`Deadline` is hand-written rather than an `asyncio.Timeout` entered without a deadline (as
before): the stdlib's is an async context manager, two coroutines and a Timeout per call,
~1% of a message's instructions (measured). It copies the stdlib's expiry and exit exactly
(cancel the task; on exit, `uncancel` and turn the CancelledError into TimeoutError only if
no other cancellation came meanwhile); tests/unit/test_deadlines.py checks it against
`asyncio.timeout` case by case.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

MAX_TICK_S = 0.1


class Deadline:
    """One call under `Deadlines`: `asyncio.Timeout`'s expiry and exit, as a plain `with`."""

    __slots__ = ("_cancelling", "_due", "_expired", "_task")

    def __init__(self, task: asyncio.Task[object], due: set[Deadline]) -> None:
        self._task = task
        self._cancelling = task.cancelling()
        self._due = due
        self._expired = False

    def __enter__(self) -> None:
        return None

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._due.discard(self)
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc  # as the stdlib: no other cancel request came meanwhile


class Deadlines:
    """`call` a deadline `seconds` from now for the running task; `Deadlines` expires it."""

    __slots__ = ("_due", "_seconds", "_tick_s")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._tick_s = min(MAX_TICK_S, seconds / 100)
        self._due: dict[int, set[Deadline]] = {}

    def __len__(self) -> int:
        """Ticks with a timer pending."""
        return len(self._due)

    def call(self) -> Deadline:
        """`with deadlines.call(): await ...`: TimeoutError once `seconds` have passed."""
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + self._seconds) / self._tick_s)
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = set()
            loop.call_at(tick * self._tick_s, self._expire, tick)
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is for code running in a task")
        deadline = Deadline(task, due)
        due.add(deadline)
        return deadline

    def _expire(self, tick: int) -> None:
        for deadline in self._due.pop(tick):
            deadline.expire()
