"""FIFO ordering in the worker, pure: runs per group, in order, followers of a retried
message released unhandled (vectors in tests/vectors/fifo_groups.json), one place per group."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from sealq.worker.groups import GroupLocks, in_groups, run_in_order
from tests.conftest import vector_params


@dataclass(frozen=True)
class Item:
    message_id: str
    group_id: str | None


def batch_of(case: dict[str, Any]) -> list[Item]:
    return [Item(m, g) for m, g in case["batch"]]


@pytest.mark.parametrize("case", vector_params("fifo_groups.json"))
def test_in_groups(case: dict[str, Any]) -> None:
    runs = in_groups(batch_of(case))
    assert [[i.message_id for i in run] for run in runs] == case["runs"]


@pytest.mark.parametrize("case", vector_params("fifo_groups.json"))
async def test_run_in_order(case: dict[str, Any]) -> None:
    stepped: list[str] = []
    released: list[str] = []

    async def step(item: Item) -> bool:
        stepped.append(item.message_id)
        await asyncio.sleep(0)
        return item.message_id not in case["stops"]

    for run in in_groups(batch_of(case)):
        await run_in_order(run, step, lambda item: released.append(item.message_id))
    assert stepped == case["stepped"]
    assert released == case["released"]


async def test_a_failing_step_leaves_the_rest_to_the_caller() -> None:
    released: list[Item] = []

    async def step(item: Item) -> bool:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await run_in_order([Item("a1", "a"), Item("a2", "a")], step, released.append)
    assert released == []


async def test_group_locks_keep_one_group_in_one_place_and_let_groups_run_together() -> None:
    locks = GroupLocks()
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    order: list[str] = []

    async def step(item: Item) -> bool:
        group = item.group_id or item.message_id
        running[group] = running.get(group, 0) + 1
        most[group] = max(most.get(group, 0), running[group])
        order.append(item.message_id)
        await asyncio.sleep(0.01)
        running[group] -= 1
        return True

    # Two receives holding group a at once (a queue that broke the group lock), and group b.
    runs = [[Item("a1", "a"), Item("a2", "a")], [Item("a3", "a")], [Item("b1", "b"), Item("b2", "b")]]
    await asyncio.gather(*(locks.run(run, step, lambda item: None) for run in runs))
    assert most == {"a": 1, "b": 1}
    assert order.index("a1") < order.index("a2") < order.index("a3")
    assert order.index("b1") < order.index("a2")  # b ran while a was busy
    assert len(locks) == 0  # no lock outlives its use
