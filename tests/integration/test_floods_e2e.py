"""`sealq run` on the stand-in under a flood of made-up kids, with the source queue's redrive
policy at maxReceiveCount 5 into the worker's DLQ: every made-up one must reach the DLQ as
`unknown-key` (none moved there unlabelled by SQS), every good one handled.
(Helpers from `test_worker_e2e`.)"""

from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_KEY_ID, ATTR_REASON
from sealq.envelope.jwe import seal_at
from sealq.envelope.jwk import SealingKey, alg_for_key
from tests.integration.test_worker_e2e import Setup, setup, wait_for, worker_process

__all__ = ["setup"]  # the fixture, used by name


def dlq_reasons(s: Setup, expected: int) -> list[str | None]:
    got = s.receive_each(s.dlq_url, expected, 100, VisibilityTimeout=120, MessageAttributeNames=["All"])
    reasons = [(m.get("MessageAttributes") or {}).get(ATTR_REASON) for m in got.values()]
    return [None if r is None else r["StringValue"] for r in reasons]


def test_unknown_kid_flood_is_labelled_before_the_redrive_policy_takes_it(setup: Setup) -> None:
    s = setup
    arn = s.sqs.get_queue_attributes(QueueUrl=s.dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    dlq_arn = arn["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    s.sqs.set_queue_attributes(QueueUrl=s.queue_url, Attributes={"RedrivePolicy": policy})
    stray = ec.generate_private_key(ec.SECP256R1()).public_key()
    bad = 0
    for start in range(0, 240, 10):
        entries = []
        for i in range(start, start + 10):
            if i % 4 == 3:
                body, kid = seal_at(f"good{i}".encode(), s.record.sealing_key(), time.time()), s.record.kid
            else:
                kid = f"p256-20990101-{i:08x}"
                body, bad = seal_at(b"x", SealingKey(kid, alg_for_key(stray), stray), time.time()), bad + 1
            attrs = {
                ATTR_KEY_ID: {"DataType": "String", "StringValue": kid},
                ATTR_CLIENT_ID: {"DataType": "String", "StringValue": "flood"},
            }
            entries.append({"Id": str(i - start), "MessageBody": body.decode(), "MessageAttributes": attrs})
        assert not s.sqs.send_message_batch(QueueUrl=s.queue_url, Entries=entries).get("Failed")
    flags = {"pollers": 4, "concurrency": 16, "max-in-flight": 100, "wait-time-s": 1}
    with worker_process(s, **flags) as run:
        wait_for(lambda: s.depth(s.queue_url) == 0, 60, "source queue drained", run)
        assert run.stop(timeout=20) == 0
    assert len(s.handled_ids()) == 240 - bad
    reasons = dlq_reasons(s, bad)
    assert len(reasons) == bad
    assert reasons.count(None) == 0, f"{reasons.count(None)} moved unlabelled by the redrive policy"
    assert set(reasons) == {"unknown-key"}
