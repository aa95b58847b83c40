"""Graceful shutdown on the in-memory SQS, as SQS counts it: receive counts.

A message handed back at shutdown must not be received again by one of the same worker's
own long polls still open (each such receive costs a receive count and brings a message
closer to the redrive policy without any handler call). The rig is `test_pool`'s, with real
one-second long polls instead of its quick ones.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.jwe import seal_at
from sealq.testing.sqs import MemorySQS
from sealq.worker.pool import Tuning
from tests.component.test_pool import LIVE, Recorder, Rig, attrs, peek, sealing, until

LIVE_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def long_poll_rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path / "keyset.json")
    r.sqs = MemorySQS(r.src, r.dlq)  # long polls wait their whole second on an empty queue
    r.add(LIVE_KEY, LIVE)
    r.save()
    return r


@pytest.mark.parametrize("pollers", [4, None], ids=["fixed", "adaptive"])
async def test_one_shutdown_adds_at_most_one_to_each_receive_count(
    long_poll_rig: Rig, pollers: int | None
) -> None:
    """Four pollers (or as many as adaptive receiving runs then) sit in long polls on a drained
    queue when the stop comes; two handlers run, the other messages wait unstarted. Those
    are handed back, and none of the still open polls may take them again: each message's
    receive count grows by at most one."""
    import asyncio

    rig = long_poll_rig
    key = sealing(LIVE, LIVE_KEY)
    ids = [rig.put(seal_at(f"o{i}".encode(), key, time.time()), attrs(LIVE)) for i in range(30)]
    handler = Recorder(delay_s=0.5)
    worker = rig.worker(
        handler,
        concurrency=2,
        pollers=pollers,
        max_pollers=4,
        max_in_flight=100,
        wait_time_s=1,
        shutdown_grace_s=5,
        tuning=Tuning(empty_poll_pause_s=0.0),
    )
    task = asyncio.create_task(worker.run())
    await until(lambda: handler.running == 2 and worker.in_flight == 30, what="2 running, 28 waiting")
    await asyncio.sleep(0.1)  # every poller back in a long poll on the empty queue
    assert pollers is None or worker.pollers == 4
    before = {m.message_id: m.receive_count for m in rig.src.messages()}
    assert set(before.values()) == {1}
    worker.stop()
    await asyncio.wait_for(task, 10)
    after = {m.message_id: m.receive_count for m in rig.src.messages()}
    grown = {mid: after[mid] - before[mid] for mid in after if after[mid] > before[mid] + 1}
    assert not grown, f"receive count grew by more than one: {grown}"
    # Nothing lost: the two handled ones are gone, the rest are visible again at once.
    assert set(handler.finished) == set(handler.calls) and len(handler.calls) == 2
    assert set(after) == set(ids) - set(handler.calls)
    assert all(m.visible for m in rig.src.messages())
    assert worker.stats.released == 28 and not peek(rig.dlq)
