"""The DLQ operations called directly against the local AWS stand-in, asserting on the results
they return: counts are exact, what is not selected stays visible, a wrong queue is refused
before any message is touched, and a failing SQS call duplicates a message, never loses it."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sealq.demo.standin import StandIn
from sealq.dlq import (
    MoveTask,
    NotADeadLetterQueueError,
    OperationFailedError,
    QueueAccessError,
    SameQueueError,
    Selection,
    parse_threshold,
    peek,
    purge,
    redrive,
    stats,
    watch_check,
)
from tests.integration.cli_helpers import standin_client

SECRET = "BODY-MUST-NOT-SHOW"
# reason -> (kid, client id), in order: 3 handler-error, 2 key-expired, 1 unlabelled.
MIX: list[tuple[str | None, str, str]] = [
    ("handler-error", "kid-new", "shop"),
    ("handler-error", "kid-new", "shop"),
    ("handler-error", "kid-new", "billing"),
    ("key-expired", "kid-old", "legacy"),
    ("key-expired", "kid-old", "shop"),
    (None, "kid-new", "billing"),
]
HANDLER_ERRORS = Selection(reasons=frozenset({"handler-error"}))


@dataclass
class Queues:
    sqs: Any
    source: str
    dlq: str


class Spy:
    """The real client, recording each call's name; `overrides` replace single calls."""

    def __init__(self, real: Any, **overrides: Callable[..., Any]) -> None:
        self.real, self.overrides, self.calls = real, overrides, []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return self.overrides.get(name) or getattr(self.real, name)


@pytest.fixture(scope="module")
def sqs(standin: StandIn) -> Any:
    return standin_client(standin, "sqs")


@pytest.fixture
def queues(sqs: Any) -> Queues:
    name = f"sealq-ops-{uuid.uuid4().hex[:10]}"
    source = str(sqs.create_queue(QueueName=name)["QueueUrl"])
    dlq = str(sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"])
    for i, (reason, kid, client) in enumerate(MIX):
        values = {"sealq-reason": reason, "key-id": kid, "client-id": client}
        attrs = {k: {"DataType": "String", "StringValue": v} for k, v in values.items() if v}
        sqs.send_message(QueueUrl=dlq, MessageBody=f"{SECRET}-{i}", MessageAttributes=attrs)
    return Queues(sqs, source, dlq)


def counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, hidden) messages."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, MessageAttributeNames=["All"]
    ).get("Messages", []):
        got += batch
    return got


def reasons(messages: list[dict[str, Any]]) -> Counter[str | None]:
    return Counter(
        m.get("MessageAttributes", {}).get("sealq-reason", {}).get("StringValue") for m in messages
    )


def test_stats_and_peek_return_exact_counts_and_hide_nothing(queues: Queues) -> None:
    result = stats(queues.sqs, queues.dlq)
    assert result.stats.total == len(MIX) and not result.truncated
    assert result.stats.by_reason == {"handler-error": 3, "key-expired": 2, "unlabelled": 1}
    assert result.in_flight_before_scan == 0
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)

    capped = stats(queues.sqs, queues.dlq, max_messages=4)
    assert (capped.stats.total, capped.truncated) == (4, True)
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)

    shown = peek(queues.sqs, queues.dlq, count=2)
    assert len(shown.records) == 2
    assert SECRET not in json.dumps(shown.view()) + json.dumps(result.view())
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)


def test_redrive_of_a_selection_counts_and_leaves_the_rest_visible(queues: Queues) -> None:
    dry = redrive(queues.sqs, queues.dlq, queues.source, HANDLER_ERRORS, dry_run=True)
    assert (dry.tally.matched, dry.tally.done, dry.tally.scanned) == (3, 0, len(MIX))
    assert counts(queues.sqs, queues.source) == (0, 0)
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)

    result = redrive(queues.sqs, queues.dlq, queues.source, HANDLER_ERRORS)
    assert result.method == "manual" and result.move_task_unavailable is None
    t = result.tally
    assert (t.matched, t.done, t.failed, t.scanned, t.duplicated) == (3, 3, 0, len(MIX), 0)
    assert counts(queues.sqs, queues.dlq) == (len(MIX) - 3, 0)  # the rest visible at once
    moved = drain(queues.sqs, queues.source)
    assert len(moved) == 3 and reasons(moved) == {None: 3}  # dead-letter attributes stripped
    assert reasons(drain(queues.sqs, queues.dlq)) == {"key-expired": 2, None: 1}


