"""What the worker does with a message it is done with, as pure rules: the DLQ attributes
(SQS allows ten per message, so they are budgeted) and the retry backoff."""

from __future__ import annotations

import random
from collections.abc import Mapping
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
from sealq.errors import Reason

MAX_DETAIL_CHARS = 200
# Kept first when the original message used up the attribute budget.
_PRIORITY = (ATTR_KEY_ID, ATTR_CLIENT_ID, ATTR_FORMAT, ATTR_CONTENT_TYPE)


def _clean_detail(detail: str) -> str:
    text = "".join(ch if " " <= ch < "\x7f" else "?" for ch in detail)
    return text[:MAX_DETAIL_CHARS]


def dead_letter_attributes(
    original: Mapping[str, Mapping[str, Any]], reason: Reason, detail: str = "", body_bytes: int = 0
) -> dict[str, dict[str, Any]]:
    """The original attributes plus `sealq-reason` (always) and `sealq-detail` (if room),
    within SQS's ten attributes and, with the body, its size limit: a message that barely
    fit must not become one the DLQ refuses forever."""
    out = _attributes_within_count(original, reason, detail)
    for drop in (ATTR_DETAIL, *(n for n in reversed(list(out)) if n not in (ATTR_REASON, ATTR_KEY_ID))):
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
