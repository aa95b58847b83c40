"""`sealq dlq ...`: what is in a dead-letter queue, and getting it out again.

Every command first checks its queues with GetQueueAttributes, which touches no message, so a
wrong URL or endpoint fails before anything moves. Reading a queue means receiving from it:
a scan hides each message for a short visibility timeout, keeps it hidden until the scan ends
(releasing earlier would only make SQS hand the same messages back) and then makes everything
it did not delete visible again, also on errors and Ctrl-C. If the process dies, the visibility
timeout brings the messages back by itself. Bodies are never printed: they are sealed, and an
operator has no business with them anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from sealq.aws import clients as aws
from sealq.aws.errors import AwsError, describe_aws_error, error_code
from sealq.aws.limits import SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES, entry_size
from sealq.cli.parser import OneLineArgumentParser
from sealq.dlq.records import (
    TOTAL,
    Breach,
    DlqRecord,
    Selection,
    Stats,
    Threshold,
    aggregate,
    check_thresholds,
    parse_message,
    parse_reason,
    parse_threshold,
    redrive_entry,
)
from sealq.durations import format_duration, parse_duration
from sealq.errors import SealqError
from sealq.progress import Progress

EXIT_THRESHOLD = 3
"""`dlq watch`: a threshold was crossed (1 stays 'the command itself failed')."""
DEFAULT_MAX_MESSAGES = 10_000
SCAN_VISIBILITY_S = 30
"""How long a scan hides each message; a crashed scan's messages are back after this."""
RECEIVE_WAIT_S = 1
"""A short long-poll: a 0 s poll samples only some SQS servers and may answer empty early."""
_QUEUE_ATTRIBUTES = (
    "QueueArn",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "RedrivePolicy",
)


# ----- arguments -------------------------------------------------------------------------


def _arg_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise ValueError(f"invalid count {text!r}: use a whole number above zero")
    return int(text)


def add_dlq_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    dlq = subparsers.add_parser(
        "dlq",
        help="inspect, redrive and purge a dead-letter queue",
        description="What is in a sealq dead-letter queue, why, under which key, from which "
        "client; and moving it back or deleting it. Message bodies are never shown.",
    )
    sub = dlq.add_subparsers(
        dest="dlq_command", required=True, metavar="COMMAND", parser_class=OneLineArgumentParser
    )

    def command(name: str, help_text: str, *, scans: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dlq-url", required=True, help="the dead-letter queue")
        p.add_argument("--json", action="store_true", help="print JSON")
        if scans:
            p.add_argument(
                "--max-messages",
                type=_arg_type(_positive),
                default=DEFAULT_MAX_MESSAGES,
                help=f"look at no more messages than this (default {DEFAULT_MAX_MESSAGES})",
            )
        return p

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--reason",
            action="append",
            type=_arg_type(parse_reason),
            default=[],
            help="only this sealq-reason (repeatable; 'unlabelled' = no reason)",
        )
        p.add_argument("--kid", action="append", default=[], help="only this key id (repeatable)")
        p.add_argument("--client-id", action="append", default=[], help="only this client id (repeatable)")
        p.add_argument(
            "--older-than",
            type=_arg_type(parse_duration),
            metavar="DURATION",
            help="only messages in the DLQ longer than this, e.g. 7d, 12h",
        )
        p.add_argument("--dry-run", action="store_true", help="only count what would be done")

    p = command("stats", "count messages by reason, key id and client id (table on a terminal)")
    p.set_defaults(func=cmd_stats)

    p = command("peek", "show some messages' attributes and sizes (never bodies)", scans=False)
    p.add_argument("-n", type=_arg_type(_positive), default=10, help="how many (default 10)")
    p.set_defaults(func=cmd_peek)

    p = command("redrive", "send selected messages back to the source queue, then delete them")
    p.add_argument("--queue-url", required=True, help="the source queue to send them to")
    filters(p)
    p.set_defaults(func=cmd_redrive)

    p = command("purge", "delete selected messages from the DLQ")
    filters(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_purge)

    p = command("watch", "re-check thresholds; exit 3 when one is crossed")
    p.add_argument(
        "--max",
        action="append",
        type=_arg_type(parse_threshold),
        default=[],
        metavar="REASON=N",
        dest="thresholds",
        help="alert above N messages with REASON, or total=N (repeatable; default key-expired=0)",
    )
    p.add_argument(
        "--interval",
        type=_arg_type(parse_duration),
        default=60,
        metavar="DURATION",
        help="time between checks (default 60s)",
    )
    p.add_argument("--once", action="store_true", help="check once: exit 0 under thresholds")
    p.set_defaults(func=cmd_watch)


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        reasons=frozenset(args.reason),
        kids=frozenset(args.kid),
        client_ids=frozenset(args.client_id),
        older_than_s=args.older_than,
    )


