"""What is in a dead-letter queue, as pure rules: a received message becomes a record (never
its body), records are filtered, counted and checked against thresholds, and a message is
turned back into a source-queue entry. `sealq.dlq.scan` does the SQS calls around these."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sealq.aws.limits import attributes_size
from sealq.durations import format_duration
from sealq.envelope.attributes import (
    ATTR_CLIENT_ID,
    ATTR_CONTENT_TYPE,
    ATTR_DETAIL,
    ATTR_FORMAT,
    ATTR_KEY_ID,
    ATTR_REASON,
)
from sealq.errors import Reason

UNLABELLED = "unlabelled"
"""Reported reason of a message without `sealq-reason`: SQS's own redrive policy moved it."""
TOTAL = "total"
REASONS: tuple[str, ...] = (*(r.value for r in Reason), UNLABELLED)
_KNOWN = frozenset(r.value for r in Reason)
MAX_VALUE_CHARS = 200
"""Attribute values come from clients; a report shows no more of one than this."""


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """One dead-lettered message as an operator may see it: attributes and sizes, no body."""

    message_id: str
    reason: str | None
    kid: str | None
    client_id: str | None
    age_s: float | None
    size: int
    body_size: int
    receive_count: int | None = None
    detail: str | None = None
    content_type: str | None = None
    format: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def reported_reason(self) -> str:
        """The reason sealq gave, else `unlabelled`: a `sealq-reason` value sealq never
        writes (anyone who can send to the DLQ can set one) is not counted as a reason; the
        raw value still shows, escaped, among `peek`'s attributes."""
        return self.reason if self.reason in _KNOWN else UNLABELLED

    def view(self, *, with_attributes: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "reason": self.reported_reason,
            "kid": self.kid,
            "client_id": self.client_id,
            "age_s": None if self.age_s is None else round(self.age_s, 3),
            "size": self.size,
            "body_size": self.body_size,
            "receive_count": self.receive_count,
            "detail": self.detail,
        }
        if with_attributes:
            out["attributes"] = dict(self.attributes)
        return out


def _attr_text(value: Mapping[str, Any]) -> str:
    """A printable rendering of one attribute value; binary values by size only."""
    if "StringValue" in value:
        return str(value["StringValue"])[:MAX_VALUE_CHARS]
    binary = value.get("BinaryValue")
    return f"<binary {len(binary) if binary is not None else 0} bytes>"


def _string(attrs: Mapping[str, Mapping[str, Any]], name: str) -> str | None:
    value = attrs.get(name)
    if value is None or "StringValue" not in value:
        return None
    return str(value["StringValue"])[:MAX_VALUE_CHARS]


def parse_message(message: Mapping[str, Any], now_s: float) -> DlqRecord:
    """The record of a ReceiveMessage entry. Tolerates any message: whatever sealq would have
    set but is missing is None, so a plain queue just reads as `unlabelled`."""
    attrs: Mapping[str, Mapping[str, Any]] = message.get("MessageAttributes") or {}
    system: Mapping[str, str] = message.get("Attributes") or {}
    sent = system.get("SentTimestamp")
    age = max(now_s - int(sent) / 1000.0, 0.0) if sent and sent.isdigit() else None
    count = system.get("ApproximateReceiveCount")
    body_size = len(str(message.get("Body", "")).encode())
    return DlqRecord(
        message_id=str(message["MessageId"]),
        reason=_string(attrs, ATTR_REASON),
        kid=_string(attrs, ATTR_KEY_ID),
        client_id=_string(attrs, ATTR_CLIENT_ID),
        age_s=age,
        size=body_size + attributes_size(attrs),
        body_size=body_size,
        receive_count=int(count) if count and count.isdigit() else None,
        detail=_string(attrs, ATTR_DETAIL),
        content_type=_string(attrs, ATTR_CONTENT_TYPE),
        format=_string(attrs, ATTR_FORMAT),
        attributes={name: _attr_text(value) for name, value in sorted(attrs.items())},
    )


# ----- selecting -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """Filters an operator combines (AND); each list matches any of its values (OR)."""

    reasons: frozenset[str] = frozenset()
    kids: frozenset[str] = frozenset()
    client_ids: frozenset[str] = frozenset()
    older_than_s: int | None = None

    @property
    def is_everything(self) -> bool:
        return not (self.reasons or self.kids or self.client_ids or self.older_than_s)

    def matches(self, record: DlqRecord) -> bool:
        if self.reasons and record.reported_reason not in self.reasons:
            return False
        if self.kids and record.kid not in self.kids:
            return False
        if self.client_ids and record.client_id not in self.client_ids:
            return False
        if self.older_than_s is not None:
            # Without a SentTimestamp the age is unknown: never old enough to act on.
            return record.age_s is not None and record.age_s >= self.older_than_s
        return True

    def describe(self) -> str:
        parts = [
            f"{label} {', '.join(sorted(values))}"
            for label, values in (
                ("reason", self.reasons),
                ("kid", self.kids),
                ("client id", self.client_ids),
            )
            if values
        ]
        if self.older_than_s is not None:
            parts.append(f"older than {format_duration(self.older_than_s)}")
        return "messages with " + ", ".join(parts) if parts else "every message"


