"""Handler timeouts shared per tick (`deadlines`): as `asyncio.timeout` for the caller, but
one loop timer per tick instead of one per call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sealq.worker.deadlines import MAX_TICK_S, Deadlines


async def _call(deadlines: Deadlines, seconds: float) -> float:
    """Run a call of `seconds` under `deadlines` as the pipeline does; its duration."""
    started = time.monotonic()
    with deadlines.call():
        await asyncio.sleep(seconds)
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


# ----- the same as asyncio.timeout, case by case -----------------------------------------


def _stdlib(seconds: float) -> Any:
    return asyncio.timeout(seconds)


def _ours(seconds: float) -> Any:
    return _Sync(Deadlines(seconds).call())


class _Sync:
    """`Deadline` behind `async with`, so one body runs under either."""

    def __init__(self, deadline: Any) -> None:
        self._deadline = deadline

    async def __aenter__(self) -> None:
        self._deadline.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self._deadline.__exit__(*exc)


async def _past_deadline() -> None:
    await asyncio.sleep(5)


async def _own_timeout_inside() -> None:
    async with asyncio.timeout(0.01):
        await asyncio.sleep(5)


async def _swallows_the_cancel() -> str:
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        return "swallowed"
    return "slept"


async def _raises_cancelled_itself() -> None:
    raise asyncio.CancelledError


async def _in_time() -> str:
    await asyncio.sleep(0)
    return "done"


async def _run(make: Any, body: Any, seconds: float, cancel_after: float | None) -> tuple[str, int]:
    """What `body` under `make(seconds)` ends as, and the task's cancelling() after."""

    async def task() -> tuple[str, int]:
        me = asyncio.current_task()
        assert me is not None
        try:
            async with make(seconds):
                result = await body()
        except BaseException as exc:  # the outcome is what is compared
            return type(exc).__name__, me.cancelling()
        return f"returned {result}", me.cancelling()

    running = asyncio.create_task(task())
    if cancel_after is not None:
        await asyncio.sleep(cancel_after)
        running.cancel()
    try:
        return await running
    except asyncio.CancelledError:
        return "task cancelled", -1


CASES = [
    (_past_deadline, 0.05, None),  # TimeoutError, task not left cancelling
    (_own_timeout_inside, 1.0, None),  # the handler's own TimeoutError, ours untouched
    (_swallows_the_cancel, 0.05, None),  # swallowed: returns, no TimeoutError
    (_raises_cancelled_itself, 1.0, None),  # CancelledError out, not a TimeoutError
    (_in_time, 1.0, None),
    (_past_deadline, 5.0, 0.02),  # cancelled from outside: CancelledError, never TimeoutError
    (_own_timeout_inside, 5.0, 0.005),
]


@pytest.mark.parametrize(("body", "seconds", "cancel_after"), CASES)
async def test_deadline_ends_each_case_as_asyncio_timeout_does(
    body: Any, seconds: float, cancel_after: float | None
) -> None:
    assert await _run(_ours, body, seconds, cancel_after) == await _run(_stdlib, body, seconds, cancel_after)
