"""Hostile traffic on the in-memory SQS: floods of made-up kids, with SQS's redrive policy on.

The rig and helpers are those of `test_pool`; the source queue here also does what SQS's
redrive policy does: a message received `maxReceiveCount` times is moved to the DLQ as it
is (no `sealq-reason`) instead of being delivered again. A message that ends there
unlabelled is one the worker failed to explain to an operator.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.jwe import seal_at
from sealq.errors import Reason
from sealq.keys.store import KeysetStore
from sealq.testing.sqs import MemoryQueue
from sealq.worker.pool import Tuning
from tests.component.test_pool import DLQ, LIVE, SRC, Recorder, Rig, attrs, running, sealing, until


class RedriveQueue(MemoryQueue):
    """A source queue with a redrive policy: at `max_receive_count` receives, to the DLQ.
    Answers to ReceiveMessage take `latency_s` (a random share of it, as over a network), so
    received batches arrive spread out in time as they do from SQS, not all at one instant."""

    def __init__(self, name: str, dlq: MemoryQueue, max_receive_count: int, latency_s: float = 0.0) -> None:
        super().__init__(name)
        self.dlq = dlq
        self.max_receive_count = max_receive_count
        self.latency_s = latency_s
        self.redriven = 0
        self._rng = random.Random(7)

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        out = await super().receive_message(**kw)
        if self.latency_s:
            await asyncio.sleep(self._rng.uniform(0.2, 1.0) * self.latency_s)
        return out

    def _expire_visibility(self, now: float) -> None:
        super()._expire_visibility(now)
        if any(m.receive_count >= self.max_receive_count for m in self._ready):
            keep = [m for m in self._ready if m.receive_count < self.max_receive_count]
            for m in self._ready:
                if m.receive_count >= self.max_receive_count:
                    self.dlq.put(m.body, m.attributes, receive_count=0)
                    self.redriven += 1
            self._ready.clear()
            self._ready.extend(keep)


LIVE_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def flood_rig(tmp_path: Path) -> Rig:
    dlq = MemoryQueue(DLQ)
    src = RedriveQueue(SRC, dlq, max_receive_count=5, latency_s=0.03)
    r = Rig(tmp_path / "keyset.json", src=src, dlq=dlq)
    r.add(LIVE_KEY, LIVE)
    r.save()
    return r


async def test_redrive_queue_moves_a_message_received_too_often() -> None:
    """The rig itself: what the flood test relies on to see unlabelled dead letters."""
    dlq = MemoryQueue(DLQ)
    src = RedriveQueue(SRC, dlq, max_receive_count=2)
    src.put("x", attrs(LIVE))

    async def receive_and_release() -> int:
        out = await src.receive_message(MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for m in out.get("Messages", []):
            entry = {"Id": "1", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            await src.change_message_visibility_batch(Entries=[entry])
        return len(out.get("Messages", []))

    assert [await receive_and_release() for _ in range(3)] == [1, 1, 0]
    assert src.redriven == 1 and len(dlq) == 1 and len(src) == 0


async def test_unknown_kid_flood_is_labelled_before_the_redrive_policy_takes_it(
    flood_rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of distinct made-up kids mixed with good messages, maxReceiveCount 5: every
    made-up one reaches the DLQ as `unknown-key` (none unlabelled by the redrive policy),
    every good one is handled, the keyset is read at most once a second on their account,
    and KMS is asked only for the one real key."""
    rig = flood_rig
    stray = ec.generate_private_key(ec.SECP256R1())
    now = time.time()
    bad, good = set(), set()
    for i in range(400):
        if i % 4 == 3:
            good.add(rig.put(seal_at(f"order {i}".encode(), sealing(LIVE, LIVE_KEY), now), attrs(LIVE)))
        else:
            kid = f"p256-20990101-{i:08x}"
            bad.add(rig.put(seal_at(b"x", sealing(kid, stray), now), attrs(kid)))
    reads: list[float] = []
    real_load = KeysetStore.load

    def counted_load(store: KeysetStore) -> Any:
        reads.append(time.monotonic())
        return real_load(store)

    monkeypatch.setattr(KeysetStore, "load", counted_load)
    handler = Recorder()
    worker = rig.worker(
        handler,
        concurrency=16,
        max_in_flight=100,
        visibility_timeout_s=30,
        heartbeat_s=10,
        tuning=Tuning(unknown_kid_refresh_min_s=1.0),
    )
    async with running(worker):
        await until(lambda: len(rig.src) == 0, timeout=30, what="source queue drained")
    assert isinstance(rig.src, RedriveQueue)
    reasons = [m.attribute("sealq-reason") for m in rig.dlq.messages()]
    assert rig.src.redriven == 0, f"{rig.src.redriven} moved unlabelled by the redrive policy"
    assert len(reasons) == len(bad) and set(reasons) == {Reason.UNKNOWN_KEY.value}
    assert handler.handled_ids() == good
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert gaps and min(gaps) >= 0.95, gaps  # at most one keyset read a second
    assert rig.kms.calls == 1  # the real key, once; never for a made-up kid
