"""`pipeline._all`, run_batch's replacement for gather: every message runs to its outcome
and the first error (in order) is raised after; cancelled, it cancels and waits for all."""

from __future__ import annotations

import asyncio

import pytest

from sealq.worker.pipeline import _all


async def test_waits_for_all_then_raises_the_first_error_in_order() -> None:
    finished: list[int] = []

    async def step(i: int) -> None:
        await asyncio.sleep(0.01 * (3 - i))
        finished.append(i)
        if i in (1, 2):
            raise ValueError(str(i))

    tasks = [asyncio.create_task(step(i)) for i in range(4)]
    with pytest.raises(ValueError, match="1"):
        await _all(tasks)
    assert sorted(finished) == [0, 1, 2, 3]


async def test_a_step_cancelled_on_its_own_is_an_error_not_our_cancellation() -> None:
    async def step() -> None:
        raise asyncio.CancelledError  # e.g. a handler's inner task, cancelled

    async def fine() -> None:
        await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(step()), asyncio.create_task(fine())]
    with pytest.raises(asyncio.CancelledError):
        await _all(tasks)
    assert tasks[1].done() and not tasks[1].cancelled()
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_cancelled_it_cancels_every_step_and_waits_for_them() -> None:
    cleaned: list[int] = []

    async def step(i: int) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.01)  # cleanup that takes a moment
            cleaned.append(i)

    tasks = [asyncio.create_task(step(i)) for i in range(3)]
    runner = asyncio.create_task(_all(tasks))
    await asyncio.sleep(0.01)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert sorted(cleaned) == [0, 1, 2]  # all cancelled, and done before it re-raised
    assert all(task.cancelled() for task in tasks)
