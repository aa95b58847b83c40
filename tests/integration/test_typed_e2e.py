"""Typed handlers against the stand-in over HTTP: `Producer.send`/`send_batch` of pydantic
models, a worker whose handler declares the model type, equal models out; an invalid one
lands in the real DLQ as `invalid-payload` with its field paths and none of its values."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from pydantic import BaseModel

from sealq.envelope.attributes import ATTR_CONTENT_TYPE, ATTR_DETAIL, ATTR_REASON
from sealq.keys.keyset import Keyset
from sealq.keys.store import KeysetStore
from sealq.producer import OutgoingMessage, Producer
from sealq.worker.app import open_clients
from sealq.worker.handler import Message
from sealq.worker.pool import Worker
from tests.integration import test_worker_e2e
from tests.integration.test_worker_e2e import Setup, running

setup = test_worker_e2e.setup  # the fixture: queues, a DLQ, a CMK and a key in a keyset


class Line(BaseModel):
    sku: str
    qty: int


class Order(BaseModel):
    customer: str
    lines: list[Line]


SECRET = "card-4111-1111"


async def test_models_sent_by_the_producer_arrive_as_equal_models(setup: Setup) -> None:
    s = setup
    orders = [Order(customer=f"c{i}", lines=[Line(sku=f"S{i}", qty=i + 1)]) for i in range(5)]
    jwks = Keyset().with_record(s.record).jwks(datetime.now(UTC))
    producer = Producer(s.queue_url, jwks, sqs_client=s.sqs, client_id="typed-e2e")
    producer.send(orders[0])
    assert producer.send_batch(orders[1:]).ok
    producer.send(OutgoingMessage(f'{{"customer": "{SECRET}", "lines": [{{"qty": 1}}]}}'))
    got: list[tuple[Order, str | None]] = []

    async def handle(order: Order, message: Message) -> None:
        got.append((order, message.content_type))

    async with AsyncExitStack() as stack:
        sqs, kms = await open_clients(stack)
        worker = Worker(s.in_process_settings(), handle, sqs=sqs, kms=kms, keystore=KeysetStore(s.keyset))
        async with running(worker):
            deadline = time.monotonic() + 20
            while worker.stats.handled < 5 or worker.stats.dead_lettered_total < 1:
                assert time.monotonic() < deadline, f"{worker.stats.handled} handled"
                await asyncio.sleep(0.05)
    assert sorted(o.customer for o, _ in got) == [o.customer for o in orders]
    assert {o.customer: o for o, _ in got} == {o.customer: o for o in orders}
    assert {content_type for _, content_type in got} == {"application/json"}
    (copy,) = s.receive_each(s.dlq_url, 1, 5, MessageAttributeNames=["All"], VisibilityTimeout=0).values()
    attributes = {name: value["StringValue"] for name, value in copy["MessageAttributes"].items()}
    assert attributes[ATTR_REASON] == "invalid-payload"
    assert attributes[ATTR_DETAIL] == "lines.0.sku: missing"
    assert ATTR_CONTENT_TYPE not in attributes  # sent as a str: no content type claimed
    assert SECRET not in repr(copy)
