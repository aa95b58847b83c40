"""The S3 pointer format, cross-checked both ways against AWS's Python SQS Extended Client
(amazon-sqs-extended-client, a test dependency), and the pure rules around it."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import boto3.session
import pytest

from sealq.aws.limits import PRODUCER_MAX_MESSAGE_BYTES
from sealq.aws.payloads import (
    ATTR_PAYLOAD_SIZE,
    LEGACY_ATTR_PAYLOAD_SIZE,
    LEGACY_POINTER_CLASS,
    POINTER_CLASS,
    S3Pointer,
    is_offloaded,
    parse_pointer,
    pointer_body,
)
from sealq.envelope.b64 import CHUNK_CHARS, b64url_decode
from sealq.errors import MessageTooLargeError, Reason
from sealq.producer.message import Entry
from sealq.producer.offload import Offload
from sealq.worker.outcomes import DeadLetter, RetryAfter, Rules
from sealq.worker.payloads import Failure, PayloadFailed


@pytest.fixture(scope="module")
def extended() -> Iterator[ModuleType]:
    """amazon-sqs-extended-client's `client` module. Importing the package replaces
    boto3.Session process-wide; that is undone at once so no other test runs on it."""
    saved = (boto3.session.Session, boto3.Session, boto3.DEFAULT_SESSION)
    try:
        import sqs_extended_client.client as module
    finally:
        boto3.session.Session, boto3.Session, boto3.DEFAULT_SESSION = saved
    yield module


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, Body: bytes, Bucket: str, Key: str) -> None:
        self.objects[(Bucket, Key)] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


def _client(module: ModuleType, *, legacy: bool = False) -> Any:
    """The library's functions bound to a stand-in for its patched SQS client."""
    fake = SimpleNamespace(
        large_payload_support="their-bucket", always_through_s3=True, use_legacy_attribute=legacy
    )
    fake.s3_client = FakeS3()
    for name in (
        "get_message_attributes_size",
        "get_string_size_in_bytes",
        "check_message_attributes",
        "is_large",
    ):
        setattr(fake, name, getattr(module, f"_{name}").__get__(fake))
    fake.get_s3_key = module._get_s3_key.__get__(fake)
    fake.get_reserved_attribute_name_if_present = module._get_reserved_attribute_name_if_present.__get__(fake)
    return fake


@pytest.mark.parametrize("legacy", [False, True])
def test_sealq_reads_the_python_extended_clients_pointers(extended: ModuleType, legacy: bool) -> None:
    fake = _client(extended, legacy=legacy)
    attrs = {"key-id": {"DataType": "String", "StringValue": "ec-1"}}
    body, out_attrs = extended._store_message_in_s3(fake, "eyJ.token.body", attrs)
    ((bucket, key),) = fake.s3_client.objects
    assert is_offloaded(out_attrs)
    assert (LEGACY_ATTR_PAYLOAD_SIZE if legacy else ATTR_PAYLOAD_SIZE) in out_attrs
    assert parse_pointer(body) == S3Pointer(bucket, key)
    if not legacy:
        assert body == pointer_body(S3Pointer(bucket, key))  # byte for byte what sealq writes


def test_the_python_extended_client_reads_sealq_pointers(extended: ModuleType) -> None:
    fake = _client(extended)
    entry = Entry(0, "eyJ." + "A" * 100, {"key-id": {"DataType": "String", "StringValue": "ec-1"}}, 0)
    pointer, sent = Offload("our-bucket", "p/", always=True).pointer(entry)
    fake.s3_client.objects[(pointer.bucket, pointer.key)] = entry.body.encode()
    assert extended._retrieve_message_from_s3(fake, sent.body) == entry.body
    assert fake.get_reserved_attribute_name_if_present(sent.attributes) == extended.RESERVED_ATTRIBUTE_NAME
    assert sent.attributes[ATTR_PAYLOAD_SIZE] == {"DataType": "Number", "StringValue": str(len(entry.body))}
    assert (extended.MESSAGE_POINTER_CLASS, extended.LEGACY_MESSAGE_POINTER_CLASS) == (
        POINTER_CLASS,
        LEGACY_POINTER_CLASS,
    )


