"""`sealq send`: seal messages from a file or stdin and send them to SQS.

Needs only the base install: the producer is all it loads (never the worker side).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from sealq.errors import FifoError, SealqError, SendError
from sealq.producer.fifo import check_ids
from sealq.producer.message import OutgoingMessage
from sealq.producer.sync_producer import Producer
from sealq.progress import Progress

CHUNK = 100


def add_send_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "send",
        help="seal and send messages to an SQS queue",
        description="Seal one message (--file) or one message per stdin line and send them.",
    )
    p.add_argument("--queue-url", required=True, help="the SQS queue to send to")
    p.add_argument("--jwks", required=True, help="published keys: path, https:// or s3:// URL")
    p.add_argument(
        "--verify-with",
        type=Path,
        action="append",
        metavar="FILE",
        help="accept only a key set signed by this pinned key (PEM, JWK or JWKS from "
        "`sealq keys signer-pem`); repeat it to pin the next signer too",
    )
    p.add_argument("--file", type=Path, help="send this file's bytes as one message")
    p.add_argument("--client-id", help="set the client-id attribute (operators see it in the DLQ)")
    p.add_argument("--content-type", help="set the content-type attribute")
    p.add_argument(
        "--group-id",
        help="MessageGroupId: required for a FIFO queue (in order per group), a tenant on a standard one",
    )
    p.add_argument(
        "--deduplication-id",
        help="MessageDeduplicationId for --file on a FIFO queue (default: random, never from the content)",
    )
    p.add_argument(
        "--s3-bucket",
        help="send messages too large for SQS through this S3 bucket (sealed; Extended Client pointer)",
    )
    p.add_argument("--s3-prefix", default="", help="object key prefix in --s3-bucket")
    p.add_argument(
        "--s3-always", action="store_true", help="send every message through --s3-bucket, not only large ones"
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run_send)


def _stdin_messages(
    client_id: str | None, content_type: str | None, group_id: str | None
) -> Iterator[OutgoingMessage]:
    for line in sys.stdin.buffer:
        line = line.rstrip(b"\r\n")
        if line:
            yield OutgoingMessage(line, client_id, content_type, group_id=group_id)


def run_send(args: argparse.Namespace) -> int:
    if args.deduplication_id is not None and args.file is None:
        raise FifoError(
            "--deduplication-id needs --file: one id for every stdin line would keep only the first"
        )
    check_ids(args.group_id, args.deduplication_id)
    if args.s3_always and not args.s3_bucket:
        raise SealqError("--s3-always needs --s3-bucket")
    producer = Producer(
        args.queue_url,
        args.jwks,
        client_id=args.client_id,
        verify_with=args.verify_with,
        s3_bucket=args.s3_bucket,
        s3_prefix=args.s3_prefix,
        s3_always=args.s3_always,
    )
    if args.file is not None:
        try:
            body = args.file.read_bytes()
        except OSError as exc:
            raise SealqError(f"cannot read --file {args.file}: {exc.strerror}") from None
        message_id = producer.send(
            OutgoingMessage(
                body,
                args.client_id,
                args.content_type,
                group_id=args.group_id,
                deduplication_id=args.deduplication_id,
            )
        )
        print(json.dumps({"sent": 1, "failed": [], "message_id": message_id}) if args.json else message_id)
        return 0
    messages = _stdin_messages(args.client_id, args.content_type, args.group_id)
    sent, failed, offset = 0, [], 0
    with Progress("sent", enabled=None if not args.json else False) as progress:
        while chunk := list(islice(messages, CHUNK)):
            try:
                result = producer.send_batch(chunk)
            except SendError as exc:
                done = sent + exc.sent_count
                if not done:
                    raise
                raise SendError(
                    f"{exc}; {done} message(s) were sent before this failure, so re-sending "
                    "every line would duplicate them",
                    sent_count=done,
                ) from None
            sent += len(result.sent)
            failed += [
                {"line": offset + f.index + 1, "code": f.code, "message": f.message} for f in result.failed
            ]
            offset += len(chunk)
            progress.advance(len(chunk))
    if args.json:
        print(json.dumps({"sent": sent, "failed": failed}))
    else:
        print(f"sent {sent} message(s)" + (f", {len(failed)} failed" if failed else ""))
        for f in failed:
            print(f"line {f['line']}: {f['code']}: {f['message']}", file=sys.stderr)
    return 1 if failed else 0
