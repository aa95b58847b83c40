"""sealq client side: the wire format, the published key set, and sending to SQS.

Never imports `worker`: a client installs this and nothing that can touch private keys.
"""

from .async_producer import AsyncProducer
from .errors import (
    InvalidKidError,
    JwksError,
    MessageTooLargeError,
    NoUsableKeyError,
    OpenError,
    Reason,
    SealqError,
    SendError,
)
from .jwe import OpeningKey, ParsedToken, decrypt, open_token, parse, seal, seal_at
from .jwk import ENC, Alg, SealingKey, jwk_to_sealing_key, public_key_to_jwk, validate_kid
from .jwks import PublicKeySet, choose_key, parse_jwks
from .message import (
    ATTR_CLIENT_ID,
    ATTR_CONTENT_TYPE,
    ATTR_FORMAT,
    ATTR_KEY_ID,
    BatchResult,
    FailedEntry,
    OutgoingMessage,
    SentEntry,
)
from .raw import RAW_FORMAT, open_raw, seal_raw
from .sync_producer import Producer

__all__ = [
    "ATTR_CLIENT_ID",
    "ATTR_CONTENT_TYPE",
    "ATTR_FORMAT",
    "ATTR_KEY_ID",
    "ENC",
    "RAW_FORMAT",
    "Alg",
    "AsyncProducer",
    "BatchResult",
    "FailedEntry",
    "InvalidKidError",
    "JwksError",
    "MessageTooLargeError",
    "NoUsableKeyError",
    "OpenError",
    "OpeningKey",
    "OutgoingMessage",
    "ParsedToken",
    "Producer",
    "PublicKeySet",
    "Reason",
    "SealingKey",
    "SealqError",
    "SendError",
    "SentEntry",
    "choose_key",
    "decrypt",
    "jwk_to_sealing_key",
    "open_raw",
    "open_token",
    "parse",
    "parse_jwks",
    "public_key_to_jwk",
    "seal",
    "seal_at",
    "seal_raw",
    "validate_kid",
]
