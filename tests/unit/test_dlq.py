"""DLQ records, filters, counts and thresholds as pure rules, and the CLI's rendering of them:
nothing here may ever carry or print a message body. The scan's SQS bookkeeping is in
test_dlq_scan.py, the operations on the stand-in in tests/integration/test_dlq_operations.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sealq.cli.dlq_render import _cell, render_breach, render_peek, render_stats
from sealq.dlq.records import (
    UNLABELLED,
    DlqRecord,
    Selection,
    aggregate,
    check_thresholds,
    parse_message,
    parse_reason,
    parse_threshold,
    redrive_entry,
)

NOW = 1_700_000_000.0
BODY = "SEALED-BODY-NEVER-SHOWN"


def sqs_message(
    message_id: str,
    *,
    reason: str | None = "key-expired",
    kid: str | None = "kid-1",
    client: str | None = "shop",
    age_s: float = 60.0,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    values = {"sealq-reason": reason, "key-id": kid, "client-id": client, **(extra or {})}
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": BODY,
        "Attributes": {
            "SentTimestamp": str(int((NOW - age_s) * 1000)),
            "ApproximateReceiveCount": "2",
        },
        "MessageAttributes": {
            k: {"DataType": "String", "StringValue": v} for k, v in values.items() if v is not None
        },
    }


def record(message_id: str, **kw: Any) -> DlqRecord:
    return parse_message(sqs_message(message_id, **kw), NOW)


def test_parse_message_reads_attributes_and_sizes_not_the_body() -> None:
    r = record("m1", age_s=90, extra={"sealq-detail": "kid expired 2d ago"})
    assert (r.reason, r.kid, r.client_id, r.detail) == ("key-expired", "kid-1", "shop", "kid expired 2d ago")
    assert r.age_s == pytest.approx(90, abs=0.01)
    assert r.receive_count == 2
    assert r.body_size == len(BODY)
    attrs = sqs_message("m1", extra={"sealq-detail": "kid expired 2d ago"})["MessageAttributes"]
    assert r.size == len(BODY) + sum(len(k) + len("String") + len(v["StringValue"]) for k, v in attrs.items())
    assert BODY not in json.dumps(r.view(with_attributes=True))


def test_a_message_sqs_redrove_is_unlabelled_and_a_bare_one_parses() -> None:
    r = record("m1", reason=None)
    assert r.reason is None and r.reported_reason == UNLABELLED
    bare = parse_message({"MessageId": "x", "Body": ""}, NOW)
    assert (bare.reported_reason, bare.kid, bare.client_id, bare.age_s, bare.size) == (
        UNLABELLED,
        None,
        None,
        None,
        0,
    )


def test_binary_and_overlong_attribute_values_are_summarised() -> None:
    message = sqs_message("m1", client="c" * 5000)
    message["MessageAttributes"]["blob"] = {"DataType": "Binary", "BinaryValue": b"\x00" * 7}
    r = parse_message(message, NOW)
    assert r.attributes["blob"] == "<binary 7 bytes>"
    assert r.client_id is not None and len(r.client_id) == 200


def test_selection_combines_filters() -> None:
    old_shop = record("a", age_s=8 * 86400)
    young_shop = record("b", age_s=60)
    other = record("c", reason="handler-error", kid="kid-2", client="billing", age_s=9 * 86400)
    purge = Selection(reasons=frozenset({"key-expired"}), older_than_s=7 * 86400)
    assert [purge.matches(r) for r in (old_shop, young_shop, other)] == [True, False, False]
    assert Selection(kids=frozenset({"kid-2"})).matches(other)
    assert not Selection(client_ids=frozenset({"shop"})).matches(other)
    assert Selection(reasons=frozenset({UNLABELLED})).matches(record("d", reason=None))
    assert Selection().is_everything and not purge.is_everything
    no_age = parse_message({"MessageId": "x", "Body": ""}, NOW)
    assert not Selection(older_than_s=1).matches(no_age)


def test_aggregate_counts_by_reason_kid_and_client() -> None:
    stats = aggregate(
        [
            record("1", age_s=10),
            record("2", age_s=300),
            record("3", client="legacy", age_s=50),
            record("4", reason="handler-error", kid="kid-2", age_s=5),
            record("5", reason=None, age_s=20),
        ]
    )
    assert stats.total == 5
    assert stats.by_reason == {"handler-error": 1, "key-expired": 3, UNLABELLED: 1}
    assert stats.oldest_age_s == pytest.approx(300, abs=0.01)
    assert stats.newest_age_s == pytest.approx(5, abs=0.01)
    first = stats.groups[0]
    assert (first.reason, first.kid, first.client_id, first.count) == ("key-expired", "kid-1", "shop", 2)
    assert first.oldest_age_s == pytest.approx(300, abs=0.01)
    assert len(stats.groups) == 4
    assert aggregate([]).view()["oldest_age_s"] is None


def test_key_unavailable_is_a_reason_dlq_commands_count_filter_and_watch() -> None:
    assert parse_reason("key-unavailable") == "key-unavailable"
    assert parse_threshold("key-unavailable=0").name == "key-unavailable"
    stats = aggregate([record("1", reason="key-unavailable"), record("2", reason="key-unavailable")])
    assert stats.by_reason == {"key-unavailable": 2}


def test_thresholds_parse_and_name_who_is_behind() -> None:
    assert parse_threshold("key-expired=0").limit == 0
    assert parse_threshold(" TOTAL = 12 ").name == "total"
    for bad in ("key-expired", "nope=1", "total=-1", "key-expired=x"):
        with pytest.raises(ValueError):
            parse_threshold(bad)
    with pytest.raises(ValueError, match="unlabelled"):
        parse_reason("keyexpired")
    records = [
        record("1"),
        record("2", client="legacy", kid="kid-0"),
        record("3", client="legacy", kid="kid-0"),
        record("4", reason="malformed"),
    ]
    breaches = check_thresholds(
        records, [parse_threshold(t) for t in ("key-expired=0", "total=4", "malformed=0")]
    )
    assert [b.threshold.name for b in breaches] == ["key-expired", "malformed"]
    assert breaches[0].clients == [("legacy", 2), ("shop", 1)]
    assert breaches[0].kids == [("kid-0", 2), ("kid-1", 1)]
    assert render_breach(breaches[0]) == (
        "ALERT key-expired: 3 > 0; clients: legacy (2), shop (1); kids: kid-0 (2), kid-1 (1)"
    )
    no_kid = check_thresholds([record("5", kid=None)], [parse_threshold("total=0")])
    assert "kids: (none) (1)" in render_breach(no_kid[0])


def test_redrive_entry_restores_what_the_client_sent() -> None:
    message = sqs_message("m1", extra={"sealq-detail": "why", "content-type": "application/json"})
    entry = redrive_entry("0", message)
    assert entry["MessageBody"] == BODY
    assert set(entry["MessageAttributes"]) == {"key-id", "client-id", "content-type"}
    assert "MessageGroupId" not in entry
    message["Attributes"]["MessageGroupId"] = "g1"
    fifo = redrive_entry("0", message)
    assert (fifo["MessageGroupId"], fifo["MessageDeduplicationId"]) == ("g1", "m1")
    bare = redrive_entry("1", {"MessageId": "x", "Body": "b", "MessageAttributes": {}})
    assert "MessageAttributes" not in bare


def test_terminal_output_neutralises_control_characters() -> None:
    assert _cell("shop\x1b[2J\n") == "shop?[2J?"
    assert _cell(None) == "-"
    assert len(_cell("x" * 100)) == 40
    r = record("m1", client="evil\x1b]0;title\x07")
    text = render_peek([r]) + render_stats("url", aggregate([r]), truncated=True, in_flight=2)
    assert "\x1b" not in text and "\x07" not in text and BODY not in text
    assert "stopped at --max-messages" in text and "about 2 message(s) were in flight" in text


def test_selection_describes_itself_for_the_confirmation_prompt() -> None:
    assert Selection().describe() == "every message"
    text = Selection(reasons=frozenset({"key-expired"}), older_than_s=7 * 86400).describe()
    assert text == "messages with reason key-expired, older than 7d"


def test_a_reason_sealq_never_writes_counts_as_unlabelled_and_prints_escaped() -> None:
    forged = "key-expired\n\x1b[31mALERT fake"
    records = [record("1", reason=forged), record("2", reason="nonsense"), record("3")]
    assert [r.reported_reason for r in records] == [UNLABELLED, UNLABELLED, "key-expired"]
    stats = aggregate(records)
    assert stats.by_reason == {"key-expired": 1, UNLABELLED: 2}
    assert [b.count for b in check_thresholds(records, [parse_threshold("key-expired=0")])] == [1]
    assert Selection(reasons=frozenset({UNLABELLED})).matches(records[0])
    assert records[0].view()["reason"] == UNLABELLED
    text = render_peek(records) + render_stats("url", stats, truncated=False, in_flight=None)
    assert "\x1b" not in text and "nonsense" not in text.split("by reason:")[1]
    peek_lines = render_peek(records[:1]).splitlines()
    assert len(peek_lines) == 1 + len(records[0].attributes)  # the newline did not add a line
    assert peek_lines[0].split()[1] == UNLABELLED
    assert "sealq-reason = key-expired??[31mALERT fake" in render_peek(records[:1])