@pytest.mark.parametrize(
    "body",
    [
        "eyJhbGciOi.x.y.z.w",
        "[]",
        '["software.amazon.payloadoffloading.PayloadS3Pointer"]',
        '["some.other.Class", {"s3BucketName": "b-1", "s3Key": "k"}]',
        json.dumps([POINTER_CLASS, {"s3BucketName": "Bad_Bucket", "s3Key": "k"}]),
        json.dumps([POINTER_CLASS, {"s3BucketName": "ok-bucket", "s3Key": ""}]),
        json.dumps([POINTER_CLASS, {"s3BucketName": "ok-bucket", "s3Key": 7}]),
        json.dumps([POINTER_CLASS, {"s3BucketName": "ok-bucket", "s3Key": "k" * 1025}]),
    ],
)
def test_what_is_not_a_pointer_says_why(body: str) -> None:
    assert isinstance(parse_pointer(body), str)


def test_extra_pointer_fields_are_ignored_as_jackson_does() -> None:
    body = json.dumps([POINTER_CLASS, {"s3BucketName": "ok-bucket", "s3Key": "k", "future": 1}])
    assert parse_pointer(body) == S3Pointer("ok-bucket", "k")


def test_offload_keys_are_random_and_leave_no_attribute_to_spare() -> None:
    entry = Entry(3, "tok", {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(9)}, 0)
    offload = Offload("b-1", "pre/")
    assert not offload.wanted(Entry(0, "", {}, PRODUCER_MAX_MESSAGE_BYTES))
    assert offload.wanted(Entry(0, "", {}, PRODUCER_MAX_MESSAGE_BYTES + 1))
    keys = {offload.pointer(entry)[0].key for _ in range(3)}
    assert len(keys) == 3 and all(k.startswith("pre/") for k in keys)
    entry.attributes["a9"] = {"DataType": "String", "StringValue": "v"}
    with pytest.raises(MessageTooLargeError, match="ExtendedPayloadSize"):
        offload.pointer(entry)


RULES = Rules(max_attempts=3, backoff_base_s=1, backoff_max_s=10, kms_retry_s=15, rng=random.Random(1))


@pytest.mark.parametrize(
    ("kind", "count", "expected"),
    [
        (Failure.MISSING, 1, DeadLetter(Reason.PAYLOAD_MISSING, "d")),
        (Failure.TOO_LARGE, 1, DeadLetter(Reason.TOO_LARGE, "d")),
        (Failure.REFUSED, 1, DeadLetter(Reason.PAYLOAD_UNAVAILABLE, "d")),
        (Failure.DENIED, 2, RetryAfter(15, "s3-denied", "d")),
        (Failure.DENIED, 3, DeadLetter(Reason.PAYLOAD_UNAVAILABLE, "d")),
        (Failure.UNAVAILABLE, 1000, RetryAfter(15, "s3-unavailable", "d")),
    ],
)
def test_payload_failures_end_like_kms_failures(kind: Failure, count: int, expected: object) -> None:
    assert RULES.payload_failed(PayloadFailed(kind, "d"), count) == expected


PIECE = CHUNK_CHARS * 3 // 4  # bytes that encode to one piece


@pytest.mark.parametrize("size", [PIECE * 2, PIECE * 2 + 1, PIECE * 2 + 2])
def test_megabyte_base64url_decodes_in_pieces_exactly_as_in_one(size: int) -> None:
    data = random.Random(size).randbytes(size)
    encoded = base64.urlsafe_b64encode(data).rstrip(b"=")
    assert len(encoded) > CHUNK_CHARS and b64url_decode(encoded) == data
    with pytest.raises(ValueError, match="not base64url"):  # strict in a later piece too
        b64url_decode(encoded[: CHUNK_CHARS + 8] + b"*" + encoded[CHUNK_CHARS + 9 :])
    with pytest.raises(ValueError, match="not base64url"):
        b64url_decode(encoded[: len(encoded) - len(encoded) % 4] + b"A")  # one char left over