def test_redrive_of_everything_falls_back_when_there_is_no_move_task(queues: Queues) -> None:
    spy = Spy(queues.sqs)
    told: list[tuple[str, bool]] = []  # the reason, and whether any message was received yet

    def on_fallback(why: str) -> None:
        told.append((why, "receive_message" in spy.calls))

    result = redrive(spy, queues.dlq, queues.source, on_fallback=on_fallback)
    assert result.method == "manual" and result.move_task is None
    assert result.move_task_unavailable  # the stand-in's error code
    assert result.move_task_why and result.move_task_unavailable in result.move_task_why
    assert told == [(result.move_task_why, False)]
    assert result.tally.done == len(MIX)
    assert result.view()["move_task_unavailable"] == result.move_task_unavailable
    assert result.view()["move_task_why"] == result.move_task_why
    assert counts(queues.sqs, queues.dlq) == (0, 0)
    assert len(drain(queues.sqs, queues.source)) == len(MIX)


def test_redrive_of_everything_prefers_the_move_task(queues: Queues) -> None:
    started: list[dict[str, Any]] = []

    def start_message_move_task(**kw: Any) -> dict[str, Any]:
        started.append(kw)
        return {"TaskHandle": "task-1"}

    spy = Spy(queues.sqs, start_message_move_task=start_message_move_task)
    result = redrive(spy, queues.dlq, queues.source)
    assert result.move_task == MoveTask("task-1", len(MIX))
    assert result.view()["method"] == "move-task" and result.tally.scanned == 0
    assert started[0]["SourceArn"].endswith("-dlq") and not started[0]["DestinationArn"].endswith("-dlq")
    assert "receive_message" not in spy.calls
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)
    # a dry run never starts one: it only counts
    assert redrive(spy, queues.dlq, queues.source, dry_run=True).tally.matched == len(MIX)
    assert len(started) == 1


def test_a_move_task_refused_for_a_dlq_no_queue_names_says_so(queues: Queues, backend: str) -> None:
    """SQS moves messages only out of a queue some queue's RedrivePolicy names as its DLQ;
    otherwise it answers InvalidParameterValue, "Source queue must be configured as a Dead
    Letter Queue." The error says that, and what to set, not "not available"."""
    if backend == "ministack":
        pytest.skip("ministack 1.5.33 has no StartMessageMoveTask (InvalidAction): no refusal to word")
    told: list[str] = []
    result = redrive(queues.sqs, queues.dlq, queues.source, on_fallback=told.append)
    assert result.move_task_unavailable == "InvalidParameterValue"  # LocalStack 4.14.0, as AWS
    why = result.move_task_why or ""
    assert told == [why]
    assert f"no queue names {queues.dlq} as its dead-letter queue" in why
    assert f"give {queues.source} a RedrivePolicy with deadLetterTargetArn {dlq_arn(queues)}" in why
    assert "not available" not in why
    assert result.tally.done == len(MIX)  # and still moved, one by one
    assert len(drain(queues.sqs, queues.source)) == len(MIX)


def make_source_use_dlq(sqs: Any, source: str, dlq: str) -> None:
    """SQS moves messages back only into a queue whose redrive policy names the DLQ."""
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    sqs.set_queue_attributes(QueueUrl=source, Attributes={"RedrivePolicy": policy})


