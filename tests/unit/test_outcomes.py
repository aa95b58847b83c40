"""Outcome rules, without an event loop: every way a message can end gives one specific
value. And the DLQ attributes: the reason always fits, within SQS's count and size limits."""

from __future__ import annotations

import random

import pytest

from sealq.aws.limits import DLQ_HEADROOM_BYTES, SQS_MAX_MESSAGE_BYTES, attribute_size, attributes_size, fits
from sealq.envelope.attributes import ATTR_DETAIL, ATTR_REASON
from sealq.errors import OpenError, Reason
from sealq.worker.classify import Reject
from sealq.worker.handler import HandlerRejected
from sealq.worker.keycache import KeyRefused, KeyUnavailable
from sealq.worker.outcomes import (
    MAX_DETAIL_CHARS,
    UNFIT_RETRY_MIN_S,
    DeadLetter,
    Delete,
    Release,
    RetryAfter,
    Rules,
    dead_letter_attributes,
)


def rules(max_attempts: int = 3, backoff_s: float = 8.0, kms_retry_s: int = 15) -> Rules:
    return Rules(
        max_attempts=max_attempts,
        backoff_base_s=backoff_s,
        backoff_max_s=backoff_s,
        kms_retry_s=kms_retry_s,
        rng=random.Random(7),
    )


# ----- the handler --------------------------------------------------------------------------


def test_success_deletes() -> None:
    assert rules().after_handler(None, 1) == Delete()


def test_handler_rejected_dead_letters_at_once_whatever_the_attempt() -> None:
    outcome = rules(max_attempts=5).after_handler(HandlerRejected("order failed validation"), 1)
    assert outcome == DeadLetter(Reason.HANDLER_REJECTED, "order failed validation")


@pytest.mark.parametrize("receive_count", [1, 2])
def test_handler_error_below_max_attempts_retries_with_backoff(receive_count: int) -> None:
    outcome = rules(max_attempts=3, backoff_s=8.0).after_handler(RuntimeError("down"), receive_count)
    assert isinstance(outcome, RetryAfter)
    assert (outcome.why, outcome.detail) == ("handler-error", "RuntimeError")
    assert 4 <= outcome.seconds <= 8  # the backoff (capped at 8 s, full jitter), not 0, not KMS's


@pytest.mark.parametrize("receive_count", [3, 4])
def test_handler_error_at_max_attempts_dead_letters(receive_count: int) -> None:
    outcome = rules(max_attempts=3).after_handler(RuntimeError("down"), receive_count)
    assert outcome == DeadLetter(Reason.HANDLER_ERROR, f"RuntimeError after {receive_count} attempts")


def test_handler_timeout_is_named_and_retried() -> None:
    outcome = rules().after_handler(TimeoutError(), 1)
    assert isinstance(outcome, RetryAfter) and outcome.detail == "timeout"


def test_shutdown_before_the_handler_started_releases() -> None:
    assert rules().unstarted() == Release()


# ----- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 3])
@pytest.mark.parametrize("receive_count", [1, 3, 4, 10_000])
@pytest.mark.parametrize(
    "code", ["ThrottlingException", "KMSInternalException", "EndpointConnectionError", "ReadTimeoutError", ""]
)
def test_kms_unavailable_retries_after_the_kms_delay_never_dead_letters(
    max_attempts: int, receive_count: int, code: str
) -> None:
    # Throttling, an outage or a lost connection never uses up attempts: even with
    # max_attempts=1 (every delivery is the last attempt), at any receive count, it is a retry.
    error = KeyUnavailable(f"KMS Decrypt for ec-live failed: {code}", code)
    outcome = rules(max_attempts=max_attempts, kms_retry_s=15).key_failed(error, receive_count)
    assert outcome == RetryAfter(15, "kms-unavailable", str(error))


MISCONFIGURED = [
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "AccessDeniedException",
]


@pytest.mark.parametrize("code", MISCONFIGURED)
@pytest.mark.parametrize("receive_count", [1, 2])
def test_misconfigured_cmk_below_max_attempts_retries_after_the_kms_delay(
    code: str, receive_count: int
) -> None:
    error = KeyUnavailable(f"KMS Decrypt for ec-live failed: {code}", code)
    outcome = rules(max_attempts=3, kms_retry_s=15).key_failed(error, receive_count)
    assert outcome == RetryAfter(15, "kms-unavailable", str(error))


@pytest.mark.parametrize("code", MISCONFIGURED)
@pytest.mark.parametrize("receive_count", [3, 4, 50])
def test_misconfigured_cmk_at_max_attempts_dead_letters_key_unavailable_with_the_code(
    code: str, receive_count: int
) -> None:
    error = KeyUnavailable(f"KMS Decrypt for ec-live failed: {code}", code)
    outcome = rules(max_attempts=3).key_failed(error, receive_count)
    assert outcome == DeadLetter(Reason.KEY_UNAVAILABLE, code)


def test_kms_refusing_the_wrapped_key_dead_letters_decrypt_failed() -> None:
    error = KeyRefused("KMS refused the wrapped key for ec-live: InvalidCiphertextException")
    assert rules().key_failed(error, 1) == DeadLetter(Reason.DECRYPT_FAILED, str(error))


