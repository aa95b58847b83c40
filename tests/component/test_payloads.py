"""Payloads sent through S3, in memory: AsyncProducer -> MemorySQS + MemoryS3 -> Worker.

What is offloaded and how the pointer looks, what the worker fetches (and refuses), when it
deletes the object, how S3's failures end, and that `payload_fetches` bounds how many
offloaded messages are in memory at once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from sealq.aws.payloads import (
    ATTR_PAYLOAD_SIZE,
    LEGACY_ATTR_PAYLOAD_SIZE,
    LEGACY_POINTER_CLASS,
    S3Pointer,
    parse_pointer,
    pointer_body,
)
from sealq.envelope.attributes import ATTR_DETAIL, ATTR_KEY_ID
from sealq.envelope.jwe import seal_at
from sealq.envelope.jwk import public_key_to_jwk
from sealq.errors import Reason
from sealq.keys.store import KeysetStore
from sealq.producer import AsyncProducer
from sealq.testing import MemoryS3
from sealq.worker import Message, Worker, WorkerSettings
from sealq.worker.pool import Tuning
from tests.component.test_pool import (
    DLQ,
    LIVE,
    SRC,
    Keys,
    QuickPollSQS,
    Recorder,
    Rig,
    attrs,
    dlq_reason,
    keys,  # noqa: F401 - the fixture
    peek,
    running,
    sealing,
    until,
)

BUCKET = "sealq-payloads"
BIG = 2 * 1024 * 1024  # sealed, well over SQS's 1 MiB


@pytest.fixture
def rig(tmp_path: Path, keys: Keys) -> Rig:  # noqa: F811 - the fixture
    r = Rig(tmp_path / "keyset.json")
    r.add(keys.ec, LIVE)
    r.save()
    return r


def worker(rig: Rig, handler: Any, s3: Any, **overrides: Any) -> Worker:
    values: dict[str, Any] = {
        "queue_url": SRC,
        "dlq_url": DLQ,
        "keyset": str(rig.path),
        "handler": "unused:handle",
        "concurrency": 4,
        "max_in_flight": 40,
        "wait_time_s": 1,
        "heartbeat_s": 10,
        "max_attempts": 3,
        "backoff_base_s": 0,
        "backoff_max_s": 0,
        "crypto_threads": 2,
        "payload_buckets": BUCKET,
        **overrides,
    }
    return Worker(
        WorkerSettings(**values),
        handler,
        sqs=rig.sqs,
        kms=rig.kms,
        keystore=KeysetStore(rig.path),
        tuning=Tuning(kms_retry_s=0),
        s3=s3,
    )


def producer(rig: Rig, keys: Keys, s3: Any, **kw: Any) -> AsyncProducer:  # noqa: F811
    now = time.time()
    jwks = {
        "keys": [
            public_key_to_jwk(
                keys.ec.public_key(), LIVE, not_before=int(now) - 60, expires_at=int(now) + 3600
            )
        ]
    }
    return AsyncProducer(SRC, jwks, sqs_client=rig.sqs, s3_bucket=BUCKET, s3_prefix="in/", s3_client=s3, **kw)


def offloaded(rig: Rig, keys: Keys, s3: MemoryS3, plaintext: bytes, key: str = "k1") -> str:  # noqa: F811
    """Put `plaintext`, sealed, in S3 and a pointer to it on the queue, as a producer would."""
    token = seal_at(plaintext, sealing(LIVE, keys.ec), time.time())
    s3.create_bucket(BUCKET)
    s3._buckets[BUCKET][key] = token
    return rig.put(pointer_body(S3Pointer(BUCKET, key)), pointer_attrs(len(token)))


def pointer_attrs(size: int, name: str = ATTR_PAYLOAD_SIZE) -> dict[str, dict[str, str]]:
    return {**attrs(LIVE), name: {"DataType": "Number", "StringValue": str(size)}}


async def test_large_message_goes_through_s3_as_ciphertext_and_its_object_is_deleted_after_handling(
    rig: Rig,
    keys: Keys,  # noqa: F811
) -> None:
    s3 = MemoryS3(BUCKET)
    big = bytes(range(256)) * (BIG // 256)
    async with producer(rig, keys, s3) as p:
        await p.send(big, client_id="bulk")
        await p.send(b"small")  # fits: inline, S3 untouched
    ((key, stored),) = s3.objects(BUCKET).items()
    assert key.startswith("in/") and len(key) == len("in/") + 36  # a uuid, not derived from content
    assert stored.startswith(b"eyJ") and stored.count(b".") == 4  # a JWE token: ciphertext only
    pointer_msg = next(m for m in peek(rig.src) if ATTR_PAYLOAD_SIZE in m.attributes)
    assert parse_pointer(pointer_msg.body) == S3Pointer(BUCKET, key)
    assert pointer_msg.attributes[ATTR_PAYLOAD_SIZE] == {
        "DataType": "Number",
        "StringValue": str(len(stored)),
    }
    assert pointer_msg.attributes[ATTR_KEY_ID]["StringValue"] == LIVE  # the kid stays on SQS
    handler = Recorder()
    w = worker(rig, handler, s3)
    async with running(w):
        await until(
            lambda: len(handler.messages) == 2 and not s3.objects(BUCKET), what="handled, object deleted"
        )
    assert sorted(m.plaintext for m in handler.messages) == sorted([big, b"small"])
    ops = [op for op, _, _ in s3.calls]
    assert ops == ["PutObject", "GetObject", "DeleteObject"]
    assert rig.src.deleted == 2 and not peek(rig.dlq)


async def test_missing_object_is_dead_lettered_with_the_pointer_not_the_payload(
    rig: Rig,
    keys: Keys,  # noqa: F811
) -> None:
    s3 = MemoryS3(BUCKET)
    body = pointer_body(S3Pointer(BUCKET, "gone"))
    rig.put(body, pointer_attrs(12345))
    handler = Recorder()
    async with running(worker(rig, handler, s3)):
        await until(lambda: len(peek(rig.dlq)) == 1, what="dead-lettered")
    (copy,) = peek(rig.dlq)
    assert dlq_reason(copy) == Reason.PAYLOAD_MISSING.value
    assert copy.attributes[ATTR_DETAIL]["StringValue"] == "NoSuchKey"
    assert copy.body == body and copy.attributes[ATTR_PAYLOAD_SIZE]["StringValue"] == "12345"
    assert not handler.messages and len(rig.src) == 0


async def test_dead_lettered_and_kept_payloads_stay_in_s3(rig: Rig, keys: Keys) -> None:  # noqa: F811
    s3 = MemoryS3(BUCKET)
    offloaded(
        rig, keys, s3, b"reject", key="rejected"
    )  # the handler rejects it: DLQ, object kept for redrive
    handler = Recorder()
    async with running(worker(rig, handler, s3)):
        await until(lambda: len(peek(rig.dlq)) == 1, what="dead-lettered")
    assert dlq_reason(peek(rig.dlq)[0]) == Reason.HANDLER_REJECTED.value
    offloaded(rig, keys, s3, b"kept", key="kept")
    async with running(worker(rig, handler, s3, keep_payloads=True)):
        await until(lambda: len(handler.messages) == 1 and len(rig.src) == 0, what="handled")
        await asyncio.sleep(0.05)
    assert set(s3.objects(BUCKET)) == {"rejected", "kept"}
    assert ("DeleteObject", BUCKET, "kept") not in s3.calls


async def test_access_denied_counts_attempts_and_throttling_never_dead_letters(
    rig: Rig,
    keys: Keys,  # noqa: F811
) -> None:
    s3 = MemoryS3(BUCKET)
    offloaded(rig, keys, s3, b"slow down", key="throttled")
    s3.fail_next("SlowDown", 503, times=5)  # more than max_attempts: still never dead-lettered
    handler = Recorder()
    w = worker(rig, handler, s3)
    async with running(w):
        await until(lambda: len(handler.messages) == 1, what="handled after S3 recovered")
    assert w.stats.retried == 5 and not peek(rig.dlq)
    s3.deny(BUCKET)
    offloaded(rig, keys, s3, b"denied", key="denied")
    w = worker(rig, handler, s3)
    async with running(w):
        await until(lambda: len(peek(rig.dlq)) == 1, what="dead-lettered after max_attempts")
    (copy,) = peek(rig.dlq)
    assert dlq_reason(copy) == Reason.PAYLOAD_UNAVAILABLE.value
    assert copy.attributes[ATTR_DETAIL]["StringValue"] == "AccessDenied"
    assert s3.calls.count(("GetObject", BUCKET, "denied")) == 3 and w.stats.retried == 2  # max_attempts


async def test_pointers_the_worker_may_not_follow_cost_no_s3_request(rig: Rig, keys: Keys) -> None:  # noqa: F811
    s3 = MemoryS3(BUCKET, "elsewhere")
    rig.put(pointer_body(S3Pointer("elsewhere", "k")), pointer_attrs(10))  # not in --payload-buckets
    rig.put(
        pointer_body(S3Pointer(BUCKET, "k")),
        attrs("ec-unknown") | {ATTR_PAYLOAD_SIZE: {"DataType": "Number", "StringValue": "1"}},
    )
    rig.put('["not.a.Pointer", {}]', pointer_attrs(10))
    handler = Recorder()
    async with running(worker(rig, handler, s3, keyset_refresh_s=60)):
        await until(lambda: len(peek(rig.dlq)) == 3, timeout=8, what="3 dead-lettered")
    reasons = sorted(dlq_reason(m) for m in peek(rig.dlq))
    assert reasons == ["malformed", "payload-unavailable", "unknown-key"]
    assert s3.calls == []
    rig.put(pointer_body(S3Pointer(BUCKET, "k")), pointer_attrs(10))  # a worker without S3 at all
    async with running(worker(rig, handler, None)):
        await until(lambda: len(peek(rig.dlq)) == 4, what="dead-lettered")
    assert "--payload-buckets" in peek(rig.dlq)[-1].attributes[ATTR_DETAIL]["StringValue"]


async def test_payload_over_the_limit_is_refused_before_its_body_is_read(rig: Rig, keys: Keys) -> None:  # noqa: F811
    s3 = MemoryS3(BUCKET)
    offloaded(rig, keys, s3, b"x" * 4096, key="big")
    handler = Recorder()
    async with running(worker(rig, handler, s3, max_payload_bytes=2048)):
        await until(lambda: len(peek(rig.dlq)) == 1, what="dead-lettered")
    assert dlq_reason(peek(rig.dlq)[0]) == Reason.TOO_LARGE.value
    assert not handler.messages and "big" in s3.objects(BUCKET)


async def test_legacy_attribute_and_pointer_class_are_recognised(rig: Rig, keys: Keys) -> None:  # noqa: F811
    s3 = MemoryS3(BUCKET)
    token = seal_at(b"from an old Java client", sealing(LIVE, keys.ec), time.time())
    s3._buckets[BUCKET]["old"] = token
    body = f'["{LEGACY_POINTER_CLASS}",{{"s3BucketName":"{BUCKET}","s3Key":"old"}}]'  # Jackson: compact
    rig.put(body, pointer_attrs(len(token), LEGACY_ATTR_PAYLOAD_SIZE))
    handler = Recorder()
    async with running(worker(rig, handler, s3)):
        await until(lambda: len(handler.messages) == 1 and not s3.objects(BUCKET), what="handled")
    assert handler.messages[0].plaintext == b"from an old Java client"


async def test_payload_fetches_bounds_offloaded_messages_in_memory(rig: Rig, keys: Keys) -> None:  # noqa: F811
    s3 = MemoryS3(BUCKET)
    for i in range(8):
        offloaded(rig, keys, s3, f"m{i}".encode(), key=f"k{i}")
    peak = running_now = 0

    async def handle(message: Message) -> None:
        nonlocal peak, running_now
        fetched_unsettled = sum(1 for op, _, _ in s3.calls if op == "GetObject") - w.stats.handled
        running_now += 1
        peak = max(peak, fetched_unsettled, running_now)
        await asyncio.sleep(0.05)
        running_now -= 1

    w = worker(rig, handle, s3, payload_fetches=2, concurrency=8)
    async with running(w):
        await until(lambda: w.stats.handled == 8, what="8 handled")
    assert peak == 2  # eight handler slots, but only two payloads fetched and unsettled at once


class RefusedDeletes(QuickPollSQS):
    """DeleteMessageBatch fails for every entry until `refusing` is cleared."""

    refusing = True

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        if not self.refusing:
            return await super().delete_message_batch(**kw)
        failed = [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in kw["Entries"]]
        return {"Successful": [], "Failed": failed}


async def test_object_outlives_a_failed_sqs_delete_so_the_redelivery_still_opens(
    rig: Rig,
    keys: Keys,  # noqa: F811
) -> None:
    refusing = RefusedDeletes(rig.src, rig.dlq)
    rig.sqs = refusing
    s3 = MemoryS3(BUCKET)
    offloaded(rig, keys, s3, b"twice", key="k")
    handler = Recorder()
    w = worker(rig, handler, s3, visibility_timeout_s=1, heartbeat_s=0.3)
    async with running(w):
        await until(lambda: w.stats.ack_failures == 1, what="the delete given up")
        assert "k" in s3.objects(BUCKET)
        refusing.refusing = False
        await until(
            lambda: len(rig.src) == 0 and not s3.objects(BUCKET), what="redelivered, handled, deleted"
        )
    assert [m.plaintext for m in handler.messages] == [b"twice", b"twice"] and not peek(rig.dlq)
