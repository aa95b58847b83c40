"""FIFO queues: the messages of one group are handled strictly in order, one at a time;
different groups run in parallel. Pure ordering logic, apart from the message path.

What SQS guarantees and what is left to the worker (AWS SQS Developer Guide, FIFO queues):
SQS hands out a group's messages in order and hands out none of a group while one of its
messages is in flight (received and not deleted, its visibility timeout running). One
receive can hold several consecutive messages of a group, so the worker must not run them
concurrently: `in_groups` splits a batch into one run per group, and `run_in_order` takes a
run's messages one after the other.

When a message cannot go on (a retry: its visibility is set to the backoff; or a release at
shutdown), the messages of its group behind it are released (visibility 0) unhandled, so
they never overtake it. The group stays locked at SQS while the retried message is hidden
for its backoff; when the backoff ends it comes back first, with the others behind it. A
dead-lettered message leaves the queue, so its group goes on with the next message.

`GroupLocks` keeps a group in one place of this process even if a queue (or a stand-in)
handed out a group's messages in two receives at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar


class Grouped(Protocol):
    @property
    def group_id(self) -> str | None: ...


T = TypeVar("T", bound=Grouped)


def in_groups(batch: list[T]) -> list[list[T]]:
    """One run per group, in the order of each group's first message; within a run, receive
    order (SQS's order within a group). A message with no group runs alone."""
    runs: dict[str, list[T]] = {}
    out: list[list[T]] = []
    for item in batch:
        group = item.group_id
        if group is None:
            out.append([item])
        elif (run := runs.get(group)) is not None:
            run.append(item)
        else:
            runs[group] = run = [item]
            out.append(run)
    return out


async def run_in_order(
    run: list[T], step: Callable[[T], Awaitable[bool]], release: Callable[[T], None]
) -> None:
    """`step` each message in turn while it answers True (it left the queue: handled or
    dead-lettered); after the first False (it is to be retried or was given back), release
    the rest unhandled. If `step` raises, the rest are left to the caller (still unfinished)."""
    for i, item in enumerate(run):
        if not await step(item):
            for later in run[i + 1 :]:
                release(later)
            return


class GroupLocks:
    """One lock per group with work in this process; a lock lives only while it is used."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextmanager
    def _counted(self, group: str) -> Iterator[asyncio.Lock]:
        lock, users = self._locks.get(group) or (asyncio.Lock(), 0)
        self._locks[group] = (lock, users + 1)
        try:
            yield lock
        finally:
            lock, users = self._locks[group]
            if users == 1:
                del self._locks[group]
            else:
                self._locks[group] = (lock, users - 1)

    async def run(
        self, run: list[T], step: Callable[[T], Awaitable[bool]], release: Callable[[T], None]
    ) -> None:
        """`run_in_order`, holding the run's group lock (none for a message with no group)."""
        group = run[0].group_id
        if group is None:
            await run_in_order(run, step, release)
            return
        with self._counted(group) as lock:
            async with lock:
                await run_in_order(run, step, release)
