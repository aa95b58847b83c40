"""Error types and the reason codes the worker records.

Every failure to open a message is one opaque type (`OpenError`) so callers cannot build an
oracle out of *which* check failed; the reason code is for operators and the DLQ, never for
deciding anything cryptographic.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a message could not be handled; the value goes in the `sealq-reason` attribute."""

    MALFORMED = "malformed"
    TOO_LARGE = "too-large"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    KID_MISMATCH = "kid-mismatch"
    UNKNOWN_KEY = "unknown-key"
    KEY_EXPIRED = "key-expired"
    DECRYPT_FAILED = "decrypt-failed"
    HANDLER_REJECTED = "handler-rejected"
    HANDLER_ERROR = "handler-error"


class SealqError(Exception):
    """Base of every error sealq raises on purpose."""


class OpenError(SealqError):
    """A message could not be opened. Deliberately says nothing beyond the reason code."""

    __slots__ = ("reason",)

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"message could not be opened ({reason.value})")
        self.reason = reason


class JwksError(SealqError):
    """The published key set could not be loaded or is not a valid sealq JWKS."""


class NoUsableKeyError(SealqError):
    """No public key is valid right now: every key is expired or not yet valid."""


class MessageTooLargeError(SealqError):
    """The sealed message would exceed the SQS message size limit."""


class InvalidKidError(SealqError, ValueError):
    """A key id does not match sealq's kid pattern."""


class SendError(SealqError):
    """SQS refused or could not be reached for a whole call (not a per-entry failure).

    From `send_batch`, `sent_count` says how many messages of the call SQS had already
    accepted in earlier batches, so a caller does not blindly re-send them all.
    """

    def __init__(self, message: str, *, sent_count: int = 0) -> None:
        super().__init__(message)
        self.sent_count = sent_count
