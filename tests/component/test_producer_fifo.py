"""Producer, AsyncProducer and `sealq send` against a FIFO queue in moto: group ids sent,
required, deduplication ids the caller's or random (never from the plaintext), one
GetQueueAttributes per producer to learn about content-based deduplication."""

from __future__ import annotations

import argparse
import hashlib
import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sealq.cli import send as cli
from sealq.errors import FifoError
from sealq.producer import AsyncProducer, OutgoingMessage, Producer
from sealq.testing.keys import TestKey
from tests.component.test_producer import aws_creds

__all__ = ["aws_creds"]


class Counting:
    """A boto3 client that counts calls and keeps every send's parameters."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.sent: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(**kw: Any) -> Any:
            self.calls.append(name)
            self.sent += kw.get("Entries", [kw] if name == "send_message" else [])
            return method(**kw)

        return call


class AsyncCounting(Counting):
    def __getattr__(self, name: str) -> Any:
        sync = super().__getattr__(name)

        async def call(**kw: Any) -> Any:
            return sync(**kw)

        return call


@pytest.fixture
def sqs(aws_creds: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture(scope="module")
def key() -> TestKey:
    return TestKey("P-256")


def fifo_queue(sqs: Any, content_dedup: bool = False) -> str:
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": str(content_dedup).lower()}
    return str(sqs.create_queue(QueueName="orders.fifo", Attributes=attributes)["QueueUrl"])


def received(sqs: Any, url: str) -> list[dict[str, Any]]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
    return list(got.get("Messages", []))


def test_send_and_send_batch_carry_group_ids_and_random_deduplication_ids(sqs: Any, key: TestKey) -> None:
    url = fifo_queue(sqs)
    client = Counting(sqs)
    producer = Producer(url, key.jwks(), sqs_client=client)
    producer.send(b"same", group_id="a")
    producer.send(b"same", group_id="a")  # the same plaintext twice: both delivered
    result = producer.send_batch(
        [OutgoingMessage(b"same", group_id="b"), OutgoingMessage(b"c", group_id="a")]
    )
    assert result.ok
    assert client.calls.count("get_queue_attributes") == 1  # learnt once, cached
    dedup = [e["MessageDeduplicationId"] for e in client.sent]
    assert len(set(dedup)) == 4 and hashlib.sha256(b"same").hexdigest() not in dedup
    messages = received(sqs, url)
    assert sorted(m["Attributes"]["MessageGroupId"] for m in messages) == ["a", "a", "a", "b"]


def test_a_callers_deduplication_id_deduplicates(sqs: Any, key: TestKey) -> None:
    url = fifo_queue(sqs)
    producer = Producer(url, key.jwks(), sqs_client=sqs)
    producer.send(b"one", group_id="a", deduplication_id="order-1")
    producer.send(b"one again", group_id="a", deduplication_id="order-1")
    assert len(received(sqs, url)) == 1


def test_with_content_based_deduplication_sqs_compares_ciphertexts(sqs: Any, key: TestKey) -> None:
    url = fifo_queue(sqs, content_dedup=True)
    client = Counting(sqs)
    producer = Producer(url, key.jwks(), sqs_client=client)
    producer.send(b"same", group_id="a")
    producer.send(b"same", group_id="a")
    assert all("MessageDeduplicationId" not in e for e in client.sent)
    assert len(received(sqs, url)) == 2  # sealed twice = two ciphertexts: not deduplicated


def test_refusals_come_before_any_call(sqs: Any, key: TestKey) -> None:
    url = fifo_queue(sqs)
    client = Counting(sqs)
    producer = Producer(url, key.jwks(), sqs_client=client)
    with pytest.raises(FifoError, match="needs a group_id"):
        producer.send(b"x")
    with pytest.raises(FifoError, match="needs a group_id"):
        producer.send_batch([OutgoingMessage(b"x", group_id="a"), b"no group"])
    standard = str(sqs.create_queue(QueueName="plain")["QueueUrl"])
    with pytest.raises(FifoError, match="FIFO queues only"):
        Producer(standard, key.jwks(), sqs_client=client).send(b"x", deduplication_id="d")
    assert [c for c in client.calls if c.startswith("send")] == []


async def test_async_producer_sends_group_and_deduplication_ids(sqs: Any, key: TestKey) -> None:
    url = fifo_queue(sqs)
    client = AsyncCounting(sqs)
    async with AsyncProducer(url, key.jwks(), sqs_client=client) as producer:
        await producer.send(b"x", group_id="a", deduplication_id="d-1")
        await producer.send_batch([OutgoingMessage(b"y", group_id="a")])
        with pytest.raises(FifoError):
            await producer.send(b"z")
    assert client.calls.count("get_queue_attributes") == 1
    assert [m["Attributes"]["MessageGroupId"] for m in received(sqs, url)] == ["a", "a"]


def test_send_cli_passes_group_id_and_refuses_one_deduplication_id_for_many_lines(
    sqs: Any, key: TestKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fifo_queue(sqs)
    monkeypatch.setattr(cli, "Producer", lambda *a, **kw: Producer(*a, **kw, sqs_client=sqs))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"one\ntwo\n")))
    base = {"queue_url": url, "jwks": key.jwks(), "client_id": None, "content_type": None, "file": None}
    base |= {"json": True, "verify_with": None, "s3_bucket": None, "s3_prefix": "", "s3_always": False}
    args = argparse.Namespace(**base, group_id="tenant-1", deduplication_id=None)
    assert cli.run_send(args) == 0
    assert [m["Attributes"]["MessageGroupId"] for m in received(sqs, url)] == ["tenant-1"] * 2
    with pytest.raises(FifoError, match="needs --file"):
        cli.run_send(argparse.Namespace(**base, group_id="g", deduplication_id="d"))
