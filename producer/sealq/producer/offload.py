"""Sending a sealed message through S3 when it is too large for SQS: the pure half.

The sealed token (ciphertext only) becomes an S3 object under a random key, and SQS carries
the Extended Client pointer to it (`sealq.aws.payloads`) with the message's own attributes,
`key-id` included, so the worker checks the kid before it fetches anything. `Producer` and
`AsyncProducer` do the PutObject calls; what is offloaded, and what the pointer message
looks like, is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sealq.aws.limits import PRODUCER_MAX_MESSAGE_BYTES, SQS_MAX_ATTRIBUTES, message_size
from sealq.aws.payloads import ATTR_PAYLOAD_SIZE, S3Pointer, new_key, pointer_body, size_attribute
from sealq.errors import MessageTooLargeError
from sealq.producer.message import Entry

MAX_OBJECT_BYTES = 5 * 1024**3
"""S3's largest single PutObject."""


@dataclass(frozen=True, slots=True)
class Offload:
    """Where, and when, a producer puts sealed messages in S3 instead of SQS."""

    bucket: str
    prefix: str = ""
    always: bool = False
    """Every message through S3, not only those too large for SQS."""

    def wanted(self, entry: Entry) -> bool:
        return self.always or entry.size > PRODUCER_MAX_MESSAGE_BYTES

    def pointer(self, entry: Entry) -> tuple[S3Pointer, Entry]:
        """A fresh object location for `entry`'s body and the SQS entry pointing at it."""
        if len(entry.attributes) >= SQS_MAX_ATTRIBUTES:
            raise MessageTooLargeError(
                f"message {entry.index} has {len(entry.attributes)} attributes; a message sent "
                f"through S3 needs one of SQS's {SQS_MAX_ATTRIBUTES} for {ATTR_PAYLOAD_SIZE}: drop one"
            )
        if len(entry.body) > MAX_OBJECT_BYTES:  # the token is ASCII: characters are bytes
            raise MessageTooLargeError(f"message {entry.index} is over S3's 5 GiB PutObject limit")
        pointer = S3Pointer(self.bucket, new_key(self.prefix))
        attributes = {**entry.attributes, ATTR_PAYLOAD_SIZE: size_attribute(len(entry.body))}
        body = pointer_body(pointer)
        return pointer, Entry(entry.index, body, attributes, message_size(body, attributes), entry.fifo)
