"""A message moved back from the DLQ by an SQS move task still carries the attributes
dead-lettering added (`sealq-reason`, `sealq-detail`): the handler must not see them as if
the sender had set them."""

from __future__ import annotations

import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_DETAIL, ATTR_KEY_ID, ATTR_REASON, SEALQ_ATTRIBUTES
from sealq.envelope.jwe import seal_at
from sealq.worker.leases import in_flight
from tests.component.test_pool import LIVE, Recorder, Rig, attrs, running, sealing, until


async def test_handler_never_sees_sealqs_own_attributes_on_a_moved_back_message(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "keyset.json")
    private = ec.generate_private_key(ec.SECP256R1())
    rig.add(private, LIVE)
    rig.save()
    token = seal_at(b"order 7", sealing(LIVE, private), time.time())
    labels = {ATTR_REASON: "handler-error", ATTR_DETAIL: "timeout after 5 attempts"}
    moved_back = attrs(LIVE, "shop-eu", **labels)
    message_id = rig.put(token, moved_back)
    plain = rig.put(seal_at(b"order 8", sealing(LIVE, private), time.time()), attrs(LIVE, "shop-us"))
    handler = Recorder()
    async with running(rig.worker(handler)):
        await until(lambda: len(handler.messages) == 2, what="both handled")
    seen = {m.message_id: dict(m.attributes) for m in handler.messages}
    assert seen[message_id] == {ATTR_KEY_ID: LIVE, ATTR_CLIENT_ID: "shop-eu"}
    assert seen[plain] == {ATTR_KEY_ID: LIVE, ATTR_CLIENT_ID: "shop-us"}


def test_received_attributes_drop_only_sealqs_own() -> None:
    raw = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": "b",
        "MessageAttributes": attrs(LIVE, "c", **dict.fromkeys(SEALQ_ATTRIBUTES, "x"), **{"trace": "t-1"}),
    }
    item = in_flight(raw, 0.0, 30)
    assert item.attributes == {ATTR_KEY_ID: LIVE, ATTR_CLIENT_ID: "c", "trace": "t-1"}
    assert set(item.raw_attributes) >= SEALQ_ATTRIBUTES  # the DLQ copy's own budget decides
