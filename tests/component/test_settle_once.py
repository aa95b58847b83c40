"""Each message settles once, and a lease is trusted only once SQS granted it.

A bug of ours in one message of a batch makes `Pipeline.consume` retry what is left of the
batch; messages whose delete or visibility change is already queued are not "left" (one
outcome each). A heartbeat extension SQS refused does not move `visible_until`, so the
batcher never retries a receipt past the visibility SQS really granted."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from sealq.envelope.jwe import seal_at
from sealq.worker.leases import Leases, in_flight
from sealq.worker.outcomes import Rules
from sealq.worker.settling import Settler
from sealq.worker.stats import KidLabels, Stats
from tests.component import test_pool
from tests.component.test_pool import (
    LIVE,
    Keys,
    MemoryQueue,
    QuickPollSQS,
    Recorder,
    Rig,
    attrs,
    running,
    sealing,
    until,
)

keys, rig = test_pool.keys, test_pool.rig  # the fixtures


class Entries(QuickPollSQS):
    """Counts, per receipt handle, the delete and visibility entries the worker sends."""

    def __init__(self, *queues: MemoryQueue) -> None:
        super().__init__(*queues)
        self.settled: Counter[str] = Counter()

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        self.settled.update(e["ReceiptHandle"] for e in kw["Entries"])
        return await super().delete_message_batch(**kw)

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self.settled.update(e["ReceiptHandle"] for e in kw["Entries"])
        return await super().change_message_visibility_batch(**kw)


async def test_a_bug_in_one_message_leaves_the_settled_ones_settled_once(
    rig: Rig, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Rules, verdict: object) -> Any:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(Rules, "rejected", broken)  # the malformed message's path raises
    sqs = Entries(rig.src, rig.dlq)
    rig.sqs = sqs
    key = sealing(LIVE, keys.ec)
    good = [rig.put(seal_at(f"g{i}".encode(), key, time.time()), attrs(LIVE)) for i in range(4)]
    rig.put("not a token", attrs(LIVE))  # one batch: all five are in the queue before the start
    handler = Recorder()
    worker = rig.worker(handler, pollers=1, backoff_base_s=60, backoff_max_s=60)  # retried once
    async with running(worker):
        await until(lambda: rig.src.deleted == 4 and worker.stats.retried >= 1, what="handled and retried")
    assert set(handler.calls) == set(good)
    assert len(sqs.settled) == 5 and set(sqs.settled.values()) == {1}, sqs.settled  # one outcome each
    assert worker.stats.handled == 4 and worker.stats.retried == 1
    assert worker.stats.ack_failures == 0


class Answering:
    """SQS that grants every visibility change and counts the entries per receipt."""

    def __init__(self) -> None:
        self.settled: Counter[str] = Counter()

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self.settled.update(e["ReceiptHandle"] for e in kw["Entries"])
        return {"Successful": [{"Id": e["Id"]} for e in kw["Entries"]], "Failed": []}


def settler_for(sqs: Any, leases: Leases, stats: Stats) -> Settler:
    rules = Rules(max_attempts=3, backoff_base_s=0, backoff_max_s=0, kms_retry_s=15, rng=random.Random(1))
    labels = KidLabels(lambda kid: True, 10)
    return Settler(
        sqs, queue_url="src", dlq_url="dlq", rules=rules, leases=leases, stats=stats, kid_label=labels
    )


async def test_a_message_handed_back_twice_is_released_once() -> None:
    # Shutdown: `HandBacks` holds a released message until the polls end, and its consumer,
    # cancelled meanwhile, hands what is unsettled back too.
    sqs, stats, finished = Answering(), Stats(), []
    leases = Leases(on_finish=lambda: finished.append(True))
    settler = settler_for(sqs, leases, stats)
    item = in_flight({"MessageId": "m1", "ReceiptHandle": "r1", "Body": "b"}, time.monotonic(), 30)
    leases.add([item])
    settler.release(item)
    settler.release(item)
    await settler.close()
    assert sqs.settled == {"r1": 1} and stats.released == 1 and finished == [True]


class RefusedVisibility:
    """SQS whose ChangeMessageVisibility is unreachable while `down`; counts the calls."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        if self.down:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return {"Successful": [{"Id": e["Id"]} for e in kw["Entries"]], "Failed": []}


async def test_a_refused_extension_leaves_visible_until_where_sqs_put_it() -> None:
    sqs, finished = RefusedVisibility(), []
    leases = Leases(on_finish=lambda: finished.append(True))
    settler = settler_for(sqs, leases, Stats())
    received = time.monotonic()
    item = in_flight({"MessageId": "m1", "ReceiptHandle": "r1", "Body": "b"}, received, 1)
    leases.add([item])

    def beat() -> None:  # what `Leases.heartbeat` does each beat (every 1 s here)
        for due, seconds in leases.due(time.monotonic(), 1.0, 30):
            settler.extend(due, seconds)

    beat()
    assert item.visible_until == received + 1  # asked for, not granted
    assert item.extending
    beat()  # one extension at a time: the next beat does not ask again while one is pending
    # Retried only while the 1 s SQS granted at receipt lasts (to 0.5 s before it), not 30 s.
    await until(lambda: not item.extending, timeout=3, what="the refused extension given up")
    assert time.monotonic() - received < 1.0
    calls = sqs.calls
    assert 2 <= calls <= 6
    assert item.visible_until == received + 1 and not finished

    sqs.down = False  # SQS is back: the next beat's extension is granted, and counted
    asked = time.monotonic()
    beat()
    await until(lambda: not item.extending, what="the extension granted")
    assert sqs.calls == calls + 1
    assert asked + 30 <= item.visible_until <= time.monotonic() + 30
    await settler.close()
    assert not finished  # an extension settles nothing
