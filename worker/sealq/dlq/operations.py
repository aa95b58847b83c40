"""The DLQ operations as functions that return what they did: stats, peek, redrive, purge
and one watch check.

They take plain values (an SQS client, URLs, a `Selection`, limits), do the SQS work through
`sealq.dlq.scan` and the deciding through `sealq.dlq.records`, and hand back result objects;
printing, prompting and exit codes are the caller's (the CLI), so the same rules serve a
script, a test or another front end. Each checks its queues before touching a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from botocore.exceptions import ClientError

from sealq.aws.errors import AwsError, describe_aws_error, error_code
from sealq.dlq.records import (
    DlqRecord,
    Selection,
    Threshold,
    aggregate,
    check_thresholds,
    parse_message,
    redrive_entry,
)
from sealq.dlq.results import MoveTask, PeekResult, PurgeResult, RedriveResult, StatsResult, Tally, WatchCheck
from sealq.dlq.scan import (
    Scan,
    Warn,
    delete_messages,
    dlq_attributes,
    int_attribute,
    queue_attributes,
    send_entries,
    start_move_task,
)
from sealq.errors import SealqError
from sealq.progress import Progress

DEFAULT_MAX_MESSAGES = 10_000
EVERYTHING = Selection()

Act = Callable[[list[dict[str, Any]]], tuple[list[str], int]]
"""Does something to a page of selected messages; returns the ids that left the DLQ and how
many failed."""


class SameQueueError(SealqError):
    """Redrive was given the DLQ as its own source queue."""


class OperationFailedError(SealqError):
    """An SQS call failed part way through a redrive or purge; the message says how many
    messages were already done, the rest are back in the DLQ."""


def _running(progress: Progress | None) -> AbstractContextManager[object]:
    """The progress display lasts exactly as long as the scan (not the checks before it)."""
    return progress if progress is not None else nullcontext()


def _read_all(
    sqs: Any, url: str, limit: int, progress: Progress | None, warn: Warn | None
) -> tuple[list[DlqRecord], bool]:
    """Every visible message's record (hidden only while scanning); and whether `limit` cut it."""
    records: list[DlqRecord] = []
    with _running(progress), Scan(sqs, url, limit, progress, warn) as scan:
        for page in scan.pages():
            now = time.time()
            records += [parse_message(m, now) for m in page]
    return records, scan.truncated


