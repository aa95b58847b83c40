"""What becomes of a message, as values, and the pure rules that decide it.

The message path (`pipeline`) only *decides*: each step returns one of the outcome values
below, chosen by `Rules`, with no I/O and no event loop, so every rule has a plain unit
test. `settling.Settler` is the one place that carries outcomes out. Also here: the DLQ
attributes (SQS allows ten per message, so they are budgeted) and the retry backoff.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sealq.aws.limits import SQS_MAX_ATTRIBUTES, SQS_MAX_MESSAGE_BYTES, attributes_size
from sealq.envelope.attributes import (
    ATTR_CLIENT_ID,
    ATTR_CONTENT_TYPE,
    ATTR_DETAIL,
    ATTR_FORMAT,
    ATTR_KEY_ID,
    ATTR_REASON,
)
from sealq.errors import OpenError, Reason
from sealq.worker.classify import Reject
from sealq.worker.handler import HandlerRejected, InvalidPayload
from sealq.worker.keycache import KeyRefused, KeyUnavailable
from sealq.worker.payloads import Failure, PayloadFailed


@dataclass(frozen=True, slots=True)
class Delete:
    """Handled: delete from the source queue (batched)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Can never be handled: copy to the DLQ with `reason`, and only then delete."""

    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Try again later: make it visible again in `seconds`. `why` and `detail` are for logs."""

    seconds: int
    why: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Release:
    """Never started (shutdown): hand it back to SQS at once (visibility 0)."""


Outcome = Delete | DeadLetter | RetryAfter | Release

DELETE = Delete()  # the hot path's outcome: one shared value, no allocation per message
RELEASE = Release()
UNKNOWN_KEY = DeadLetter(Reason.UNKNOWN_KEY)


@dataclass(frozen=True, slots=True)
class Rules:
    """The outcome of each way a message can end, given the worker's settings."""

    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    kms_retry_s: int
    rng: random.Random

    def backoff(self, receive_count: int) -> int:
        return backoff_s(receive_count, self.backoff_base_s, self.backoff_max_s, self.rng)

    def rejected(self, verdict: Reject) -> DeadLetter:
        """Classification found it unusable (malformed, expired key, ...): no KMS call, no retry."""
        return DeadLetter(verdict.reason, verdict.detail)

    def unknown_kid(self, kid: str, fresh: bool, next_read_in_s: float) -> Outcome:
        """Unknown only once a keyset read that began after the message arrived still lacks
        the kid (`fresh`); until then it may be a key rotated in a moment ago, so wait for
        the next allowed re-read instead: normal rotation never dead-letters."""
        if fresh:
            return UNKNOWN_KEY
        return RetryAfter(max(1, math.ceil(next_read_in_s)), "unknown-kid", kid)

    def key_failed(self, error: KeyUnavailable | KeyRefused, receive_count: int) -> Outcome:
        """A KMS outage or throttling never uses up a message's attempts, however long it
        lasts. Only a CMK that is missing, disabled or denied (`misconfigured`) counts the
        receive count: that needs an operator, so after max_attempts it is key-unavailable."""
        if isinstance(error, KeyRefused):
            return DeadLetter(Reason.DECRYPT_FAILED, str(error))
        if error.misconfigured and receive_count >= self.max_attempts:
            return DeadLetter(Reason.KEY_UNAVAILABLE, error.code)
        return RetryAfter(self.kms_retry_s, "kms-unavailable", str(error))

    def payload_failed(self, failure: PayloadFailed, receive_count: int) -> Outcome:
        """An S3 payload that cannot be fetched, classified like KMS's failures: gone or
        not ours to read is permanent; S3 refusing us (an operator must act) counts
        attempts; throttling and outages are retried however long they last."""
        match failure.kind:
            case Failure.MISSING:
                return DeadLetter(Reason.PAYLOAD_MISSING, failure.detail)
            case Failure.TOO_LARGE:
                return DeadLetter(Reason.TOO_LARGE, failure.detail)
            case Failure.REFUSED:
                return DeadLetter(Reason.PAYLOAD_UNAVAILABLE, failure.detail)
            case Failure.DENIED if receive_count >= self.max_attempts:
                return DeadLetter(Reason.PAYLOAD_UNAVAILABLE, failure.detail)
        return RetryAfter(self.kms_retry_s, f"s3-{failure.kind.value}", failure.detail)

    def open_failed(self, error: OpenError) -> DeadLetter:
        return DeadLetter(error.reason)

    def unstarted(self) -> Release:
        """Shutdown began before its handler could start: SQS delivers it again at once."""
        return RELEASE

    def after_handler(self, error: BaseException | None, receive_count: int) -> Outcome:
        """Success deletes; HandlerRejected and InvalidPayload (a typed handler's payload
        did not validate: it never will) dead-letter at once; any other exception, or the
        timeout, is retried with backoff until the receive count reaches max_attempts."""
        if error is None:
            return DELETE
        if isinstance(error, InvalidPayload):
            return DeadLetter(Reason.INVALID_PAYLOAD, str(error))
        if isinstance(error, HandlerRejected):
            return DeadLetter(Reason.HANDLER_REJECTED, str(error))
        name = "timeout" if isinstance(error, TimeoutError) else type(error).__name__
        if receive_count >= self.max_attempts:
            return DeadLetter(Reason.HANDLER_ERROR, f"{name} after {receive_count} attempts")
        return RetryAfter(self.backoff(receive_count), "handler-error", name)

    def dead_letter_unsent(self, error_code: str, receive_count: int) -> RetryAfter:
        """The DLQ refused the copy: not in the DLQ, so not deleted; it comes back."""
        return RetryAfter(self.backoff(receive_count), "dlq-send-failed", error_code)

    def dead_letter_unfit(self) -> RetryAfter:
        """Its body is too large for any DLQ copy (not made by sealq, whose producer leaves
        room): retrying soon would only loop, so wait the longest backoff (at least
        UNFIT_RETRY_MIN_S) between deliveries and let SQS's redrive policy move it."""
        return RetryAfter(max(int(self.backoff_max_s), UNFIT_RETRY_MIN_S), "dlq-copy-too-large")

    def internal_error(self, receive_count: int) -> RetryAfter:
        """A bug of ours: keep the message."""
        return RetryAfter(self.backoff(receive_count), "internal-error")


