"""The pointer AWS's SQS Extended Client libraries send for a payload kept in S3: pure.

A message too large for SQS travels as an S3 object and a small SQS message pointing at it.
sealq writes and reads the Extended Clients' own format, so their tools recognise sealq's
large messages and sealq opens theirs (read from amazon-sqs-extended-client 1.0.1's
`client.py` and the Java client's `SQSExtendedClientConstants` / `PayloadS3Pointer`):

- the body is the JSON array `["software.amazon.payloadoffloading.PayloadS3Pointer",
  {"s3BucketName": ..., "s3Key": ...}]` (Jackson's wrapper-array typing in Java; older Java
  clients name the class `com.amazon.sqs.javamessaging.MessageS3Pointer`);
- the `ExtendedPayloadSize` attribute (DataType Number) holds the payload's size in bytes;
  the legacy name `SQSLargePayloadSize` (Python's `use_legacy_attribute`) is accepted too.

Only the attribute marks a pointer (as in both clients), so an inline token never pays for
a JSON parse. The object holds the sealed token, never plaintext; its key is random.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
ATTR_PAYLOAD_SIZE = "ExtendedPayloadSize"
LEGACY_ATTR_PAYLOAD_SIZE = "SQSLargePayloadSize"
MAX_S3_KEY_BYTES = 1024
"""S3's limit on an object key (UTF-8)."""
MAX_POINTER_BYTES = 4096
"""A pointer body is two short names; anything longer is not one."""


@dataclass(frozen=True, slots=True)
class S3Pointer:
    bucket: str
    key: str


def is_offloaded(attributes: Mapping[str, Any]) -> bool:
    """Whether a message's attributes (name -> value, any shape) mark it as an S3 pointer."""
    return ATTR_PAYLOAD_SIZE in attributes or LEGACY_ATTR_PAYLOAD_SIZE in attributes


def new_key(prefix: str = "") -> str:
    """A fresh object key: random, never derived from the content."""
    return f"{prefix}{uuid.uuid4()}"


def pointer_body(pointer: S3Pointer) -> str:
    """The SQS body for `pointer`, as the Python Extended Client writes it (json.dumps)."""
    return json.dumps([POINTER_CLASS, {"s3BucketName": pointer.bucket, "s3Key": pointer.key}])


def size_attribute(payload_bytes: int) -> dict[str, str]:
    """The `ExtendedPayloadSize` attribute value for a payload of this many bytes."""
    return {"DataType": "Number", "StringValue": str(payload_bytes)}


def parse_pointer(body: str) -> S3Pointer | str:
    """The pointer in an offloaded message's body, or why it is not one (for `sealq-detail`)."""
    if len(body) > MAX_POINTER_BYTES:
        return "pointer body too long"
    try:
        value = json.loads(body)
    except ValueError:
        return "pointer body is not JSON"
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], dict)):
        return "pointer body is not [class, {s3BucketName, s3Key}]"
    cls, fields = value
    if cls not in (POINTER_CLASS, LEGACY_POINTER_CLASS):
        return "unknown pointer class"
    bucket, key = fields.get("s3BucketName"), fields.get("s3Key")
    if not isinstance(bucket, str) or not _BUCKET_CHARS.issuperset(bucket) or not 3 <= len(bucket) <= 63:
        return "pointer has no valid s3BucketName"
    if not isinstance(key, str) or not key or len(key.encode()) > MAX_S3_KEY_BYTES:
        return "pointer has no valid s3Key"
    return S3Pointer(bucket, key)


_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
"""S3 bucket names: lowercase letters, digits, dots and hyphens, 3 to 63 of them."""
