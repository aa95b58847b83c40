"""The client side: load the published public keys, seal, send to SQS. Seals only.

`Producer` needs only the base install (boto3, cryptography); `AsyncProducer` needs
`sealq[async]`. Nothing here can open a message or touch a private key, and nothing here
imports the worker side. `verify_with=` pins the signer of a signed key set
(sealq.producer.pins for the accepted shapes, sealq.producer.signed for the checks).
"""

from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_CONTENT_TYPE, ATTR_KEY_ID
from sealq.errors import (
    InvalidKidError,
    JwksError,
    MessageTooLargeError,
    NoUsableKeyError,
    PinnedKeyError,
    SealqError,
    SendError,
    SignedJwksError,
)
from sealq.producer.async_producer import AsyncProducer
from sealq.producer.jwks import PublicKeySet, choose_key, parse_jwks
from sealq.producer.message import BatchResult, FailedEntry, OutgoingMessage, SentEntry
from sealq.producer.pins import load_pins, thumbprint
from sealq.producer.sync_producer import Producer

__all__ = [
    "ATTR_CLIENT_ID",
    "ATTR_CONTENT_TYPE",
    "ATTR_KEY_ID",
    "AsyncProducer",
    "BatchResult",
    "FailedEntry",
    "InvalidKidError",
    "JwksError",
    "MessageTooLargeError",
    "NoUsableKeyError",
    "OutgoingMessage",
    "PinnedKeyError",
    "Producer",
    "PublicKeySet",
    "SealqError",
    "SendError",
    "SentEntry",
    "SignedJwksError",
    "choose_key",
    "load_pins",
    "parse_jwks",
    "thumbprint",
]
