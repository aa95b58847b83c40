"""Typed handlers through the real worker (in memory): models in, equal models out, and an
invalid payload dead-lettered as `invalid-payload` with paths and types, its values found
neither in the logs nor in the DLQ copy."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import sealq.worker.typed as typed
from sealq.envelope.attributes import ATTR_CONTENT_TYPE
from sealq.errors import Reason
from sealq.producer import AsyncProducer
from sealq.testing import (
    FakeKMS,
    MemoryQueue,
    MemorySQS,
    TestKey,
    run_handler,
    run_handler_sync,
    write_keyset,
)
from sealq.worker import Message, Worker, WorkerSettings


class Item(BaseModel):
    sku: str
    qty: int


class Order(BaseModel):
    customer: str
    items: list[Item]


ORDER = Order(customer="c-1", items=[Item(sku="A1", qty=2), Item(sku="B2", qty=1)])


@pytest.fixture(scope="module")
def key() -> TestKey:
    return TestKey(kid="typed-p256")


async def test_a_typed_handler_receives_the_model_sent(key: TestKey) -> None:
    got: list[tuple[Order, str | None]] = []

    async def handle(order: Order, message: Message) -> None:
        got.append((order, message.content_type))

    outcome = await run_handler(handle, ORDER, key=key)
    assert outcome.handled
    ((order, content_type),) = got
    assert type(order) is Order and order == ORDER
    assert content_type == "application/json"


async def test_a_plain_typed_function_runs_in_a_thread_with_the_model(key: TestKey) -> None:
    got: list[tuple[Order, str]] = []

    def handle(order: Order) -> None:
        got.append((order, threading.current_thread().name))

    assert (await run_handler(handle, ORDER, key=key)).handled
    ((order, thread),) = got
    assert order == ORDER and thread != threading.main_thread().name


SECRETS = ["alice@example.com", "4111-1111-1111-1111", "one-thousand", "hunter2-token"]
INVALID = (
    b'{"customer": {"email": "alice@example.com"}, "items": [{"sku": "4111-1111-1111-1111", '
    b'"qty": "one-thousand"}, {"qty": 3}], "hunter2-token": 1}'
)


async def test_an_invalid_payload_is_dead_lettered_with_paths_and_no_values(
    key: TestKey, caplog: pytest.LogCaptureFixture
) -> None:
    called: list[Order] = []

    async def handle(order: Order) -> None:
        called.append(order)

    caplog.set_level(logging.DEBUG)
    outcome = await run_handler(handle, INVALID, key=key, client_id="shop-eu", max_attempts=5)
    assert outcome.dead_lettered and outcome.reason is Reason.INVALID_PAYLOAD
    assert outcome.detail == "customer: string_type; items.0.qty: int_parsing; items.1.sku: missing"
    assert not called  # never handed a half-valid object
    assert outcome.dead_letter is not None
    copy = outcome.dead_letter
    scanned = [copy.body, repr(copy.attributes), repr(outcome.error), str(outcome.error)]
    scanned += [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    assert any("dead-lettered" in text for text in scanned)  # the scan did see the worker's logs
    assert [s for s in SECRETS if any(s in text for text in scanned)] == []


async def test_models_from_the_producer_arrive_as_equal_models_and_the_adapter_is_built_once(
    key: TestKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    real = typed.TypeAdapter

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(typed, "TypeAdapter", counting)
    orders = [Order(customer=f"c-{i}", items=[Item(sku=f"S{i}", qty=i)]) for i in range(200)]
    got: list[Order] = []

    async def handle(order: Order) -> None:
        got.append(order)

    kms, src, dlq = FakeKMS(), MemoryQueue("src"), MemoryQueue("dlq")
    store = write_keyset(tmp_path / "keyset.json", key.record(kms))
    sqs = MemorySQS(src, dlq)
    async with AsyncProducer("src", key.jwks(), sqs_client=sqs, client_id="shop") as producer:
        await producer.send(orders[0])
        result = await producer.send_batch(orders[1:])
    assert result.ok and len(result.sent) == 199
    assert {m.attribute(ATTR_CONTENT_TYPE) for m in src.messages()} == {"application/json"}
    settings = WorkerSettings(
        queue_url="src",
        dlq_url="dlq",
        keyset=str(tmp_path / "keyset.json"),
        handler="unused:handle",
        wait_time_s=0,
    )
    worker = Worker(settings, handle, sqs=sqs, kms=kms, keystore=store)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 20
    while worker.stats.handled < 200:
        assert time.monotonic() < deadline and not task.done(), f"{worker.stats.handled} handled"
        await asyncio.sleep(0.01)
    worker.stop()
    await task
    assert sorted(got, key=lambda o: o.customer) == sorted(orders, key=lambda o: o.customer)
    assert built == [Order]  # once, at start-up, for 200 messages
    assert not dlq.messages()


def test_run_handler_sync_runs_a_typed_handler_on_a_model(key: TestKey) -> None:
    got: list[Order] = []

    def handle(order: Order) -> None:
        got.append(order)

    assert run_handler_sync(handle, ORDER, key=key).handled
    assert got == [ORDER]