def stats(
    sqs: Any,
    dlq_url: str,
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> StatsResult:
    """Counts by reason x kid x client id; every message is visible again afterwards."""
    attrs = dlq_attributes(sqs, dlq_url)
    records, truncated = _read_all(sqs, dlq_url, max_messages, progress, warn)
    in_flight = int_attribute(attrs, "ApproximateNumberOfMessagesNotVisible")
    return StatsResult(dlq_url, aggregate(records), truncated, in_flight)


def peek(sqs: Any, dlq_url: str, *, count: int = 10, warn: Warn | None = None) -> PeekResult:
    """Up to `count` messages' records: attributes and sizes, never bodies."""
    dlq_attributes(sqs, dlq_url)
    records, _ = _read_all(sqs, dlq_url, count, None, warn)
    return PeekResult(records)


def _process(
    sqs: Any,
    dlq_url: str,
    selection: Selection,
    act: Act,
    *,
    action: str,
    label: str,
    max_messages: int,
    dry_run: bool,
    progress: Progress | None,
    warn: Warn | None,
) -> Tally:
    """Scan the DLQ, hand each page's selected messages to `act` (unless `dry_run`), and
    release the rest."""
    tally = Tally()
    with _running(progress), Scan(sqs, dlq_url, max_messages, progress, warn) as scan:
        try:
            for page in scan.pages():
                now = time.time()
                tally.scanned += len(page)
                chosen = [m for m in page if selection.matches(parse_message(m, now))]
                tally.matched += len(chosen)
                if chosen and not dry_run:
                    removed, failed = act(chosen)
                    scan.consumed(removed)
                    tally.done += len(removed)
                    tally.failed += failed
        except AwsError as exc:
            done = f"; {tally.done} message(s) were {label} before this failure"
            raise OperationFailedError(describe_aws_error(exc, action) + done) from None
        tally.truncated = scan.truncated
    return tally


def _same_queue(dlq_url: str, queue_url: str, dlq_attrs: dict[str, str], queue_attrs: dict[str, str]) -> bool:
    if dlq_url.rstrip("/") == queue_url.rstrip("/"):
        return True
    arn = dlq_attrs.get("QueueArn")
    return arn is not None and arn == queue_attrs.get("QueueArn")


def move_task_refusal(exc: ClientError, dlq_url: str, dlq_arn: str, queue_url: str) -> str:
    """Why StartMessageMoveTask failed, and what to do, in a sentence. SQS moves messages
    only out of a queue that some queue's RedrivePolicy names as its dead-letter queue (AWS
    API reference); otherwise it answers InvalidParameterValue, "Source queue must be
    configured as a Dead Letter Queue." (LocalStack 4.14.0 gives the same code and text)."""
    code = error_code(exc)
    said = str(exc.response.get("Error", {}).get("Message", "")).lower().replace("-", " ")
    if code == "InvalidParameterValue" and "dead letter queue" in said:
        return (
            f"SQS will not start a move task ({code}): no queue names {dlq_url} as its dead-letter "
            f"queue; for a server-side move, give {queue_url} a RedrivePolicy with "
            f"deadLetterTargetArn {dlq_arn} (and its maxReceiveCount)"
        )
    return f"StartMessageMoveTask is not available here ({code})"


def _try_move_task(
    sqs: Any, dlq_url: str, queue_url: str, dlq_attrs: dict[str, str], queue_attrs: dict[str, str]
) -> MoveTask | tuple[str, str]:
    """SQS's own redrive; or, when SQS will not start one, its error code and why in words."""
    source, destination = dlq_attrs.get("QueueArn"), queue_attrs.get("QueueArn")
    if not (source and destination):
        return "no queue ARN", "StartMessageMoveTask needs both queues' ARNs, and SQS gave none"
    try:
        handle = start_move_task(sqs, source, destination)
    except ClientError as exc:
        return error_code(exc), move_task_refusal(exc, dlq_url, source, queue_url)
    return MoveTask(handle, int_attribute(dlq_attrs, "ApproximateNumberOfMessages"))


def redrive(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    selection: Selection = EVERYTHING,
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    dry_run: bool = False,
    progress: Progress | None = None,
    warn: Warn | None = None,
    on_fallback: Callable[[str], None] | None = None,
) -> RedriveResult:
    """Send the selected messages back to `queue_url`, then delete them from the DLQ.

    Send before delete, and only what the source queue accepted leaves the DLQ: a failure
    duplicates a message, never loses one. Everything (and not a dry run) is first tried as
    an SQS move task, which moves messages server-side; where that is not offered, messages
    move one by one like a selection, after `on_fallback` heard why (`move_task_refusal`).
    """
    dlq_attrs = dlq_attributes(sqs, dlq_url)
    queue_attrs = queue_attributes(sqs, queue_url, "--queue-url")
    if _same_queue(dlq_url, queue_url, dlq_attrs, queue_attrs):
        raise SameQueueError("--dlq-url and --queue-url are the same queue; redrive needs the source queue")
    unavailable = why = None
    if selection.is_everything and not dry_run:
        started = _try_move_task(sqs, dlq_url, queue_url, dlq_attrs, queue_attrs)
        if isinstance(started, MoveTask):
            return RedriveResult(dry_run=False, move_task=started)
        unavailable, why = started
        if on_fallback is not None:
            on_fallback(why)
    duplicated = 0

    def move(chosen: list[dict[str, Any]]) -> tuple[list[str], int]:
        nonlocal duplicated
        entries = [redrive_entry(str(i), m) for i, m in enumerate(chosen)]
        accepted, failed = send_entries(sqs, queue_url, entries)
        removed, not_deleted = delete_messages(sqs, dlq_url, [chosen[int(i)] for i in accepted])
        if not_deleted:
            duplicated += not_deleted
            if warn is not None:
                warn(
                    f"{not_deleted} redriven message(s) could not be deleted from "
                    "the DLQ and are now in both queues"
                )
        return removed, failed + not_deleted

    tally = _process(
        sqs,
        dlq_url,
        selection,
        move,
        action="dlq redrive",
        label="redriven",
        max_messages=max_messages,
        dry_run=dry_run,
        progress=progress,
        warn=warn,
    )
    tally.duplicated = duplicated
    return RedriveResult(dry_run, tally, move_task_unavailable=unavailable, move_task_why=why)


def purge(
    sqs: Any,
    dlq_url: str,
    selection: Selection = EVERYTHING,
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    dry_run: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> PurgeResult:
    """Delete the selected messages for good. A caller that asks a person first checks the
    queue itself (`dlq_attributes`), asks, and passes `verify=False`."""
    if verify:
        dlq_attributes(sqs, dlq_url)

    def delete(chosen: list[dict[str, Any]]) -> tuple[list[str], int]:
        return delete_messages(sqs, dlq_url, chosen)

    tally = _process(
        sqs,
        dlq_url,
        selection,
        delete,
        action="dlq purge",
        label="purged",
        max_messages=max_messages,
        dry_run=dry_run,
        progress=progress,
        warn=warn,
    )
    return PurgeResult(dry_run, tally)


def watch_check(
    sqs: Any,
    dlq_url: str,
    thresholds: Sequence[Threshold],
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    verify: bool = True,
    warn: Warn | None = None,
) -> WatchCheck:
    """One look at the DLQ against `thresholds`. A watcher checks the queue once and then
    passes `verify=False`, so a later blip is a failed check, not a wrong queue. SQS errors
    during the scan propagate as they are: the caller decides whether to retry."""
    if verify:
        dlq_attributes(sqs, dlq_url)
    records, truncated = _read_all(sqs, dlq_url, max_messages, None, warn)
    breaches = check_thresholds(records, thresholds)
    return WatchCheck(time.time(), len(records), truncated, tuple(thresholds), breaches)


__all__ = [
    "DEFAULT_MAX_MESSAGES",
    "EVERYTHING",
    "OperationFailedError",
    "SameQueueError",
    "move_task_refusal",
    "peek",
    "purge",
    "redrive",
    "stats",
    "watch_check",
]
