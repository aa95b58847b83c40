"""The pure half of sending: entries, attributes, size limits, batches and retries."""

from __future__ import annotations

from typing import Any

import pytest

from sealq.aws.limits import PRODUCER_MAX_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES
from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_CONTENT_TYPE, ATTR_KEY_ID
from sealq.envelope.jwe import open_token
from sealq.producer.message import (
    BatchResult,
    Entry,
    OutgoingMessage,
    apply_batch_response,
    batch_exchanges,
    batch_request,
    build_entries,
    build_entry,
    plan_batches,
)
from tests.conftest import KeyPair

NOW = 1_800_000_000.0
# Plaintext that seals to just under the SQS limit with P-256 (base64url grows it by 4/3).
NEAR_LIMIT = SQS_MAX_MESSAGE_BYTES * 3 // 4 - 2048


def _entries(*sizes: int) -> list[Entry]:
    return [Entry(i, "b", {}, size) for i, size in enumerate(sizes)]


def _shape(batches: list[list[Entry]]) -> list[list[int]]:
    return [[e.index for e in batch] for batch in batches]


def test_exactly_ten_entries_make_one_batch() -> None:
    assert _shape(plan_batches(_entries(*[100] * 10))) == [list(range(10))]


def test_eleven_entries_make_ten_and_one() -> None:
    assert _shape(plan_batches(_entries(*[100] * 11))) == [list(range(10)), [10]]


def test_twenty_five_entries_make_three_batches_in_order() -> None:
    batches = plan_batches(_entries(*[1] * 25))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [e.index for b in batches for e in b] == list(range(25))


def test_batch_of_exactly_one_mib_is_not_split() -> None:
    half = SQS_MAX_MESSAGE_BYTES // 2
    assert _shape(plan_batches(_entries(half, half))) == [[0, 1]]


def test_one_byte_over_one_mib_splits() -> None:
    half = SQS_MAX_MESSAGE_BYTES // 2
    assert _shape(plan_batches(_entries(half, half + 1))) == [[0], [1]]


def test_size_split_keeps_order_and_fills_greedily() -> None:
    third = SQS_MAX_MESSAGE_BYTES // 3
    sizes = [third, third, third, third, 10, 10]
    assert _shape(plan_batches(_entries(*sizes))) == [[0, 1, 2], [3, 4, 5]]


def test_empty_input_makes_no_batches() -> None:
    assert plan_batches([]) == []


def test_build_entry_sets_attributes_and_counts_them(ec_pair: KeyPair) -> None:
    message = OutgoingMessage(b"hello", client_id="client-7", content_type="text/plain")
    entry = build_entry(3, message, ec_pair.sealing, NOW)
    assert entry.index == 3
    assert entry.attributes[ATTR_KEY_ID] == {"DataType": "String", "StringValue": ec_pair.kid}
    assert entry.attributes[ATTR_CLIENT_ID]["StringValue"] == "client-7"
    assert entry.attributes[ATTR_CONTENT_TYPE]["StringValue"] == "text/plain"
    attrs = sum(
        len(name) + len("String") + len(value["StringValue"]) for name, value in entry.attributes.items()
    )
    assert entry.size == len(entry.body) + attrs
    assert open_token(entry.body, ec_pair.opening) == b"hello"


def test_build_entry_without_optional_attributes(ec_pair: KeyPair) -> None:
    entry = build_entry(0, OutgoingMessage("text"), ec_pair.sealing, NOW)
    assert set(entry.attributes) == {ATTR_KEY_ID}
    assert open_token(entry.body, ec_pair.opening) == b"text"


def test_too_large_message_says_how_big_and_what_to_do(ec_pair: KeyPair) -> None:
    from sealq.errors import MessageTooLargeError

    build_entry(0, OutgoingMessage(b"x" * NEAR_LIMIT), ec_pair.sealing, NOW)  # fits
    with pytest.raises(MessageTooLargeError, match=r"at most 1048064.*s3_bucket"):
        build_entry(0, OutgoingMessage(b"x" * (SQS_MAX_MESSAGE_BYTES * 3 // 4)), ec_pair.sealing, NOW)


def test_producer_leaves_room_for_the_dead_letter_reason(ec_pair: KeyPair) -> None:
    """The issue's 1,048,556-byte message fitted SQS but not SQS with a `sealq-reason`."""
    from sealq.errors import MessageTooLargeError

    n = (SQS_MAX_MESSAGE_BYTES - 1100) * 3 // 4
    size = 0
    while True:  # the largest plaintext the producer takes
        try:
            size = build_entry(0, OutgoingMessage(b"x" * n), ec_pair.sealing, NOW).size
        except MessageTooLargeError:
            break
        n += 1
    assert PRODUCER_MAX_MESSAGE_BYTES - 2 <= size <= PRODUCER_MAX_MESSAGE_BYTES
    assert size + 100 < 1_048_556 and PRODUCER_MAX_MESSAGE_BYTES + 512 == SQS_MAX_MESSAGE_BYTES


def test_build_entries_turns_too_large_into_failed_entry(ec_pair: KeyPair) -> None:
    big = b"x" * SQS_MAX_MESSAGE_BYTES
    entries, result = build_entries([b"a", big, b"c"], "cid", ec_pair.sealing, NOW)
    assert [e.index for e in entries] == [0, 2]
    assert [(f.index, f.code, f.sender_fault) for f in result.failed] == [(1, "MessageTooLarge", True)]
    assert all(e.attributes[ATTR_CLIENT_ID]["StringValue"] == "cid" for e in entries)


def test_batch_request_ids_are_input_indexes(ec_pair: KeyPair) -> None:
    entries, _ = build_entries([b"a", b"b"], None, ec_pair.sealing, NOW)
    request = batch_request(entries)
    assert [r["Id"] for r in request] == ["0", "1"]
    assert request[0]["MessageAttributes"][ATTR_KEY_ID]["StringValue"] == ec_pair.kid


def test_apply_batch_response_sorts_out_each_entry() -> None:
    pending = _entries(1, 1, 1, 1)
    result = BatchResult()
    response = {
        "Successful": [{"Id": "0", "MessageId": "m0"}],
        "Failed": [
            {"Id": "1", "Code": "InvalidParameterValue", "Message": "bad", "SenderFault": True},
            {"Id": "2", "Code": "InternalError", "Message": "oops", "SenderFault": False},
        ],
        # "3" is in neither list: must be retried, never silently dropped
    }
    retry = apply_batch_response(response, pending, result)
    assert [s.message_id for s in result.sent] == ["m0"]
    assert [(f.index, f.code, f.sender_fault) for f in result.failed] == [(1, "InvalidParameterValue", True)]
    assert sorted(e.index for e in retry) == [2, 3]


def _drive(entries: list[Entry], responses: list[dict[str, Any]], retries: int) -> BatchResult:
    result = BatchResult()
    exchange = batch_exchanges(entries, result, retries)
    try:
        next(exchange)
        for response in responses:
            exchange.send(response)
        raise AssertionError("exchange asked for more responses than expected")
    except StopIteration:
        pass
    return result


def test_transient_failures_are_retried_then_reported() -> None:
    transient = {"Failed": [{"Id": "0", "Code": "ServiceUnavailable", "SenderFault": False}]}
    ok = {"Successful": [{"Id": "0", "MessageId": "m0"}]}
    assert _drive(_entries(1), [transient, ok], retries=2).sent[0].message_id == "m0"
    result = _drive(_entries(1), [transient, transient, transient], retries=2)
    assert result.sent == []
    assert [(f.index, f.code) for f in result.failed] == [(0, "RetriesExhausted")]
