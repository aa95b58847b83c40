"""The SQS side of the DLQ tools, and only that: reading queue attributes, scanning a queue,
deleting and sending in batches, asking SQS for its own redrive.

Every operation first reads its queues with GetQueueAttributes, which touches no message, so
a wrong URL or endpoint fails before anything moves. Reading a queue means receiving from it:
a scan hides each message for a short visibility timeout, keeps it hidden until the scan ends
(releasing earlier would only make SQS hand the same messages back) and then makes everything
it did not delete visible again, also on errors and Ctrl-C. If the process dies, the
visibility timeout brings the messages back by itself. Nothing here prints: what the operator
should hear about goes to a `warn` callback, the caller decides how to show it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sealq.aws.errors import AwsError, describe_aws_error
from sealq.aws.limits import SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES, entry_size
from sealq.errors import SealqError

SCAN_VISIBILITY_S = 30
"""How long a scan hides each message; a crashed scan's messages are back after this."""
RECEIVE_WAIT_S = 1
"""A short long-poll: a 0 s poll samples only some SQS servers and may answer empty early."""
QUEUE_ATTRIBUTES = (
    "QueueArn",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "RedrivePolicy",
)

Warn = Callable[[str], None]
"""Receives a one-line warning (no prefix) the operator should see; the caller renders it."""


class Advance(Protocol):
    """What a scan needs of a progress display (e.g. `sealq.progress.Progress`)."""

    def advance(self, count: int = 1) -> None: ...


class QueueAccessError(SealqError):
    """GetQueueAttributes failed: the queue does not exist or cannot be reached."""


class NotADeadLetterQueueError(SealqError):
    """The queue given as the DLQ has a redrive policy of its own: it is a work queue."""


def queue_attributes(sqs: Any, url: str, option: str) -> dict[str, str]:
    """GetQueueAttributes: proves the queue exists and is reachable, touching no message.
    `option` names the flag the URL came from, so the error says which one to fix."""
    try:
        response = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(QUEUE_ATTRIBUTES))
    except AwsError as exc:
        raise QueueAccessError(
            describe_aws_error(exc, f"SQS GetQueueAttributes on {option} {url}")
        ) from None
    return dict(response.get("Attributes", {}))


def dlq_attributes(sqs: Any, url: str) -> dict[str, str]:
    """As `queue_attributes`, refusing a queue that is itself the *source* of a redrive
    policy: that is the work queue, not a dead-letter queue, and scanning it would delay
    live messages and count towards their maxReceiveCount. Decided from queue attributes
    alone, so a wrong URL touches no message."""
    attrs = queue_attributes(sqs, url, "--dlq-url")
    policy = attrs.get("RedrivePolicy")
    if policy:
        try:
            target = str(json.loads(policy).get("deadLetterTargetArn", "?"))
        except ValueError:
            target = "?"
        raise NotADeadLetterQueueError(
            f"{url} is not a dead-letter queue: it sends its own failures to {target}; "
            "pass that queue's URL as --dlq-url"
        )
    return attrs


def int_attribute(attrs: dict[str, str], name: str) -> int | None:
    value = attrs.get(name, "")
    return int(value) if value.isdigit() else None