def wait_until_moved(sqs: Any, source: str, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Receive from `source` until `expected` messages arrived (a move task runs on its own time)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        got += sqs.receive_message(
            QueueUrl=source,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
    return got


@pytest.mark.backends("localstack")  # ministack has no StartMessageMoveTask
def test_redrive_of_everything_runs_a_real_move_task(queues: Queues) -> None:
    make_source_use_dlq(queues.sqs, queues.source, queues.dlq)
    spy = Spy(queues.sqs)
    fallbacks: list[str] = []
    result = redrive(spy, queues.dlq, queues.source, on_fallback=fallbacks.append)
    assert fallbacks == [] and result.move_task_unavailable is None
    assert result.method == "move-task" and result.move_task is not None
    assert result.move_task.task_handle and result.move_task.approximate_messages == len(MIX)
    assert "receive_message" not in spy.calls and "send_message_batch" not in spy.calls
    moved = wait_until_moved(queues.sqs, queues.source, len(MIX))
    assert sorted(m["Body"] for m in moved) == sorted(f"{SECRET}-{i}" for i in range(len(MIX)))
    assert counts(queues.sqs, queues.dlq) == (0, 0)
    tasks = queues.sqs.list_message_move_tasks(SourceArn=dlq_arn(queues))["Results"]
    assert [t["Status"] for t in tasks] == ["COMPLETED"]
    assert tasks[0]["ApproximateNumberOfMessagesMoved"] == len(MIX)


def dlq_arn(queues: Queues) -> str:
    attrs = queues.sqs.get_queue_attributes(QueueUrl=queues.dlq, AttributeNames=["QueueArn"])["Attributes"]
    return str(attrs["QueueArn"])


def test_a_failed_delete_duplicates_and_is_reported(queues: Queues) -> None:
    def delete_message_batch(**kw: Any) -> dict[str, Any]:
        fail = kw["Entries"][0]
        rest = {**kw, "Entries": kw["Entries"][1:]}
        done = queues.sqs.delete_message_batch(**rest) if rest["Entries"] else {}
        return {**done, "Failed": [{"Id": fail["Id"], "Code": "InternalError", "SenderFault": False}]}

    warnings: list[str] = []
    spy = Spy(queues.sqs, delete_message_batch=delete_message_batch)
    result = redrive(spy, queues.dlq, queues.source, HANDLER_ERRORS, warn=warnings.append)
    t = result.tally
    assert (t.matched, t.done, t.failed, t.duplicated) == (3, 2, 1, 1)
    assert warnings and "now in both queues" in warnings[0]
    assert len(drain(queues.sqs, queues.source)) == 3  # all sent ...
    assert reasons(drain(queues.sqs, queues.dlq))["handler-error"] == 1  # ... one still here, visible


def test_only_what_the_source_accepted_leaves_the_dlq(queues: Queues) -> None:
    def send_message_batch(**kw: Any) -> dict[str, Any]:
        refused = kw["Entries"][-1]
        sent = queues.sqs.send_message_batch(**{**kw, "Entries": kw["Entries"][:-1]})
        return {**sent, "Failed": [{"Id": refused["Id"], "Code": "InternalError", "SenderFault": False}]}

    spy = Spy(queues.sqs, send_message_batch=send_message_batch)
    result = redrive(spy, queues.dlq, queues.source, HANDLER_ERRORS)
    assert (result.tally.done, result.tally.failed, result.tally.duplicated) == (2, 1, 0)
    assert len(drain(queues.sqs, queues.source)) == 2
    assert counts(queues.sqs, queues.dlq) == (len(MIX) - 2, 0)


def test_an_sqs_failure_part_way_says_how_much_was_done(queues: Queues) -> None:
    sends = 0

    def send_message_batch(**kw: Any) -> dict[str, Any]:
        nonlocal sends
        sends += 1
        if sends > 1:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "SendMessageBatch")
        return dict(queues.sqs.send_message_batch(**kw))

    real_receive = queues.sqs.receive_message

    def receive_message(**kw: Any) -> dict[str, Any]:  # one message per page: several sends
        return dict(real_receive(**{**kw, "MaxNumberOfMessages": 1}))

    spy = Spy(queues.sqs, send_message_batch=send_message_batch, receive_message=receive_message)
    done_one = r"dlq redrive failed: InternalError.*; 1 message\(s\) were redriven before this failure"
    with pytest.raises(OperationFailedError, match=done_one):
        redrive(spy, queues.dlq, queues.source, HANDLER_ERRORS)
    assert counts(queues.sqs, queues.source)[0] == 1
    assert counts(queues.sqs, queues.dlq) == (len(MIX) - 1, 0)  # the rest released, not hidden


def test_a_work_queue_as_dlq_is_refused_before_any_message_is_touched(queues: Queues) -> None:
    arn = queues.sqs.get_queue_attributes(QueueUrl=queues.dlq, AttributeNames=["QueueArn"])
    policy = json.dumps({"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "5"})
    queues.sqs.set_queue_attributes(QueueUrl=queues.source, Attributes={"RedrivePolicy": policy})
    queues.sqs.send_message(QueueUrl=queues.source, MessageBody="live work")
    spy = Spy(queues.sqs)
    thresholds = [parse_threshold("total=0")]
    for call in (
        lambda: stats(spy, queues.source),
        lambda: peek(spy, queues.source),
        lambda: redrive(spy, queues.source, queues.dlq, HANDLER_ERRORS),
        lambda: purge(spy, queues.source),
        lambda: watch_check(spy, queues.source, thresholds),
    ):
        with pytest.raises(NotADeadLetterQueueError, match="not a dead-letter queue"):
            call()
    assert set(spy.calls) == {"get_queue_attributes"}
    assert counts(queues.sqs, queues.source) == (1, 0)


def test_wrong_queues_are_refused_from_their_attributes(queues: Queues) -> None:
    spy = Spy(queues.sqs)
    with pytest.raises(SameQueueError):
        redrive(spy, queues.dlq, queues.dlq)
    missing = queues.dlq.rsplit("/", 1)[0] + "/sealq-no-such-queue"
    with pytest.raises(QueueAccessError, match="--queue-url"):
        redrive(spy, queues.dlq, missing)
    with pytest.raises(QueueAccessError, match="--dlq-url"):
        purge(spy, missing)
    assert set(spy.calls) == {"get_queue_attributes"}


def test_purge_dry_run_deletes_nothing_and_purge_only_the_selection(queues: Queues) -> None:
    expired = Selection(reasons=frozenset({"key-expired"}))
    dry = purge(queues.sqs, queues.dlq, expired, dry_run=True)
    assert (dry.tally.matched, dry.tally.done, dry.view()["purged"]) == (2, 0, 0)
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)

    old = purge(queues.sqs, queues.dlq, Selection(reasons=expired.reasons, older_than_s=7 * 86400))
    assert (old.tally.matched, old.tally.done) == (0, 0)

    result = purge(queues.sqs, queues.dlq, expired)
    assert (result.tally.matched, result.tally.done, result.tally.failed) == (2, 2, 0)
    assert counts(queues.sqs, queues.dlq) == (len(MIX) - 2, 0)
    assert reasons(drain(queues.sqs, queues.dlq)) == {"handler-error": 3, None: 1}


def test_watch_check_returns_breaches_naming_who_is_behind(queues: Queues) -> None:
    thresholds = [parse_threshold("key-expired=0"), parse_threshold("total=100")]
    check = watch_check(queues.sqs, queues.dlq, thresholds)
    assert check.total == len(MIX) and check.thresholds == tuple(thresholds)
    assert [b.threshold.name for b in check.breaches] == ["key-expired"]
    assert check.breaches[0].clients == [("legacy", 1), ("shop", 1)]
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)
    calm = watch_check(queues.sqs, queues.dlq, [parse_threshold("total=6")], verify=False)
    assert calm.breaches == [] and calm.view()["total"] == len(MIX)
