"""Payloads through S3 against the stand-ins over HTTP: a 5 MiB message from sealq's
Producer, a message made by AWS's Python SQS Extended Client (its body a token sealed by
jwcrypto), and a pointer whose object is gone, all through one in-process worker."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

import boto3
import boto3.session
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk

from sealq.aws.clients import client
from sealq.aws.payloads import ATTR_PAYLOAD_SIZE, S3Pointer, parse_pointer, pointer_body
from sealq.envelope.attributes import ATTR_DETAIL, ATTR_KEY_ID, ATTR_REASON
from sealq.envelope.jwk import public_key_to_jwk
from sealq.keys.store import KeysetStore
from sealq.producer import Producer
from sealq.worker.app import open_clients, open_s3
from sealq.worker.handler import Message
from sealq.worker.pool import Worker
from tests.integration.test_worker_e2e import Setup, running, setup  # noqa: F401 - the fixture

FIVE_MIB = 5 * 1024 * 1024


def extended_client_sqs(bucket: str) -> Any:
    """An SQS client patched by amazon-sqs-extended-client, sending every body through S3.
    Its import replaces boto3.Session process-wide; that is undone at once."""
    saved = (boto3.session.Session, boto3.Session, boto3.DEFAULT_SESSION)
    try:
        from sqs_extended_client import SQSExtendedClientSession
    finally:
        boto3.session.Session, boto3.Session, boto3.DEFAULT_SESSION = saved
    sqs = SQSExtendedClientSession().client("sqs")
    sqs.large_payload_support = bucket
    sqs.always_through_s3 = True
    return sqs


def jwcrypto_token(s: Setup, plaintext: bytes) -> str:
    """A token sealed by jwcrypto with sealq's profile, to the published key."""
    public = jc_jwk.JWK(**public_key_to_jwk(s.record.public_key_object(), s.record.kid))
    header = {"alg": s.record.alg.value, "enc": "A256GCM", "kid": s.record.kid, "iat": int(time.time())}
    message = jc_jwe.JWE(plaintext, protected=json.dumps(header))
    message.add_recipient(public)
    return str(message.serialize(compact=True))


async def test_payloads_through_s3_round_trip_and_a_missing_one_is_dead_lettered(setup: Setup) -> None:  # noqa: F811
    s = setup
    s3 = client("s3")
    bucket = f"sealq-e2e-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    now = int(time.time())
    public = s.record.public_key_object()
    jwks = {"keys": [public_key_to_jwk(public, s.record.kid, not_before=now - 60, expires_at=now + 3600)]}
    big = os.urandom(FIVE_MIB)
    Producer(s.queue_url, jwks, s3_bucket=bucket, s3_prefix="big/").send(big)
    theirs = extended_client_sqs(bucket).send_message(
        QueueUrl=s.queue_url,
        MessageBody=jwcrypto_token(s, b"sealed by jwcrypto, sent by the Extended Client"),
        MessageAttributes={ATTR_KEY_ID: {"DataType": "String", "StringValue": s.record.kid}},
    )
    assert len(s3.list_objects_v2(Bucket=bucket)["Contents"]) == 2  # both went through S3
    gone = pointer_body(S3Pointer(bucket, "big/never-uploaded"))
    s.sqs.send_message(
        QueueUrl=s.queue_url,
        MessageBody=gone,
        MessageAttributes={
            ATTR_KEY_ID: {"DataType": "String", "StringValue": s.record.kid},
            ATTR_PAYLOAD_SIZE: {"DataType": "Number", "StringValue": "100"},
        },
    )
    seen: dict[str, bytes] = {}

    async def handle(message: Message) -> None:
        seen[message.message_id] = message.plaintext

    settings = s.in_process_settings().model_copy(update={"payload_buckets": bucket})
    async with AsyncExitStack() as stack:
        sqs, kms = await open_clients(stack)
        worker = Worker(
            settings,
            handle,
            sqs=sqs,
            kms=kms,
            keystore=KeysetStore(s.keyset),
            s3=await open_s3(stack, settings),
        )
        async with running(worker):
            deadline = time.monotonic() + 30
            payloads = worker.payloads
            assert payloads is not None
            while not (len(seen) == 2 and worker.stats.dead_lettered_total == 1 and payloads.deleted == 2):
                assert time.monotonic() < deadline, (len(seen), payloads.deleted, worker.stats.dead_lettered)
                await asyncio.sleep(0.1)
    assert sorted(seen.values(), key=len) == [b"sealed by jwcrypto, sent by the Extended Client", big]
    assert theirs["MessageId"] in seen
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # deleted after handling
    (copy,) = s.receive_each(s.dlq_url, 1, 5, MessageAttributeNames=["All"]).values()
    assert copy["Body"] == gone and parse_pointer(copy["Body"]) == S3Pointer(bucket, "big/never-uploaded")
    attributes = copy["MessageAttributes"]
    assert attributes[ATTR_REASON]["StringValue"] == "payload-missing"
    assert attributes[ATTR_DETAIL]["StringValue"] == "NoSuchKey"
    assert s.depth(s.queue_url) == 0