def _json_mode(args: argparse.Namespace) -> bool:
    """JSON when asked for, or when a program rather than a person reads stdout."""
    return bool(args.json) or not sys.stdout.isatty()


def _progress(label: str, enabled: bool) -> Progress:
    return Progress(label, enabled=enabled and sys.stderr.isatty())


# ----- SQS -------------------------------------------------------------------------------


def _sqs() -> Any:
    return aws.client("sqs")


def _queue_attributes(sqs: Any, url: str, option: str) -> dict[str, str]:
    """GetQueueAttributes: proves the queue exists and is reachable, touching no message."""
    try:
        response = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_QUEUE_ATTRIBUTES))
    except AwsError as exc:
        raise SealqError(describe_aws_error(exc, f"SQS GetQueueAttributes on {option} {url}")) from None
    return dict(response.get("Attributes", {}))


def _dlq_attributes(sqs: Any, url: str) -> dict[str, str]:
    """As `_queue_attributes`, refusing a queue that is itself the *source* of a redrive
    policy: that is the work queue, not a dead-letter queue, and scanning it would delay
    live messages and count towards their maxReceiveCount. Decided from queue attributes
    alone, so a wrong URL touches no message."""
    attrs = _queue_attributes(sqs, url, "--dlq-url")
    policy = attrs.get("RedrivePolicy")
    if policy:
        try:
            target = str(json.loads(policy).get("deadLetterTargetArn", "?"))
        except ValueError:
            target = "?"
        raise SealqError(
            f"{url} is not a dead-letter queue: it sends its own failures to {target}; "
            "pass that queue's URL as --dlq-url"
        )
    return attrs


def _int(attrs: dict[str, str], name: str) -> int | None:
    value = attrs.get(name, "")
    return int(value) if value.isdigit() else None


@dataclass
class Scan:
    """Receives each visible message of a queue once, up to `limit`, hiding what it holds.

    Ends when a receive brings nothing new (empty, or only messages already seen because
    their visibility lapsed) or at `limit`; its receive calls are bounded by `limit` too.
    Everything not `consumed` is made visible again by `release`.
    """

    sqs: Any
    url: str
    limit: int
    progress: Progress | None = None
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
            print(
                "sealq: warning: "
                + describe_aws_error(exc, "SQS ChangeMessageVisibilityBatch")
                + f"; the messages reappear within {SCAN_VISIBILITY_S}s",
                file=sys.stderr,
            )


def _read_all(sqs: Any, url: str, limit: int, *, show_progress: bool) -> tuple[list[DlqRecord], bool]:
    """Every visible message's record (hidden only while scanning); and whether `limit` cut it."""
    records: list[DlqRecord] = []
    with _progress("scanned", show_progress) as progress, Scan(sqs, url, limit, progress) as scan:
        for page in scan.pages():
            now = time.time()
            records += [parse_message(m, now) for m in page]
    return records, scan.truncated


