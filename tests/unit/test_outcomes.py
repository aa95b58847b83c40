"""DLQ attributes: the reason always fits, within SQS's count and size limits."""

from __future__ import annotations

from sealq.aws.limits import SQS_MAX_MESSAGE_BYTES
from sealq.envelope.attributes import ATTR_DETAIL, ATTR_REASON
from sealq.errors import Reason
from sealq.worker.outcomes import dead_letter_attributes


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
