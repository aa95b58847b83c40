"""Acks through an SQS outage: deletes and visibility changes are retried while their
receipts can still be valid, so an outage shorter than the visibility timeout costs no
duplicate delivery, loses nothing and dead-letters nothing, and the worker resumes alone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from botocore.exceptions import EndpointConnectionError

from sealq.envelope.jwe import seal_at
from sealq.worker.batcher import Batcher
from sealq.worker.handler import Message
from tests.component import test_pool
from tests.component.test_pool import (
    LIVE,
    Keys,
    MemoryQueue,
    QuickPollSQS,
    Recorder,
    Rig,
    attrs,
    peek,
    running,
    sealing,
    until,
)

keys, rig = test_pool.keys, test_pool.rig  # the fixtures


class Outage(QuickPollSQS):
    """Every receive, delete and visibility call fails while `down` (as when SQS is unreachable)."""

    def __init__(self, *queues: MemoryQueue) -> None:
        super().__init__(*queues)
        self.down = False
        self.refused = 0

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        self._check()
        return await super().receive_message(**kw)

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        self._check()
        return await super().delete_message_batch(**kw)

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self._check()
        return await super().change_message_visibility_batch(**kw)


OUTAGE_S = 5.0


async def test_outage_mid_stream_costs_no_duplicate_and_loses_nothing(rig: Rig, keys: Keys) -> None:
    sqs = Outage(rig.src, rig.dlq)
    rig.sqs = sqs
    key = sealing(LIVE, keys.ec)
    ids = [rig.put(seal_at(f"o{i}".encode(), key, time.time()), attrs(LIVE)) for i in range(60)]
    recorder = Recorder(delay_s=0.02)

    async def handler(message: Message) -> None:
        await recorder(message)
        if len(recorder.finished) == 10 and not sqs.down:  # mid-stream, with acks in flight
            sqs.down = True
            asyncio.get_running_loop().call_later(OUTAGE_S, setattr, sqs, "down", False)

    worker = rig.worker(handler, visibility_timeout_s=30, heartbeat_s=10)
    async with running(worker):
        # Well under the 30 s visibility timeout: an ack given up on leaves its message
        # invisible (then delivered again), so the queue would not drain in time.
        await until(lambda: len(rig.src) == 0, timeout=OUTAGE_S + 8, what="all deleted after the outage")
        later = rig.put(seal_at(b"after", key, time.time()), attrs(LIVE))
        await until(lambda: later in recorder.calls and len(rig.src) == 0, what="worker resumed")
    assert sqs.refused > 0 and not sqs.down
    assert set(recorder.calls) == {*ids, later}  # nothing lost
    assert set(recorder.calls.values()) == {1}  # and no message handled twice
    assert worker.stats.ack_failures == 0
    assert not peek(rig.dlq)


async def test_entry_is_given_up_once_its_receipt_may_have_lapsed() -> None:
    calls = 0

    async def failing(entries: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    batcher = Batcher("DeleteMessageBatch", failing, flush_s=0)
    results: list[bool] = []
    started = time.monotonic()
    batcher.submit({"ReceiptHandle": "r"}, results.append, deadline=started + 1.0)
    await until(lambda: bool(results), timeout=3, what="the entry given up")
    assert results == [False] and batcher.failed_entries == 1
    # kept trying (0.1, 0.2, 0.2 s apart) until the receipt's last moment, and no longer
    assert 3 <= calls <= 6