def _delete(sqs: Any, url: str, messages: Sequence[dict[str, Any]]) -> tuple[list[str], int]:
    """DeleteMessageBatch; the ids deleted and how many SQS refused."""
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


def _send_batches(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """At most 10 entries and 1 MiB per SendMessageBatch, as SQS allows."""
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


# ----- rendering -------------------------------------------------------------------------


def _cell(value: object, width: int = 40) -> str:
    """Client-controlled text made safe for a terminal: no control characters, bounded."""
    if value is None:
        return "-"
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def render_stats(url: str, stats: Stats, *, truncated: bool, in_flight: int | None) -> str:
    """The terminal view of `dlq stats`."""
    head = (
        f"{_cell(url, 200)}: {stats.total} message(s), {stats.total_bytes} bytes, "
        f"oldest {_age(stats.oldest_age_s)}, newest {_age(stats.newest_age_s)}"
    )
    lines = [head]
    if stats.groups:
        rows = [
            [
                g.reason,
                _cell(g.kid),
                _cell(g.client_id),
                str(g.count),
                _age(g.oldest_age_s),
                _age(g.newest_age_s),
            ]
            for g in stats.groups
        ]
        lines += ["", _table(["REASON", "KID", "CLIENT", "COUNT", "OLDEST", "NEWEST"], rows, (3,))]
        lines += ["", "by reason: " + ", ".join(f"{r} {n}" for r, n in stats.by_reason.items())]
    lines += _notes(truncated, in_flight)
    return "\n".join(lines)


def _notes(truncated: bool, in_flight: int | None) -> list[str]:
    notes = []
    if truncated:
        notes.append("note: stopped at --max-messages; there may be more messages")
    if in_flight:
        notes.append(f"note: about {in_flight} message(s) were in flight (hidden) and not counted")
    return notes


def render_peek(records: Sequence[DlqRecord]) -> str:
    blocks = []
    for r in records:
        lines = [
            f"{_cell(r.message_id, 80)}  {r.reported_reason}  kid {_cell(r.kid)}  "
            f"client {_cell(r.client_id)}  age {_age(r.age_s)}  size {r.size} "
            f"(body {r.body_size})  receives {_cell(r.receive_count)}"
        ]
        lines += [f"    {_cell(k, 60)} = {_cell(v, 200)}" for k, v in r.attributes.items()]
        blocks.append("\n".join(lines))
    return "\n".join(blocks) if blocks else "no messages"


def _who(pairs: Sequence[tuple[str | None, int]]) -> str:
    return ", ".join(f"{_cell(name) if name is not None else '(none)'} ({n})" for name, n in pairs[:20]) + (
        f", +{len(pairs) - 20} more" if len(pairs) > 20 else ""
    )


def render_breach(b: Breach) -> str:
    t = b.threshold
    return f"ALERT {t.name}: {b.count} > {t.limit}; clients: {_who(b.clients)}; kids: {_who(b.kids)}"


# ----- commands --------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    sqs = _sqs()
    attrs = _dlq_attributes(sqs, args.dlq_url)
    json_mode = _json_mode(args)
    records, truncated = _read_all(sqs, args.dlq_url, args.max_messages, show_progress=not json_mode)
    stats = aggregate(records)
    in_flight = _int(attrs, "ApproximateNumberOfMessagesNotVisible")
    if json_mode:
        view = stats.view()
        view.update(dlq_url=args.dlq_url, truncated=truncated, in_flight_before_scan=in_flight)
        print(json.dumps(view))
    else:
        print(render_stats(args.dlq_url, stats, truncated=truncated, in_flight=in_flight))
    return 0


def cmd_peek(args: argparse.Namespace) -> int:
    sqs = _sqs()
    _dlq_attributes(sqs, args.dlq_url)
    records, _ = _read_all(sqs, args.dlq_url, args.n, show_progress=False)
    if _json_mode(args):
        print(
            json.dumps({"count": len(records), "messages": [r.view(with_attributes=True) for r in records]})
        )
    else:
        print(render_peek(records))
    return 0


@dataclass
class _Tally:
    matched: int = 0
    done: int = 0
    failed: int = 0
    scanned: int = 0
    truncated: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "failed": self.failed,
            "scanned": self.scanned,
            "truncated": self.truncated,
        }


