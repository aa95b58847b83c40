"""Dead-letter copies and SQS's size rules: a sealq-made message always fits the DLQ with its
reason; one that cannot fit even with the reason alone is not retried in a tight loop; and
MemorySQS refuses what SQS refuses, so a test catches a copy SQS would reject."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sealq.aws.limits import PRODUCER_MAX_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES, message_size
from sealq.envelope.attributes import ATTR_DETAIL, ATTR_KEY_ID, ATTR_REASON
from sealq.envelope.jwe import seal_at
from sealq.envelope.jwk import SealingKey
from sealq.errors import MessageTooLargeError
from sealq.producer.message import OutgoingMessage, batch_request, build_entry
from sealq.testing.sqs import MemoryQueue, MemorySQS
from sealq.worker.handler import HandlerRejected, Message
from tests.component import test_pool
from tests.component.test_pool import LIVE, Keys, Rig, peek, running, sealing, until

keys, rig = test_pool.keys, test_pool.rig  # the fixtures
NOW = time.time()


def sized(
    key: SealingKey, target: int, attributes: bool = True, exact: bool = True
) -> tuple[str, dict[str, dict[str, str]], int]:
    """A body sealed to `key` with the `key-id` attribute the producer adds (or none), exactly
    `target` bytes as SQS counts them, and its plaintext's length."""
    attrs = {ATTR_KEY_ID: {"DataType": "String", "StringValue": key.kid}} if attributes else {}
    n = (target - 1000) * 3 // 4
    while (size := message_size(body := seal_at(b"x" * n, key, NOW).decode(), attrs)) < target:
        n += max(1, (target - size) * 3 // 4 - 1)
    if exact and size != target:  # base64 makes 3 sizes in 4: try a kid one character longer
        raise ValueError(f"{target} bytes cannot be made with kid {key.kid}")
    return body, attrs, n


class Rejecting:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, message: Message) -> None:
        self.calls += 1
        raise HandlerRejected("order failed validation")


