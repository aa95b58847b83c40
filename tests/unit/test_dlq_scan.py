"""The scan's SQS bookkeeping on a tiny in-memory queue: each message seen once, everything
not consumed released (also on errors), a refused release reported to the caller rather than
printed; and batched sends that stay within SQS's entry and byte limits."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from sealq.aws.limits import SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES, entry_size
from sealq.dlq.scan import SCAN_VISIBILITY_S, Scan, delete_messages, send_batches, send_entries
from tests.unit.test_dlq import sqs_message


class FakeQueue:
    """Just enough SQS for Scan: ordered receive, visibility, batch visibility changes."""

    def __init__(self, count: int) -> None:
        self.messages = [sqs_message(f"m{i}") for i in range(count)]
        self.hidden: set[str] = set()
        self.receives = 0
        self.refuse_release = False

    def receive_message(self, **kw: Any) -> dict[str, Any]:
        self.receives += 1
        visible = [m for m in self.messages if m["MessageId"] not in self.hidden]
        batch = visible[: kw["MaxNumberOfMessages"]]
        assert kw["VisibilityTimeout"] > 0
        self.hidden |= {m["MessageId"] for m in batch}
        return {"Messages": batch} if batch else {}

    def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        if self.refuse_release:
            raise EndpointConnectionError(endpoint_url="http://sqs.invalid")
        assert len(kw["Entries"]) <= 10
        for entry in kw["Entries"]:
            assert entry["VisibilityTimeout"] == 0
            self.hidden.discard(entry["ReceiptHandle"].removeprefix("rh-"))
        return {"Successful": [{"Id": e["Id"]} for e in kw["Entries"]]}

    def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        assert len(kw["Entries"]) <= 10
        ok, failed = [], []
        for entry in kw["Entries"]:
            (failed if entry["ReceiptHandle"] == "rh-m3" else ok).append({"Id": entry["Id"]})
        return {"Successful": ok, "Failed": failed}


def test_scan_sees_each_message_once_and_releases_all() -> None:
    queue = FakeQueue(25)
    with Scan(queue, "url", limit=100) as scan:
        seen = [m["MessageId"] for page in scan.pages() for m in page]
        assert len(queue.hidden) == 25
    assert sorted(seen) == sorted(m["MessageId"] for m in queue.messages)
    assert queue.hidden == set() and not scan.truncated


def test_scan_stops_at_its_limit_and_releases_on_error() -> None:
    queue = FakeQueue(25)
    with pytest.raises(RuntimeError), Scan(queue, "url", limit=12) as scan:
        for page in scan.pages():
            scan.consumed([page[0]["MessageId"]])  # as if deleted
            queue.messages.remove(page[0])
            if len(scan.seen) >= 12:
                raise RuntimeError("interrupted")
    assert len(scan.seen) == 12
    assert queue.hidden == {"m0", "m10"}  # only the 'deleted' ones, which are gone anyway
    assert queue.receives == 2


class Counted:
    def __init__(self) -> None:
        self.done = 0

    def advance(self, count: int = 1) -> None:
        self.done += count


def test_a_refused_release_is_handed_to_the_caller_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    queue = FakeQueue(3)
    queue.refuse_release = True
    warnings: list[str] = []
    progress = Counted()
    with Scan(queue, "url", limit=100, progress=progress, warn=warnings.append) as scan:
        assert len(list(scan.pages())) == 1
    assert progress.done == 3
    assert len(warnings) == 1
    assert "cannot reach" in warnings[0] and f"reappear within {SCAN_VISIBILITY_S}s" in warnings[0]
    assert capsys.readouterr() == ("", "")
    with Scan(queue, "url", limit=100) as scan:  # no callback: nothing to tell, nothing raised
        list(scan.pages())


def test_delete_reports_what_sqs_deleted_and_refused() -> None:
    queue = FakeQueue(12)
    done, failed = delete_messages(queue, "url", queue.messages)
    assert failed == 1
    assert done == [f"m{i}" for i in range(12) if i != 3]


def entry(entry_id: str, body_bytes: int) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "MessageBody": "x" * body_bytes,
        "MessageAttributes": {"key-id": {"DataType": "String", "StringValue": "kid-1"}},
    }


def test_send_batches_keep_within_ten_entries_and_one_mib() -> None:
    small = [entry(str(i), 100) for i in range(25)]
    assert [len(b) for b in send_batches(small)] == [10, 10, 5]
    big = [entry(str(i), 400 * 1024) for i in range(5)]
    batches = list(send_batches(big))
    assert [len(b) for b in batches] == [2, 2, 1]
    for batch in batches:
        assert len(batch) <= SQS_MAX_BATCH_ENTRIES
        assert sum(entry_size(e) for e in batch) <= SQS_MAX_BATCH_BYTES
    # exactly at the limit still fits one call; one byte over does not
    attrs = entry_size(entry("a", 0))
    half = SQS_MAX_BATCH_BYTES // 2 - attrs
    assert [len(b) for b in send_batches([entry("a", half), entry("b", half)])] == [2]
    assert [len(b) for b in send_batches([entry("a", half), entry("b", half + 1)])] == [1, 1]
    assert list(send_batches([])) == []


def test_send_entries_returns_the_accepted_ids() -> None:
    calls: list[list[str]] = []

    class Sqs:
        def send_message_batch(self, **kw: Any) -> dict[str, Any]:
            ids = [e["Id"] for e in kw["Entries"]]
            calls.append(ids)
            return {
                "Successful": [{"Id": i} for i in ids if i != "4"],
                "Failed": [{"Id": i} for i in ids if i == "4"],
            }

    accepted, failed = send_entries(Sqs(), "url", [entry(str(i), 10) for i in range(12)])
    assert (failed, len(calls)) == (1, 2)
    assert accepted == [str(i) for i in range(12) if i != 4]