def _process(
    args: argparse.Namespace,
    sqs: Any,
    selection: Selection,
    act: Callable[[list[dict[str, Any]]], tuple[list[str], int]],
    label: str,
) -> _Tally:
    """Scan the DLQ, hand each page's selected messages to `act` (unless --dry-run), and
    release the rest. `act` returns the ids it removed from the DLQ and how many failed."""
    tally = _Tally()
    with (
        _progress("scanned", not args.json) as progress,
        Scan(sqs, args.dlq_url, args.max_messages, progress) as scan,
    ):
        try:
            for page in scan.pages():
                now = time.time()
                tally.scanned += len(page)
                chosen = [m for m in page if selection.matches(parse_message(m, now))]
                tally.matched += len(chosen)
                if chosen and not args.dry_run:
                    removed, failed = act(chosen)
                    scan.consumed(removed)
                    tally.done += len(removed)
                    tally.failed += failed
        except AwsError as exc:
            raise SealqError(
                describe_aws_error(exc, f"dlq {args.dlq_command}")
                + f"; {tally.done} message(s) were {label} before this failure"
            ) from None
        tally.truncated = scan.truncated
    return tally


def _report(args: argparse.Namespace, verb: str, tally: _Tally, extra: dict[str, Any]) -> int:
    if args.json:
        print(
            json.dumps(
                {verb: 0 if args.dry_run else tally.done, "dry_run": args.dry_run, **tally.view(), **extra}
            )
        )
    elif args.dry_run:
        print(f"would have {verb} {tally.matched} message(s) (dry run; scanned {tally.scanned})")
    else:
        failed = f", {tally.failed} failed" if tally.failed else ""
        print(f"{verb} {tally.done} message(s){failed} (scanned {tally.scanned})")
    if tally.truncated and not args.json:
        print("note: stopped at --max-messages; there may be more to do", file=sys.stderr)
    return 1 if tally.failed else 0


def _same_queue(dlq_attrs: dict[str, str], queue_attrs: dict[str, str], args: argparse.Namespace) -> bool:
    if args.dlq_url.rstrip("/") == args.queue_url.rstrip("/"):
        return True
    arn = dlq_attrs.get("QueueArn")
    return arn is not None and arn == queue_attrs.get("QueueArn")


def cmd_redrive(args: argparse.Namespace) -> int:
    sqs = _sqs()
    dlq_attrs = _dlq_attributes(sqs, args.dlq_url)
    queue_attrs = _queue_attributes(sqs, args.queue_url, "--queue-url")
    if _same_queue(dlq_attrs, queue_attrs, args):
        raise SealqError("--dlq-url and --queue-url are the same queue; redrive needs the source queue")
    selection = _selection(args)
    extra: dict[str, Any] = {"method": "manual"}
    if selection.is_everything and not args.dry_run:
        started = _try_move_task(sqs, dlq_attrs, queue_attrs, args)
        if isinstance(started, dict):
            return 0
        extra["move_task_unavailable"] = started
        if not args.json:
            print(f"StartMessageMoveTask is not available here ({started}); moving messages one by one")

    def move(chosen: list[dict[str, Any]]) -> tuple[list[str], int]:
        entries = [redrive_entry(str(i), m) for i, m in enumerate(chosen)]
        sent: list[dict[str, Any]] = []
        failed = 0
        for batch in _send_batches(entries):
            response = sqs.send_message_batch(QueueUrl=args.queue_url, Entries=batch)
            sent += [chosen[int(ok["Id"])] for ok in response.get("Successful", [])]
            failed += len(response.get("Failed", []))
        # Only what the source queue accepted leaves the DLQ: a failure duplicates, never loses.
        removed, not_deleted = _delete(sqs, args.dlq_url, sent)
        if not_deleted:
            print(
                f"sealq: warning: {not_deleted} redriven message(s) could not be deleted from "
                "the DLQ and are now in both queues",
                file=sys.stderr,
            )
        return removed, failed + not_deleted

    tally = _process(args, sqs, selection, move, "redriven")
    return _report(args, "redriven", tally, extra)