async def test_largest_producer_message_rejected_by_its_handler_reaches_the_dlq(rig: Rig, keys: Keys) -> None:
    key = sealing(LIVE, keys.ec)
    plaintext = b"x" * ((PRODUCER_MAX_MESSAGE_BYTES - 1000) * 3 // 4)
    while (
        entry := build_entry(0, OutgoingMessage(plaintext), key, NOW)
    ).size < PRODUCER_MAX_MESSAGE_BYTES - 2:
        plaintext += b"x"
    sent = await rig.sqs.send_message_batch(QueueUrl="src", Entries=batch_request([entry]))
    assert len(sent["Successful"]) == 1, sent
    with pytest.raises(MessageTooLargeError):
        build_entry(0, OutgoingMessage(plaintext + b"xxxx"), key, NOW)
    handler = Rejecting()
    worker = rig.worker(handler)
    async with running(worker):
        await until(lambda: len(rig.dlq) == 1 and len(rig.src) == 0, what="dead-lettered")
    (copy,) = peek(rig.dlq)
    assert copy.body == entry.body and copy.attributes[ATTR_KEY_ID]["StringValue"] == LIVE
    assert copy.attributes[ATTR_REASON]["StringValue"] == "handler-rejected"
    assert copy.attributes[ATTR_DETAIL]["StringValue"] == "order failed validation"
    assert handler.calls == 1 and worker.stats.dead_letter_unfit == 0


async def test_issue_repro_1048556_byte_producer_message_rejected_by_its_handler_reaches_the_dlq(
    rig: Rig, keys: Keys
) -> None:
    """What the producer used to make (it now refuses): once in the DLQ's way, the copy
    drops the other attributes, `key-id` last, to keep its reason, instead of looping."""
    for kid in (LIVE, LIVE + "1", LIVE + "12"):
        key = sealing(kid, keys.ec)
        try:
            body, attrs, n = sized(key, 1_048_556)
            break
        except ValueError:
            continue
    rig.add(keys.ec, kid)
    rig.save()
    message_id = rig.src.put(body, attrs)  # sent by an older sealq producer
    handler = Rejecting()
    worker = rig.worker(handler)
    async with running(worker):
        await until(lambda: len(rig.dlq) == 1 and len(rig.src) == 0, what="dead-lettered")
    (copy,) = peek(rig.dlq)
    assert copy.body == body and copy.attributes[ATTR_REASON]["StringValue"] == "handler-rejected"
    assert message_size(copy.body, copy.attributes) <= SQS_MAX_MESSAGE_BYTES
    assert handler.calls == 1 and worker.stats.dead_lettered_total == 1, message_id
    with pytest.raises(MessageTooLargeError):  # and today's producer leaves room instead
        build_entry(0, OutgoingMessage(b"x" * n), key, NOW)


async def test_foreign_message_too_large_for_any_dlq_copy_is_left_to_the_redrive_policy(
    rig: Rig, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    key = sealing(LIVE, keys.ec)
    body, attrs, _ = sized(key, SQS_MAX_MESSAGE_BYTES - 2, exact=False)
    assert message_size(body, attrs) <= SQS_MAX_MESSAGE_BYTES  # SQS took it, but
    assert message_size(body, {ATTR_REASON: {"DataType": "String", "StringValue": "handler-rejected"}}) > (
        SQS_MAX_MESSAGE_BYTES
    )  # no copy with its reason fits
    message_id = rig.src.put(body, attrs)  # not made by sealq's producer
    handler = Rejecting()
    worker = rig.worker(handler)
    with caplog.at_level(logging.ERROR, logger="sealq.worker"):
        async with running(worker):
            await until(lambda: handler.calls >= 1, what="handled once")
            await asyncio.sleep(1.0)  # the old code looped here: receive, handler, DLQ refused, ...
    assert handler.calls == 1 and worker.stats.dead_letter_unfit == 1
    assert not peek(rig.dlq)
    (left,) = [m for m in rig.src.messages() if m.message_id == message_id]
    assert not left.visible and left.receive_count == 1 and (left.visibility_s or 0) >= 300
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and getattr(errors[0], "sealq", {}).get("message_id") == message_id
    assert body[:40] not in caplog.text and body[-40:] not in caplog.text


# ----- MemorySQS keeps SQS's rules on SendMessage and SendMessageBatch -------------------------


def _s(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


REFUSED: dict[str, tuple[str, dict[str, Any]]] = {
    "eleven attributes": ("b", {f"a{i}": _s("v") for i in range(11)}),
    "empty value": ("b", {"a": _s("")}),
    "empty binary value": ("b", {"a": {"DataType": "Binary", "BinaryValue": b""}}),
    "AWS. name": ("b", {"AWS.trace": _s("v")}),
    "Amazon. name": ("b", {"amazon.x": _s("v")}),
    "empty body": ("", {}),
    # fits in characters, not in UTF-8 bytes (2 bytes per "é")
    "size in bytes": ("é" * (SQS_MAX_MESSAGE_BYTES // 2 - 5), {"client-id": _s("é" * 4)}),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_memory_sqs_refuses_what_sqs_refuses(case: str) -> None:
    body, attributes = REFUSED[case]
    sqs = MemorySQS(MemoryQueue("q"))
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        await sqs.send_message(QueueUrl="q", MessageBody=body, MessageAttributes=attributes)
    good = {"Id": "ok", "MessageBody": "fine", "MessageAttributes": {"a": _s("v")}}
    bad = {"Id": "bad", "MessageBody": body, "MessageAttributes": attributes}
    if case == "size in bytes":  # over 1 MiB alone: the whole batch is too long
        with pytest.raises(ClientError, match="BatchRequestTooLong"):
            await sqs.send_message_batch(QueueUrl="q", Entries=[good, bad])
        return
    result = await sqs.send_message_batch(QueueUrl="q", Entries=[good, bad])
    assert [e["Id"] for e in result["Successful"]] == ["ok"]
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in result["Failed"]] == [
        ("bad", "InvalidParameterValue", True)
    ]
    assert [m.body for m in sqs["q"].messages()] == [good["MessageBody"]]


async def test_memory_sqs_batch_limits() -> None:
    sqs = MemorySQS(MemoryQueue("q"))
    half = "x" * (SQS_MAX_MESSAGE_BYTES // 2 + 1)
    with pytest.raises(ClientError, match="BatchRequestTooLong"):
        await sqs.send_message_batch(
            QueueUrl="q", Entries=[{"Id": str(i), "MessageBody": half} for i in range(2)]
        )
    with pytest.raises(ClientError, match="TooManyEntriesInBatchRequest"):
        await sqs.send_message_batch(
            QueueUrl="q", Entries=[{"Id": str(i), "MessageBody": "b"} for i in range(11)]
        )
    assert len(sqs["q"]) == 0