@dataclass
class Scan:
    """Receives each visible message of a queue once, up to `limit`, hiding what it holds.

    Ends when a receive brings nothing new (empty, or only messages already seen because
    their visibility lapsed) or at `limit`; its receive calls are bounded by `limit` too.
    Everything not `consumed` is made visible again by `release`, which leaving the `with`
    block does; if SQS refuses that, `warn` hears of it (the messages come back by
    themselves within SCAN_VISIBILITY_S).
    """

    sqs: Any
    url: str
    limit: int
    progress: Advance | None = None
    warn: Warn | None = None
    held: dict[str, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    truncated: bool = False

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        for _ in range(self.limit // SQS_MAX_BATCH_ENTRIES + 10):
            room = self.limit - len(self.seen)
            if room <= 0:
                self.truncated = True
                return
            batch = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(SQS_MAX_BATCH_ENTRIES, room),
                VisibilityTimeout=SCAN_VISIBILITY_S,
                WaitTimeSeconds=RECEIVE_WAIT_S,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            fresh = []
            for message in batch:
                message_id = str(message["MessageId"])
                self.held[message_id] = str(message["ReceiptHandle"])  # the newest handle
                if message_id not in self.seen:
                    self.seen.add(message_id)
                    fresh.append(message)
            if not fresh:
                return
            if self.progress is not None:
                self.progress.advance(len(fresh))
            yield fresh

    def consumed(self, message_ids: Sequence[str]) -> None:
        """These left the queue: nothing to release for them."""
        for message_id in message_ids:
            self.held.pop(message_id, None)

    def release(self) -> int:
        """Visibility 0 for everything still held; returns how many SQS would not release
        (their visibility lapsed already, so they are visible anyway)."""
        handles = list(self.held.values())
        self.held.clear()
        failed = 0
        for start in range(0, len(handles), SQS_MAX_BATCH_ENTRIES):
            chunk = handles[start : start + SQS_MAX_BATCH_ENTRIES]
            response = self.sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)
                ],
            )
            failed += len(response.get("Failed", []))
        return failed

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.release()
        except AwsError as exc:
            if self.warn is not None:
                self.warn(
                    describe_aws_error(exc, "SQS ChangeMessageVisibilityBatch")
                    + f"; the messages reappear within {SCAN_VISIBILITY_S}s"
                )


def delete_messages(sqs: Any, url: str, messages: Sequence[dict[str, Any]]) -> tuple[list[str], int]:
    """DeleteMessageBatch for received messages; the ids deleted and how many SQS refused."""
    done: list[str] = []
    failed = 0
    for start in range(0, len(messages), SQS_MAX_BATCH_ENTRIES):
        chunk = messages[start : start + SQS_MAX_BATCH_ENTRIES]
        response = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )
        done += [str(chunk[int(ok["Id"])]["MessageId"]) for ok in response.get("Successful", [])]
        failed += len(response.get("Failed", []))
    return done, failed


def send_batches(entries: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Entries grouped as SendMessageBatch allows: at most SQS_MAX_BATCH_ENTRIES and
    SQS_MAX_BATCH_BYTES (sized by `sealq.aws.limits`) per call."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        n = entry_size(entry)
        if batch and (len(batch) == SQS_MAX_BATCH_ENTRIES or size + n > SQS_MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += n
    if batch:
        yield batch


def send_entries(sqs: Any, url: str, entries: Sequence[dict[str, Any]]) -> tuple[list[str], int]:
    """SendMessageBatch in as many calls as the limits need; the `Id`s SQS accepted and how
    many it refused."""
    accepted: list[str] = []
    failed = 0
    for batch in send_batches(entries):
        response = sqs.send_message_batch(QueueUrl=url, Entries=batch)
        accepted += [str(ok["Id"]) for ok in response.get("Successful", [])]
        failed += len(response.get("Failed", []))
    return accepted, failed


def start_move_task(sqs: Any, source_arn: str, destination_arn: str) -> str | None:
    """StartMessageMoveTask: SQS moves every message server-side. Returns its task handle;
    a ClientError means the endpoint refused or does not offer it."""
    response = sqs.start_message_move_task(SourceArn=source_arn, DestinationArn=destination_arn)
    handle = response.get("TaskHandle")
    return None if handle is None else str(handle)


__all__ = [
    "QUEUE_ATTRIBUTES",
    "RECEIVE_WAIT_S",
    "SCAN_VISIBILITY_S",
    "Advance",
    "NotADeadLetterQueueError",
    "QueueAccessError",
    "Scan",
    "Warn",
    "delete_messages",
    "dlq_attributes",
    "int_attribute",
    "queue_attributes",
    "send_batches",
    "send_entries",
    "start_move_task",
]