def _try_move_task(
    sqs: Any, dlq_attrs: dict[str, str], queue_attrs: dict[str, str], args: argparse.Namespace
) -> dict[str, Any] | str:
    """SQS's own redrive, which moves everything server-side; the error code when the endpoint
    does not offer it (then the caller moves messages itself)."""
    source, destination = dlq_attrs.get("QueueArn"), queue_attrs.get("QueueArn")
    if not (source and destination):
        return "no queue ARN"
    try:
        response = sqs.start_message_move_task(SourceArn=source, DestinationArn=destination)
    except ClientError as exc:
        return error_code(exc)
    approximate = _int(dlq_attrs, "ApproximateNumberOfMessages")
    view = {
        "redriven": None,
        "method": "move-task",
        "task_handle": response.get("TaskHandle"),
        "approximate_messages": approximate,
        "dry_run": False,
    }
    if args.json:
        print(json.dumps(view))
    else:
        print(
            f"started an SQS message move task for about {approximate} message(s); "
            f"task handle {response.get('TaskHandle')}"
        )
    return view


def cmd_purge(args: argparse.Namespace) -> int:
    selection = _selection(args)
    if not (args.yes or args.dry_run) and not sys.stdin.isatty():
        raise SealqError("purge deletes messages for good: pass --yes (or --dry-run) when not on a terminal")
    sqs = _sqs()
    _dlq_attributes(sqs, args.dlq_url)
    if not (args.yes or args.dry_run):
        try:
            answer = input(f"delete {selection.describe()} from {args.dlq_url}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1

    def delete(chosen: list[dict[str, Any]]) -> tuple[list[str], int]:
        return _delete(sqs, args.dlq_url, chosen)

    tally = _process(args, sqs, selection, delete, "purged")
    return _report(args, "purged", tally, {})


def _check(sqs: Any, args: argparse.Namespace, thresholds: list[Threshold]) -> list[Breach]:
    records, truncated = _read_all(sqs, args.dlq_url, args.max_messages, show_progress=False)
    breaches = check_thresholds(records, thresholds)
    if args.json:
        print(
            json.dumps(
                {
                    "time": round(time.time(), 3),
                    "total": len(records),
                    "truncated": truncated,
                    "breaches": [b.view() for b in breaches],
                }
            ),
            flush=True,
        )
        return breaches
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for b in breaches:
        print(f"{stamp} {render_breach(b)}", flush=True)
    if not breaches:
        limits = ", ".join(f"{t.name}<={t.limit}" for t in thresholds)
        print(f"{stamp} ok: {len(records)} message(s); within {limits}", flush=True)
    return breaches


def cmd_watch(args: argparse.Namespace) -> int:
    thresholds: list[Threshold] = args.thresholds or [parse_threshold("key-expired=0")]
    sqs = _sqs()
    _dlq_attributes(sqs, args.dlq_url)
    while True:
        try:
            if _check(sqs, args, thresholds):
                return EXIT_THRESHOLD
        except AwsError as exc:
            if args.once:
                raise
            # A watcher outlives blips; the next check tries again.
            print(f"sealq: warning: {describe_aws_error(exc, 'dlq watch')}", file=sys.stderr)
        if args.once:
            return 0
        time.sleep(args.interval)


__all__ = ["EXIT_THRESHOLD", "TOTAL", "add_dlq_parser"]
