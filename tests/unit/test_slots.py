"""`receiving.Slots`: a full batch or nothing, woken by the gives that make room, and a
poller cancelled while it waits holds no slot (so `free` never leaks)."""

import asyncio

from sealq.worker.receiving import Slots


async def test_take_waits_for_a_full_batch_then_takes_it_whole() -> None:
    slots = Slots(12)
    assert await slots.take_batch() == 10
    assert slots.free == 2
    taking = asyncio.ensure_future(slots.take_batch())
    for _ in range(7):
        slots.give()
        await asyncio.sleep(0)
        assert not taking.done()  # 9 free: not yet room for a receive of ten
    slots.give()
    assert await asyncio.wait_for(taking, 1) == 10
    assert slots.free == 0


async def test_a_poller_cancelled_while_waiting_holds_nothing() -> None:
    slots = Slots(10)
    await slots.take_batch()
    slots.give(4)
    waiting = asyncio.ensure_future(slots.take_batch())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert slots.free == 4
    slots.give(6)
    assert await asyncio.wait_for(slots.take_batch(), 1) == 10  # the next poller gets them all


async def test_one_collector_at_a_time() -> None:
    slots = Slots(20)
    await slots.take_batch()
    await slots.take_batch()
    first = asyncio.ensure_future(slots.take_batch())
    second = asyncio.ensure_future(slots.take_batch())
    await asyncio.sleep(0)
    slots.give(15)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert first.done() and not second.done()
    assert slots.free == 5
    slots.give(5)
    assert await asyncio.wait_for(second, 1) == 10