@pytest.mark.parametrize("fresh", [False, True])
def test_unknown_kid_retries_until_a_fresh_keyset_read_then_is_unknown_key(fresh: bool) -> None:
    outcome = rules().unknown_kid("ec-new", fresh, next_read_in_s=0.3)
    if fresh:
        assert outcome == DeadLetter(Reason.UNKNOWN_KEY)
    else:
        assert outcome == RetryAfter(1, "unknown-kid", "ec-new")  # whole seconds, at least one


def test_unknown_kid_waits_for_the_rate_limit() -> None:
    assert rules().unknown_kid("ec-new", False, next_read_in_s=2.2) == RetryAfter(3, "unknown-kid", "ec-new")


# ----- classification and opening --------------------------------------------------------


@pytest.mark.parametrize("reason", [Reason.MALFORMED, Reason.KEY_EXPIRED, Reason.KID_MISMATCH])
def test_rejected_by_classification_dead_letters_with_its_reason(reason: Reason) -> None:
    assert rules().rejected(Reject(reason, "why")) == DeadLetter(reason, "why")


@pytest.mark.parametrize("reason", [Reason.DECRYPT_FAILED, Reason.MALFORMED, Reason.TOO_LARGE])
def test_open_error_dead_letters_with_its_reason(reason: Reason) -> None:
    assert rules().open_failed(OpenError(reason)) == DeadLetter(reason)


# ----- settling -------------------------------------------------------------------------------


def test_dlq_send_failure_is_a_retry_not_a_delete() -> None:
    outcome = rules(backoff_s=8.0).dead_letter_unsent("ServiceUnavailable", 1)
    assert isinstance(outcome, RetryAfter) and not isinstance(outcome, Delete)
    assert (outcome.why, outcome.detail) == ("dlq-send-failed", "ServiceUnavailable")
    assert 4 <= outcome.seconds <= 8


def test_a_bug_of_ours_keeps_the_message() -> None:
    outcome = rules(backoff_s=8.0).internal_error(2)
    assert isinstance(outcome, RetryAfter) and outcome.why == "internal-error"


# ----- DLQ attributes -------------------------------------------------------------------------


def _attr(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def test_reason_and_detail_join_the_original_attributes() -> None:
    out = dead_letter_attributes({"key-id": _attr("k1"), "client-id": _attr("c")}, Reason.MALFORMED, "why")
    assert out[ATTR_REASON]["StringValue"] == "malformed"
    assert out[ATTR_DETAIL]["StringValue"] == "why"
    assert out["key-id"]["StringValue"] == "k1"


def test_ten_original_attributes_leave_room_for_the_reason_only() -> None:
    original = {"key-id": _attr("k1"), **{f"a{i}": _attr("v") for i in range(9)}}
    out = dead_letter_attributes(original, Reason.HANDLER_ERROR, "detail")
    assert len(out) == 10 and ATTR_REASON in out and ATTR_DETAIL not in out and "key-id" in out


def test_a_body_at_the_size_limit_still_fits_with_its_reason() -> None:
    original = {"key-id": _attr("k1"), "client-id": _attr("c" * 200), "note": _attr("n" * 300)}
    body = SQS_MAX_MESSAGE_BYTES - 540  # the original message fitted, barely
    out = dead_letter_attributes(original, Reason.DECRYPT_FAILED, "d" * 150, body_bytes=body)
    size = body + sum(len(k) + len(v["DataType"]) + len(v["StringValue"]) for k, v in out.items())
    assert size <= SQS_MAX_MESSAGE_BYTES
    assert out[ATTR_REASON]["StringValue"] == "decrypt-failed" and "key-id" in out


def test_producer_headroom_holds_the_longest_reason_and_a_full_detail() -> None:
    detail = attribute_size(ATTR_DETAIL, _attr("d" * MAX_DETAIL_CHARS))
    for reason in Reason:
        assert attribute_size(ATTR_REASON, _attr(reason.value)) + detail <= DLQ_HEADROOM_BYTES, reason


def test_a_copy_keeps_its_reason_by_dropping_key_id_last() -> None:
    """As in the issue: the message fitted SQS, and the reason fits with the body but not also
    with key-id."""
    original = {"key-id": _attr("ec-live"), "client-id": _attr("c")}
    body = SQS_MAX_MESSAGE_BYTES - 40
    out = dead_letter_attributes(original, Reason.HANDLER_REJECTED, "why", body_bytes=body)
    assert out == {ATTR_REASON: _attr("handler-rejected")}
    assert fits("b" * body, out)


def test_sizes_are_utf8_bytes_not_characters() -> None:
    original = {"key-id": _attr("k1"), "client-id": _attr("é" * 300)}  # 600 bytes, 300 characters
    body = SQS_MAX_MESSAGE_BYTES - 640  # fits if client-id were 300 bytes, not if 600
    out = dead_letter_attributes(original, Reason.MALFORMED, body_bytes=body)
    assert body + attributes_size(out) <= SQS_MAX_MESSAGE_BYTES and "client-id" not in out
    assert not fits("é" * (SQS_MAX_MESSAGE_BYTES // 2 + 1))


def test_a_copy_that_cannot_fit_waits_long_between_deliveries() -> None:
    assert rules(backoff_s=0).dead_letter_unfit().seconds == UNFIT_RETRY_MIN_S
    assert rules(backoff_s=3600).dead_letter_unfit().seconds == 3600
