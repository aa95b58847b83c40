"""`sealq dlq ...`: argparse wiring, rendering and exit codes for the DLQ operations.

The work is done by `sealq.dlq.operations`, which returns results; this module only decides
what the operator sees: a table on a terminal and JSON for programs, one `sealq: warning:`
line per warning on stderr, and the exit code. Bodies are never printed: they are sealed, and
an operator has no business with them anyway. It is imported whenever the `sealq` parser is
built, so it imports nothing heavier than botocore.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from sealq.aws import clients as aws
from sealq.aws.errors import AwsError, describe_aws_error
from sealq.cli.dlq_render import render_breach, render_peek, render_stats
from sealq.cli.parser import OneLineArgumentParser
from sealq.dlq import operations as ops
from sealq.dlq.operations import DEFAULT_MAX_MESSAGES
from sealq.dlq.records import (
    TOTAL,
    Selection,
    Threshold,
    parse_reason,
    parse_threshold,
)
from sealq.dlq.results import Tally, WatchCheck
from sealq.dlq.scan import dlq_attributes
from sealq.durations import parse_duration
from sealq.errors import SealqError
from sealq.progress import Progress

EXIT_THRESHOLD = 3
"""`dlq watch`: a threshold was crossed (1 stays 'the command itself failed')."""
DEFAULT_THRESHOLD = "key-expired=0"


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
    p.add_argument("--interval", type=_arg_type(parse_duration), default=60, metavar="DURATION",
                   help="time between checks (default 60s)")  # fmt: skip
    p.add_argument("--once", action="store_true", help="check once: exit 0 under thresholds")
    p.set_defaults(func=cmd_watch)


def _selection(args: argparse.Namespace) -> Selection:
    sets = frozenset(args.reason), frozenset(args.kid), frozenset(args.client_id)
    return Selection(*sets, older_than_s=args.older_than)


def _json_mode(args: argparse.Namespace) -> bool:
    """JSON when asked for, or when a program rather than a person reads stdout."""
    return bool(args.json) or not sys.stdout.isatty()


def _progress(label: str, enabled: bool) -> Progress:
    return Progress(label, enabled=enabled and sys.stderr.isatty())


def _sqs() -> Any:
    return aws.client("sqs")


def _warn(text: str) -> None:
    print(f"sealq: warning: {text}", file=sys.stderr)


# ----- rendering -------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    json_mode = _json_mode(args)
    progress = _progress("scanned", not json_mode)
    result = ops.stats(_sqs(), args.dlq_url, max_messages=args.max_messages, progress=progress, warn=_warn)
    if json_mode:
        print(json.dumps(result.view()))
    else:
        truncated, in_flight = result.truncated, result.in_flight_before_scan
        print(render_stats(args.dlq_url, result.stats, truncated=truncated, in_flight=in_flight))
    return 0


def cmd_peek(args: argparse.Namespace) -> int:
    result = ops.peek(_sqs(), args.dlq_url, count=args.n, warn=_warn)
    print(json.dumps(result.view()) if _json_mode(args) else render_peek(result.records))
    return 0


def _report(args: argparse.Namespace, verb: str, tally: Tally, view: dict[str, Any]) -> int:
    """A redrive's or purge's outcome; exit 1 when any message failed."""
    if args.json:
        print(json.dumps(view))
    elif args.dry_run:
        print(f"would have {verb} {tally.matched} message(s) (dry run; scanned {tally.scanned})")
    else:
        failed = f", {tally.failed} failed" if tally.failed else ""
        print(f"{verb} {tally.done} message(s){failed} (scanned {tally.scanned})")
    if tally.truncated and not args.json:
        print("note: stopped at --max-messages; there may be more to do", file=sys.stderr)
    return 1 if tally.failed else 0


def cmd_redrive(args: argparse.Namespace) -> int:
    def fallback(why: str) -> None:
        if not args.json:
            print(f"{why}; moving messages one by one")

    result = ops.redrive(
        _sqs(), args.dlq_url, args.queue_url, _selection(args), max_messages=args.max_messages,
        dry_run=args.dry_run, progress=_progress("scanned", not args.json), warn=_warn,
        on_fallback=fallback,
    )  # fmt: skip
    task = result.move_task
    if task is not None:
        if args.json:
            print(json.dumps(result.view()))
        else:
            print(
                f"started an SQS message move task for about {task.approximate_messages} message(s); "
                f"task handle {task.task_handle}"
            )
        return 0
    return _report(args, "redriven", result.tally, result.view())


def cmd_purge(args: argparse.Namespace) -> int:
    selection = _selection(args)
    ask = not (args.yes or args.dry_run)
    if ask and not sys.stdin.isatty():
        raise SealqError("purge deletes messages for good: pass --yes (or --dry-run) when not on a terminal")
    sqs = _sqs()
    dlq_attributes(sqs, args.dlq_url)
    if ask:
        try:
            answer = input(f"delete {selection.describe()} from {args.dlq_url}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    result = ops.purge(
        sqs, args.dlq_url, selection, max_messages=args.max_messages, dry_run=args.dry_run,
        verify=False,  # checked above, before asking
        progress=_progress("scanned", not args.json), warn=_warn,
    )  # fmt: skip
    return _report(args, "purged", result.tally, result.view())


def _print_check(args: argparse.Namespace, check: WatchCheck) -> None:
    if args.json:
        print(json.dumps(check.view()), flush=True)
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(check.checked_at))
    for b in check.breaches:
        print(f"{stamp} {render_breach(b)}", flush=True)
    if not check.breaches:
        limits = ", ".join(f"{t.name}<={t.limit}" for t in check.thresholds)
        print(f"{stamp} ok: {check.total} message(s); within {limits}", flush=True)


def cmd_watch(args: argparse.Namespace) -> int:
    thresholds: list[Threshold] = args.thresholds or [parse_threshold(DEFAULT_THRESHOLD)]
    sqs = _sqs()
    dlq_attributes(sqs, args.dlq_url)  # a wrong queue fails now, not as a retried blip
    while True:
        try:
            check = ops.watch_check(
                sqs, args.dlq_url, thresholds, max_messages=args.max_messages, verify=False, warn=_warn
            )
            _print_check(args, check)
            if check.breaches:
                return EXIT_THRESHOLD
        except AwsError as exc:
            if args.once:
                raise
            # A watcher outlives blips; the next check tries again.
            _warn(describe_aws_error(exc, "dlq watch"))
        if args.once:
            return 0
        time.sleep(args.interval)


__all__ = ["EXIT_THRESHOLD", "TOTAL", "add_dlq_parser", "render_breach", "render_peek", "render_stats"]
