"""Every error sealq raises on purpose, and the reason codes the worker records.

Catch `SealqError` for all of them. Each message says what to do next; the CLI prints it
as one line (`sealq: error: ...`). Classes with no dependencies live here; the others are
defined where they are raised (module in brackets) and importable from there::

    SealqError
    ├── OpenError                  a message could not be opened; `.reason` is a `Reason`
    ├── JwksError                  the published key set cannot be read or is not valid
    │   └── SignedJwksError        a signed key set was refused (`verify_with`); never used
    │       ├── UnsignedJwksError        the document is a plain JWKS, not a signed one
    │       ├── JwsProfileError          not a compact JWS of sealq's profile (alg, typ, header)
    │       ├── UntrustedSignerError     signed by a key that is not pinned
    │       ├── BadSignatureError        the signature does not verify (altered after signing)
    │       ├── SignedJwksExpiredError   past its `exp`
    │       └── JwksRollbackError        older `version` than one this process already accepted
    ├── PinnedKeyError             a `verify_with` key cannot be used (also ValueError)
    ├── NoUsableKeyError           every published key is expired or not yet valid
    ├── MessageTooLargeError       the sealed message would not fit in an SQS message
    ├── InvalidKidError            a key id does not match sealq's pattern (also ValueError)
    ├── InvalidAttributeError      a message attribute SQS would reject, e.g. empty (also ValueError)
    ├── SendError                  SQS refused or was unreachable for a whole call
    ├── FifoError                  a group / deduplication id missing, malformed or not for this queue
    ├── MissingExtraError          a feature needs `sealq[async]` / `sealq[worker]` (also ImportError)
    ├── SettingsError              [sealq.worker.settings] worker flags / SEALQ_* invalid
    ├── HandlerLoadError           [sealq.worker.handler] --handler cannot be imported or called
    ├── HandlerRejected            [sealq.worker.handler] raised BY your handler: dead-letter this message
    ├── InvalidPayload             [sealq.worker.handler] typed payload did not validate: invalid-payload
    ├── KeysetError                [sealq.keys.store] the keyset cannot be read or written
    │   └── KeysetNotFoundError    no keyset at that location yet
    ├── QueueAccessError           [sealq.dlq.scan] a dlq command cannot read a queue's attributes
    ├── NotADeadLetterQueueError   [sealq.dlq.scan] --dlq-url names a work queue (it has a redrive policy)
    ├── SameQueueError             [sealq.dlq.operations] redrive's --dlq-url and --queue-url are one queue
    ├── OperationFailedError       [sealq.dlq.operations] an AWS call failed part way; says how much was done
    ├── UnknownKidError            [sealq.keys.keyset] no such kid in the keyset (also LookupError)
    ├── KeyShreddedError           [sealq.keys.kms] the key's private half was erased (also LookupError)
    ├── SignerKeyError             [sealq.keys.signing] --sign-with is not an ECC_NIST_P256 SIGN_VERIFY key
    ├── KeyMismatchError           [sealq.keys.kms] the unwrapped private key does not match the public key
    ├── KeyBindingError            [sealq.keys.kms] KMS ReEncrypt of a new key failed (e.g. denied)
    └── StandInError               [sealq.demo.standin] the local AWS stand-in failed (also RuntimeError)

Every failure to open a message is one opaque type (`OpenError`) so callers cannot build an
oracle out of *which* check failed; the reason code is for operators and the DLQ, never for
deciding anything cryptographic. tests/unit/test_layout.py checks that every exception class
in sealq is in this tree or is an internal control-flow signal it lists.
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
    KEY_UNAVAILABLE = "key-unavailable"
    PAYLOAD_MISSING = "payload-missing"
    """Sent through S3, and the object is not there (deleted, expired by a lifecycle rule)."""
    PAYLOAD_UNAVAILABLE = "payload-unavailable"
    """Sent through S3, and the worker may not fetch it (bucket not allowed, access denied)."""
    HANDLER_REJECTED = "handler-rejected"
    HANDLER_ERROR = "handler-error"
    INVALID_PAYLOAD = "invalid-payload"
    """A typed handler's payload did not validate (`sealq.worker.typed`)."""


class SealqError(Exception):
    """Base of every error sealq raises on purpose."""


class OpenError(SealqError):
    """A message could not be opened. Deliberately says nothing beyond the reason code; the
    worker dead-letters it with that code, so look at `sealq dlq stats` for the pattern."""

    __slots__ = ("reason",)

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"message could not be opened ({reason.value})")
        self.reason = reason


class JwksError(SealqError):
    """The published key set could not be loaded or is not a valid sealq JWKS."""


class SignedJwksError(JwksError):
    """A signed key set was refused; the producer seals nothing with it."""


class UnsignedJwksError(SignedJwksError):
    """`verify_with` pins a signer but the document is a plain, unsigned JWKS."""


class JwsProfileError(SignedJwksError):
    """Not a compact JWS of sealq's profile: alg ES256, typ sealq-jwks+jws, kid, nothing else."""


class UntrustedSignerError(SignedJwksError):
    """The key set is signed by a key that is not among the pinned ones."""


class BadSignatureError(SignedJwksError):
    """The signature does not verify under the pinned key its kid names: altered after signing."""


class SignedJwksExpiredError(SignedJwksError):
    """The signed key set is past its `exp`: the publisher must sign a fresh one."""


class JwksRollbackError(SignedJwksError):
    """The signed key set's `version` is older than one this process already accepted."""


class PinnedKeyError(SealqError, ValueError):
    """A key given as `verify_with` / `--verify-with` is not a usable P-256 public key."""


class NoUsableKeyError(SealqError):
    """No public key is valid right now: every key is expired or not yet valid."""


class MessageTooLargeError(SealqError):
    """The sealed message would exceed the SQS message size limit."""


class InvalidKidError(SealqError, ValueError):
    """A key id does not match sealq's kid pattern."""


class InvalidAttributeError(SealqError, ValueError):
    """A message attribute value SQS would reject (an empty one); raised before any call."""


class FifoError(SealqError, ValueError):
    """A FIFO parameter SQS would refuse: no group id for a FIFO queue, a deduplication id
    for a standard queue, or a malformed id; raised before any call."""


class SendError(SealqError):
    """SQS refused or could not be reached for a whole call (not a per-entry failure).

    From `send_batch`, `sent_count` says how many messages of the call SQS had already
    accepted in earlier batches, so a caller does not blindly re-send them all.
    """

    def __init__(self, message: str, *, sent_count: int = 0) -> None:
        super().__init__(message)
        self.sent_count = sent_count


class MissingExtraError(SealqError, ImportError):
    """A feature needs an optional extra that is not installed (see `sealq.extras`)."""

    def __init__(self, feature: str, extra: str, missing: tuple[str, ...]) -> None:
        super().__init__(f"{feature} needs the {extra} extra: pip install 'sealq[{extra}]'")
        self.feature = feature
        self.extra = extra
        self.missing = missing