def parse_reason(text: str) -> str:
    """A reason filter or threshold name; ValueError naming the valid ones."""
    value = text.strip().lower()
    if value not in REASONS:
        raise ValueError(f"unknown reason {text!r}; choose one of {', '.join(REASONS)}")
    return value


# ----- counting --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Group:
    reason: str
    kid: str | None
    client_id: str | None
    count: int
    oldest_age_s: float | None
    newest_age_s: float | None

    def view(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "kid": self.kid,
            "client_id": self.client_id,
            "count": self.count,
            "oldest_age_s": _round(self.oldest_age_s),
            "newest_age_s": _round(self.newest_age_s),
        }


@dataclass(frozen=True, slots=True)
class Stats:
    total: int
    by_reason: dict[str, int]
    groups: list[Group]
    oldest_age_s: float | None
    newest_age_s: float | None
    total_bytes: int

    def view(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_reason": self.by_reason,
            "oldest_age_s": _round(self.oldest_age_s),
            "newest_age_s": _round(self.newest_age_s),
            "total_bytes": self.total_bytes,
            "groups": [g.view() for g in self.groups],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _ages(records: Sequence[DlqRecord]) -> tuple[float | None, float | None]:
    ages = [r.age_s for r in records if r.age_s is not None]
    return (max(ages), min(ages)) if ages else (None, None)


def aggregate(records: Iterable[DlqRecord]) -> Stats:
    """Counts by reason x kid x client id, biggest group first, with oldest/newest ages."""
    rows = list(records)
    buckets: dict[tuple[str, str | None, str | None], list[DlqRecord]] = {}
    for r in rows:
        buckets.setdefault((r.reported_reason, r.kid, r.client_id), []).append(r)
    groups = [
        Group(reason, kid, client, len(members), *_ages(members))
        for (reason, kid, client), members in buckets.items()
    ]
    groups.sort(key=lambda g: (-g.count, g.reason, g.kid or "", g.client_id or ""))
    by_reason = Counter(r.reported_reason for r in rows)
    oldest, newest = _ages(rows)
    return Stats(
        total=len(rows),
        by_reason=dict(sorted(by_reason.items())),
        groups=groups,
        oldest_age_s=oldest,
        newest_age_s=newest,
        total_bytes=sum(r.size for r in rows),
    )


# ----- thresholds ------------------------------------------------------------------------

_THRESHOLD = re.compile(r"^\s*([A-Za-z-]+)\s*=\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Threshold:
    """`--max NAME=N`: alert when more than N messages have reason NAME (or in total)."""

    name: str
    limit: int


def parse_threshold(text: str) -> Threshold:
    match = _THRESHOLD.match(text)
    if not match:
        raise ValueError(f"invalid threshold {text!r}: use REASON=N or total=N, e.g. key-expired=0")
    name = match.group(1).lower()
    if name != TOTAL and name not in REASONS:
        raise ValueError(f"unknown threshold {name!r}; choose total or one of {', '.join(REASONS)}")
    return Threshold(name, int(match.group(2)))


@dataclass(frozen=True, slots=True)
class Breach:
    """A crossed threshold, with who is behind it: the operator's to-do list."""

    threshold: Threshold
    count: int
    clients: list[tuple[str | None, int]]
    kids: list[tuple[str | None, int]]

    def view(self) -> dict[str, Any]:
        return {
            "name": self.threshold.name,
            "limit": self.threshold.limit,
            "count": self.count,
            "clients": [{"client_id": c, "count": n} for c, n in self.clients],
            "kids": [{"kid": k, "count": n} for k, n in self.kids],
        }


def _ranked(values: Iterable[str | None]) -> list[tuple[str | None, int]]:
    return sorted(Counter(values).items(), key=lambda item: (-item[1], item[0] or ""))


def check_thresholds(records: Sequence[DlqRecord], thresholds: Iterable[Threshold]) -> list[Breach]:
    breaches = []
    for t in thresholds:
        hits = [r for r in records if t.name in (TOTAL, r.reported_reason)]
        if len(hits) > t.limit:
            breaches.append(
                Breach(t, len(hits), _ranked(r.client_id for r in hits), _ranked(r.kid for r in hits))
            )
    return breaches


# ----- redrive ---------------------------------------------------------------------------

_COPIED_FIELDS = ("DataType", "StringValue", "BinaryValue")


def redrive_entry(entry_id: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """A SendMessageBatch entry for the source queue: the original body and attributes,
    without what dead-lettering added, so a worker sees the message as the client sent it.
    FIFO messages keep their group; the DLQ message id makes the resend deduplicable."""
    attrs: Mapping[str, Mapping[str, Any]] = message.get("MessageAttributes") or {}
    entry: dict[str, Any] = {
        "Id": entry_id,
        "MessageBody": message["Body"],
        "MessageAttributes": {
            name: {k: v for k, v in value.items() if k in _COPIED_FIELDS}
            for name, value in attrs.items()
            if name not in (ATTR_REASON, ATTR_DETAIL)
        },
    }
    group = (message.get("Attributes") or {}).get("MessageGroupId")
    if group:
        entry["MessageGroupId"] = group
        entry["MessageDeduplicationId"] = str(message["MessageId"])[:128]
    if not entry["MessageAttributes"]:
        del entry["MessageAttributes"]
    return entry

