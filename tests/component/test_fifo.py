"""FIFO queues in process: the MemoryFifoQueue keeps AWS's FIFO rules, and the worker over it
handles each group strictly in order, one at a time, groups in parallel, with retries,
dead-letters into a FIFO DLQ (group kept), heartbeat and shutdown."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.jwe import seal_at
from sealq.errors import Reason
from sealq.keys.store import KeysetStore
from sealq.testing.fifo_sqs import MemoryFifoQueue
from sealq.testing.kms import FakeKMS, record_for, write_keyset
from sealq.testing.sqs import MemoryQueue, MemorySQS
from sealq.worker.handler import HandlerRejected, Message
from sealq.worker.pool import Tuning, Worker
from sealq.worker.settings import SettingsError, WorkerSettings, load_settings
from tests.component.test_pool import QuickPollSQS, attrs, running, sealing, until

SRC, DLQ, KID = "src.fifo", "dlq.fifo", "ec-fifo"


# ----- the double keeps AWS's FIFO rules ----------------------------------------------------


def entry(body: str, group: str | None = "g", dedup: str | None = "d", **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"MessageBody": body, **extra}
    if group is not None:
        e["MessageGroupId"] = group
    if dedup is not None:
        e["MessageDeduplicationId"] = dedup
    return e


async def receive(sqs: MemorySQS, n: int = 10, **kw: Any) -> list[dict[str, Any]]:
    response = await sqs.receive_message(QueueUrl=SRC, MaxNumberOfMessages=n, VisibilityTimeout=30, **kw)
    return list(response.get("Messages", []))


async def test_sending_to_a_fifo_queue_follows_sqs_rules() -> None:
    sqs = MemorySQS(MemoryFifoQueue(SRC))
    refused = [
        (entry("a", group=None), "MissingParameter"),
        (entry("a", dedup=None), "InvalidParameterValue"),  # no content-based deduplication
        (entry("a", DelaySeconds=5), "InvalidParameterValue"),
        (entry("a", group="has space"), "InvalidParameterValue"),
    ]
    for bad, code in refused:
        with pytest.raises(ClientError) as info:
            await sqs.send_message(QueueUrl=SRC, **bad)
        assert info.value.response["Error"]["Code"] == code
    first = await sqs.send_message(QueueUrl=SRC, **entry("a", dedup="same"))
    again = await sqs.send_message(QueueUrl=SRC, **entry("a changed", dedup="same"))
    assert again["MessageId"] == first["MessageId"] and len(sqs[SRC]) == 1  # within 5 minutes
    batch = await sqs.send_message_batch(
        QueueUrl=SRC, Entries=[{"Id": "0", **entry("b", dedup="b")}, {"Id": "1", **entry("c", group=None)}]
    )
    assert [f["Code"] for f in batch["Failed"]] == ["MissingParameter"] and len(batch["Successful"]) == 1


async def test_content_based_deduplication_hashes_the_body() -> None:
    sqs = MemorySQS(MemoryFifoQueue(SRC, content_based_deduplication=True))
    for body in ("x", "x", "y"):
        await sqs.send_message(QueueUrl=SRC, **entry(body, dedup=None))
    assert [m.body for m in sqs[SRC].messages()] == ["x", "y"]


async def test_a_standard_queue_refuses_a_deduplication_id_and_keeps_a_group() -> None:
    sqs = MemorySQS(MemoryQueue("std"))
    with pytest.raises(ClientError):
        await sqs.send_message(QueueUrl="std", **entry("a"))
    await sqs.send_message(QueueUrl="std", **entry("a", dedup=None))  # fair queue: allowed
    with pytest.raises(ValueError, match=r"\.fifo"):
        MemoryFifoQueue("std")


async def test_a_group_is_locked_while_one_of_its_messages_is_in_flight() -> None:
    sqs = MemorySQS(MemoryFifoQueue(SRC))
    for group, body in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("a", "a3")]:
        await sqs.send_message(QueueUrl=SRC, **entry(body, group=group, dedup=body))
    got = await receive(sqs, 1)
    assert [m["Body"] for m in got] == ["a1"] and "MessageGroupId" not in got[0]["Attributes"]
    more = await receive(sqs, 10, MessageSystemAttributeNames=["MessageGroupId"])
    assert [(m["Body"], m["Attributes"]["MessageGroupId"]) for m in more] == [("b1", "b")]  # a is locked
    a1 = got[0]["ReceiptHandle"]
    # a1 retried with a backoff: still in flight, the group stays locked; back first after it.
    backoff = [{"Id": "0", "ReceiptHandle": a1, "VisibilityTimeout": 1}]
    await sqs.change_message_visibility_batch(QueueUrl=SRC, Entries=backoff)
    assert await receive(sqs) == []
    await asyncio.sleep(1.05)
    again = await receive(sqs)
    assert [m["Body"] for m in again] == ["a1", "a2", "a3"]  # several of a group in one receive, in order
    # Releasing a later message while an earlier one is in flight does not unlock the group.
    handles = {m["Body"]: m["ReceiptHandle"] for m in again}
    release = [{"Id": "0", "ReceiptHandle": handles["a3"], "VisibilityTimeout": 0}]
    await sqs.change_message_visibility_batch(QueueUrl=SRC, Entries=release)
    assert await receive(sqs) == []
    await sqs.delete_message_batch(QueueUrl=SRC, Entries=[{"Id": "0", "ReceiptHandle": handles["a1"]}])
    await sqs.delete_message_batch(QueueUrl=SRC, Entries=[{"Id": "0", "ReceiptHandle": handles["a2"]}])
    assert [m["Body"] for m in await receive(sqs)] == ["a3"]


# ----- the worker on a FIFO queue -----------------------------------------------------------


class Rig:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.kms = FakeKMS()
        self.src, self.dlq = MemoryFifoQueue(SRC), MemoryFifoQueue(DLQ)
        self.sqs = QuickPollSQS(self.src, self.dlq)  # type: ignore[arg-type]
        private = ec.generate_private_key(ec.SECP256R1())
        write_keyset(path, record_for(self.kms, private, KID))
        self.key = sealing(KID, private)

    def put(self, text: str, group: str) -> str:
        body = seal_at(text.encode(), self.key, time.time()).decode()
        return self.src.put(body, attrs(KID), group_id=group)

    def worker(self, handler: Any, tuning: Tuning | None = None, **overrides: Any) -> Worker:
        values: dict[str, Any] = {
            "queue_url": SRC,
            "dlq_url": DLQ,
            "keyset": str(self.path),
            "handler": "unused:handle",
            "concurrency": 8,
            "max_in_flight": 40,
            "wait_time_s": 1,
            "visibility_timeout_s": 30,
            "heartbeat_s": 10,
            "max_attempts": 50,
            "backoff_base_s": 0,
            "backoff_max_s": 0,
            "shutdown_grace_s": 5,
            "crypto_threads": 2,
            **overrides,
        }
        store = KeysetStore(self.path)
        settings = WorkerSettings(**values)
        tuned = tuning or Tuning()
        return Worker(settings, handler, sqs=self.sqs, kms=self.kms, keystore=store, tuning=tuned)


class OrderChecker:
    """A handler that fails some first attempts and proves each group's order: every call
    must be for the next message of its group not yet handled, and never two at once."""

    def __init__(self, fail: set[str], delay_s: float = 0.002) -> None:
        self.fail = fail
        self.delay_s = delay_s
        self.done: dict[str, list[int]] = defaultdict(list)
        self.violations: list[str] = []
        self.busy: Counter[str] = Counter()
        self.most_at_once = 0
        self.rng = random.Random(7)

    async def __call__(self, message: Message) -> None:
        text = message.text()
        if text.startswith("reject"):
            raise HandlerRejected("rejected")
        if text.startswith("fail"):
            raise RuntimeError("always fails")
        group, index = text.split("-")[0], int(text.split("-")[1])
        if self.busy[group]:
            self.violations.append(f"{text} while {group} busy")
        expected = len(self.done[group])
        if index != expected:
            self.violations.append(f"{text} handled, {group}-{expected} expected")
        self.busy[group] += 1
        self.most_at_once = max(self.most_at_once, sum(self.busy.values()))
        try:
            await asyncio.sleep(self.rng.uniform(0, self.delay_s))
            if text in self.fail:
                self.fail.discard(text)
                raise RuntimeError("first attempt fails")
            self.done[group].append(index)
        finally:
            self.busy[group] -= 1


async def test_each_group_is_handled_in_order_one_at_a_time_groups_in_parallel(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "keyset.json")
    groups, per_group = 6, 8
    sent = [f"g{g}-{i}" for i in range(per_group) for g in range(groups)]  # interleaved groups
    for text in sent:
        rig.put(text, text.split("-")[0])
    fail = set(random.Random(3).sample(sent, 12))
    checker = OrderChecker(set(fail))
    worker = rig.worker(checker)
    async with running(worker):
        await until(lambda: len(rig.src) == 0, timeout=15, what="all handled")
    assert checker.violations == []
    assert dict(checker.done) == {f"g{g}": list(range(per_group)) for g in range(groups)}
    assert checker.most_at_once > 1  # groups ran in parallel
    assert worker.stats.retried == len(fail)
    assert worker.stats.released > 0  # followers of a retried message were handed back unhandled


async def test_dead_letters_keep_their_group_and_the_group_goes_on(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "keyset.json")
    stray = sealing("ec-stray", ec.generate_private_key(ec.SECP256R1()))
    ids = [rig.put("a-0", "a"), rig.put("reject-a", "a"), rig.put("a-1", "a")]
    ids.append(rig.src.put("not a token", attrs(KID), group_id="a"))
    ids.append(rig.src.put(seal_at(b"a-x", stray, time.time()).decode(), attrs("ec-stray"), group_id="a"))
    ids += [rig.put("a-2", "a"), rig.put("fail-a", "a"), rig.put("a-3", "a")]
    checker = OrderChecker(set())
    worker = rig.worker(checker, Tuning(unknown_kid_refresh_min_s=0.05), max_attempts=2)
    async with running(worker):
        await until(lambda: len(rig.src) == 0, what="all settled")
    assert checker.done["a"] == [0, 1, 2, 3] and checker.violations == []
    copies = rig.dlq.messages()
    assert [(m.group_id, m.attribute("sealq-reason")) for m in copies] == [
        ("a", Reason.HANDLER_REJECTED.value),
        ("a", Reason.MALFORMED.value),
        ("a", Reason.UNKNOWN_KEY.value),
        ("a", Reason.HANDLER_ERROR.value),
    ]
    received = await rig.sqs.receive_message(
        QueueUrl=DLQ, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
    )
    assert [m["Attributes"]["MessageDeduplicationId"] for m in received["Messages"]] == [
        ids[1],
        ids[3],
        ids[4],
        ids[6],
    ]


async def test_followers_waiting_behind_a_slow_handler_keep_their_visibility(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "keyset.json")
    for i in range(3):
        rig.put(f"a-{i}", "a")
    checker = OrderChecker(set(), delay_s=0)
    slow_first = checker.__call__

    async def handle(message: Message) -> None:
        if message.text() == "a-0":
            await asyncio.sleep(1.6)  # past the 1 s visibility: only the heartbeat keeps a-1, a-2
        await slow_first(message)

    worker = rig.worker(handle, visibility_timeout_s=1, heartbeat_s=0.3)
    async with running(worker):
        await until(lambda: len(rig.src) == 0, timeout=10, what="all handled")
    assert checker.done["a"] == [0, 1, 2] and worker.stats.received == 3  # none delivered twice


async def test_shutdown_hands_back_the_rest_of_a_group_in_order(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "keyset.json")
    for i in range(4):
        rig.put(f"a-{i}", "a")
    started = asyncio.Event()

    async def handle(message: Message) -> None:
        started.set()
        await asyncio.sleep(0.3)

    worker = rig.worker(handle)
    async with running(worker):
        await asyncio.wait_for(started.wait(), 5)
    left = rig.src.messages()
    assert len(left) == 3 and all(m.visible for m in left)  # a-0 finished, the rest given back
    assert worker.stats.handled == 1


def test_a_fifo_queue_needs_a_fifo_dlq() -> None:
    with pytest.raises(SettingsError, match="both be FIFO"):
        load_settings(queue_url="q.fifo", dlq_url="dlq", keyset="k", handler="m:f")
    assert load_settings(queue_url="q.fifo", dlq_url="d.fifo", keyset="k", handler="m:f").fifo

