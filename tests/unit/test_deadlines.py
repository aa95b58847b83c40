"""Handler timeouts shared per tick (`deadlines`): as `asyncio.timeout` for the caller, but
one loop timer per tick instead of one per call."""

from __future__ import annotations

import asyncio
import time

import pytest

from sealq.worker.deadlines import MAX_TICK_S, Deadlines


async def _call(deadlines: Deadlines, seconds: float) -> float:
    """Run a call of `seconds` under `deadlines` as the pipeline does; its duration."""
    started = time.monotonic()
    timeout = asyncio.timeout(None)
    async with timeout:
        due = deadlines.watch(timeout)
        try:
            await asyncio.sleep(seconds)
        finally:
            due.discard(timeout)
    return time.monotonic() - started


async def test_a_call_past_its_deadline_gets_timeout_error_within_a_tick() -> None:
    deadlines = Deadlines(0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await _call(deadlines, 5)
    took = time.monotonic() - started
    assert 0.2 <= took < 0.2 + 0.002 + 0.1  # one tick (2 ms here) plus scheduling slack


async def test_a_call_within_its_deadline_is_untouched_and_nothing_else_is_cancelled() -> None:
    deadlines = Deadlines(0.3)
    fast, slow = await asyncio.gather(_call(deadlines, 0.01), _call(deadlines, 5), return_exceptions=True)
    assert isinstance(fast, float) and isinstance(slow, TimeoutError)
    await asyncio.sleep(0.05)  # the task itself goes on normally after a timeout
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_many_calls_share_one_timer_per_tick() -> None:
    deadlines = Deadlines(300)
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    await asyncio.gather(*(_call(deadlines, 0) for _ in range(1000)))
    assert len(deadlines) <= 2  # 1000 calls within a tick or two of MAX_TICK_S
    assert len(loop._scheduled) - before <= 2  # type: ignore[attr-defined]
    assert deadlines._tick_s == MAX_TICK_S