# ----- DLQ attributes and backoff ---------------------------------------------------------

MAX_DETAIL_CHARS = 200
UNFIT_RETRY_MIN_S = 300
"""Visibility for a message whose DLQ copy cannot fit, whatever the backoff settings."""
# Kept first when the original message used up the attribute budget.
_PRIORITY = (ATTR_KEY_ID, ATTR_CLIENT_ID, ATTR_FORMAT, ATTR_CONTENT_TYPE)


def _clean_detail(detail: str) -> str:
    text = "".join(ch if " " <= ch < "\x7f" else "?" for ch in detail)
    return text[:MAX_DETAIL_CHARS]


def dead_letter_attributes(
    original: Mapping[str, Mapping[str, Any]], reason: Reason, detail: str = "", body_bytes: int = 0
) -> dict[str, dict[str, Any]]:
    """The original attributes plus `sealq-reason` (always) and `sealq-detail` (if room),
    within SQS's ten attributes and, with the body (`body_bytes`, UTF-8), its size limit:
    attributes are dropped (detail first, `key-id` last) until the copy fits. If even the
    reason alone does not fit, the result does not either (`sealq.aws.limits.fits` says so)."""
    out = _attributes_within_count(original, reason, detail)
    others = [n for n in reversed(list(out)) if n not in (ATTR_REASON, ATTR_KEY_ID, ATTR_DETAIL)]
    for drop in (ATTR_DETAIL, *others, ATTR_KEY_ID):
        if body_bytes + attributes_size(out) <= SQS_MAX_MESSAGE_BYTES:
            break
        out.pop(drop, None)
    return out


def _attributes_within_count(
    original: Mapping[str, Mapping[str, Any]], reason: Reason, detail: str
) -> dict[str, dict[str, Any]]:
    ours: dict[str, dict[str, Any]] = {ATTR_REASON: {"DataType": "String", "StringValue": reason.value}}
    if detail:
        ours[ATTR_DETAIL] = {"DataType": "String", "StringValue": _clean_detail(detail)}
    names = [n for n in _PRIORITY if n in original]
    names += sorted(n for n in original if n not in _PRIORITY and n not in (ATTR_REASON, ATTR_DETAIL))
    room = SQS_MAX_ATTRIBUTES - len(ours)
    if len(names) > room and ATTR_DETAIL in ours:
        del ours[ATTR_DETAIL]  # the reason matters more than the detail
        room += 1
    kept = {
        n: {k: v for k, v in original[n].items() if k in ("DataType", "StringValue", "BinaryValue")}
        for n in names[:room]
    }
    return {**kept, **ours}


def backoff_s(receive_count: int, base_s: float, cap_s: float, rng: random.Random) -> int:
    """Exponential in the number of receives, with full jitter; whole seconds, as SQS wants."""
    ceiling = min(cap_s, base_s * 2 ** max(receive_count - 1, 0))
    return int(rng.uniform(ceiling / 2, ceiling) + 0.5)
