"""SQS's limits, and message size counted the way SQS counts it: the one place that knows.

SQS charges the body plus, for each message attribute, its name, its data type and its value
against the message size limit, all in UTF-8 bytes (binary values by their length). The
producer, the worker's dead-lettering and the DLQ tools all size messages through here, so
they cannot disagree about what fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SQS_MAX_MESSAGE_BYTES = 1024 * 1024
"""Body plus attributes, per message."""
SQS_MAX_BATCH_BYTES = 1024 * 1024
"""All entries of one SendMessageBatch together."""
SQS_MAX_BATCH_ENTRIES = 10
"""Entries per batch call, and messages per ReceiveMessage."""
SQS_MAX_ATTRIBUTES = 10
"""Message attributes per message."""
DLQ_HEADROOM_BYTES = 512
"""What a sealq producer leaves free below SQS_MAX_MESSAGE_BYTES, so the worker's dead-letter
copy of any message it made still fits with its reason: `sealq-reason` costs 12 (name) + 6
("String") + its value (at most 21 bytes today; 64 allowed for), `sealq-detail` 12 + 6 + at
most 200 bytes; 300 in all, rounded up to 512 so reasons added later need no producer change.
That is 0.05% of the limit."""
PRODUCER_MAX_MESSAGE_BYTES = SQS_MAX_MESSAGE_BYTES - DLQ_HEADROOM_BYTES
"""The largest message (body plus attributes) a sealq producer sends."""


def attribute_size(name: str, value: Mapping[str, Any]) -> int:
    """What one message attribute (`{"DataType": ..., "StringValue"|"BinaryValue": ...}`) costs."""
    size = len(name.encode()) + len(str(value.get("DataType", "")).encode())
    if "StringValue" in value:
        return size + len(str(value["StringValue"]).encode())
    binary = value.get("BinaryValue")
    return size + (len(binary) if binary is not None else 0)


def attributes_size(attributes: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(attribute_size(name, value) for name, value in attributes.items())


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """Bytes SQS counts for a message with these attributes."""
    return len(body.encode()) + (attributes_size(attributes) if attributes else 0)


def fits(body: str, attributes: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
    """Whether SQS takes a message with this body and these attributes, size-wise."""
    return message_size(body, attributes) <= SQS_MAX_MESSAGE_BYTES


def string_attributes_size(attributes: Mapping[str, str]) -> int:
    """`attributes_size` for plain String attributes given as name -> value."""
    return sum(len(n.encode()) + 6 + len(v.encode()) for n, v in attributes.items())  # 6: "String"


def entry_size(entry: Mapping[str, Any]) -> int:
    """A SendMessage(Batch) entry's size, from its `MessageBody` and `MessageAttributes`."""
    return message_size(str(entry["MessageBody"]), entry.get("MessageAttributes"))
