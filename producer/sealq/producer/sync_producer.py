"""The blocking (boto3) producer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from sealq.aws.errors import AwsError, describe_aws_error
from sealq.envelope.attributes import ATTR_CLIENT_ID
from sealq.errors import MessageTooLargeError, PinnedKeyError, SendError
from sealq.producer.fifo import CONTENT_DEDUP_ATTRIBUTE, QueueKind
from sealq.producer.jwks import JwksInput, PublicKeySet
from sealq.producer.message import (
    BatchResult,
    Entry,
    FailedEntry,
    OutgoingMessage,
    Sendable,
    as_message,
    batch_exchanges,
    batch_request,
    build_entries,
    build_entry,
    check_attribute,
)
from sealq.producer.offload import Offload
from sealq.producer.pins import PinsInput


class Producer:
    """Seals messages to the current published key and sends them to one SQS queue.

    `jwks` is a path, an https:// or s3:// URL, a JWKS dict, or a shared `PublicKeySet`.
    `verify_with` pins the signer key(s) (sealq.producer.pins): then only a signed key set
    that verifies is used, and a refused one raises a `SignedJwksError` before anything is sent.
    Pass `sqs_client` to reuse a configured boto3 client; otherwise one is created here,
    once, from the standard AWS configuration.

    With `s3_bucket`, a message too large for SQS (or every message, `s3_always`) is put in
    that bucket as its sealed token, under `s3_prefix` plus a random key, and SQS carries an
    SQS Extended Client pointer to it (`sealq.aws.payloads`). `s3_client` as for SQS.
    """

    def __init__(
        self,
        queue_url: str,
        jwks: JwksInput | PublicKeySet,
        *,
        client_id: str | None = None,
        sqs_client: Any | None = None,
        retries: int = 2,
        clock: Callable[[], float] = time.time,
        verify_with: PinsInput | None = None,
        s3_bucket: str | None = None,
        s3_prefix: str = "",
        s3_always: bool = False,
        s3_client: Any | None = None,
    ) -> None:
        check_attribute(ATTR_CLIENT_ID, client_id)
        self.queue_url = queue_url
        self._queue = QueueKind(queue_url)
        self.client_id = client_id
        if isinstance(jwks, PublicKeySet) and verify_with is not None:
            raise PinnedKeyError("give verify_with to the PublicKeySet you pass, not to the Producer")
        self.keys = (
            jwks
            if isinstance(jwks, PublicKeySet)
            else PublicKeySet(jwks, clock=clock, verify_with=verify_with)
        )
        self._clock = clock
        self._retries = retries
        if sqs_client is None:
            from sealq.aws.clients import client

            sqs_client = client("sqs")
        self._sqs: Any = sqs_client
        self._offload = Offload(s3_bucket, s3_prefix, s3_always) if s3_bucket else None
        if self._offload is not None and s3_client is None:
            from sealq.aws.clients import client

            s3_client = client("s3")
        self._s3: Any = s3_client

    def seal(self, message: Sendable) -> Entry:
        """Seal without sending, e.g. to inspect the body or send it another way."""
        self._learn_queue()
        return build_entry(
            0,
            as_message(message, self.client_id),
            self.keys.current(),
            self._clock(),
            self._queue,
            offload=self._offload is not None,
        )

    def send(
        self,
        message: Sendable,
        *,
        client_id: str | None = None,
        content_type: str | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Send one message (bytes, str, an `OutgoingMessage` or a pydantic model, sent as its
        JSON with `content-type: application/json`); returns its SQS MessageId."""
        if not isinstance(message, OutgoingMessage):
            message = OutgoingMessage(
                message,
                client_id or self.client_id,
                content_type,
                group_id=group_id,
                deduplication_id=deduplication_id,
            )
        entry = self.seal(message)
        if self._offload is not None and self._offload.wanted(entry):
            entry = self._put(entry)
        try:
            response = self._sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=entry.body,
                MessageAttributes=entry.attributes,
                **entry.fifo,
            )
        except AwsError as exc:
            raise SendError(describe_aws_error(exc, "SendMessage")) from None
        return str(response["MessageId"])

    def send_batch(self, messages: Iterable[Sendable]) -> BatchResult:
        """Send many messages in SendMessageBatch calls; every entry's fate is in the result."""
        self._learn_queue()
        key = self.keys.current()
        entries, result = build_entries(
            messages, self.client_id, key, self._clock(), self._queue, offload=self._offload is not None
        )
        if self._offload is not None:
            entries = self._put_large(entries, result)
        exchange = batch_exchanges(entries, result, self._retries)
        try:
            pending = next(exchange)
            while True:
                try:
                    response = self._sqs.send_message_batch(
                        QueueUrl=self.queue_url, Entries=batch_request(pending)
                    )
                except AwsError as exc:
                    raise SendError(
                        describe_aws_error(exc, "SendMessageBatch"), sent_count=len(result.sent)
                    ) from None
                pending = exchange.send(response)
        except StopIteration:
            pass
        result.failed.sort(key=lambda f: f.index)
        return result

    def _learn_queue(self) -> None:
        """Once per producer, on a FIFO queue: is content-based deduplication on? (`fifo`)"""
        if self._queue.needs_lookup:
            try:
                response = self._sqs.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=[CONTENT_DEDUP_ATTRIBUTE]
                )
            except AwsError:
                response = None  # not allowed to ask: random ids work on every FIFO queue
            self._queue.learn(response)

    def _put(self, entry: Entry) -> Entry:
        """Put the sealed token in S3; the pointer entry to send instead."""
        assert self._offload is not None
        pointer, sent = self._offload.pointer(entry)
        try:
            self._s3.put_object(Bucket=pointer.bucket, Key=pointer.key, Body=entry.body.encode("ascii"))
        except AwsError as exc:
            raise SendError(describe_aws_error(exc, f"PutObject to bucket {pointer.bucket}")) from None
        return sent

    def _put_large(self, entries: list[Entry], result: BatchResult) -> list[Entry]:
        """`_put` for each entry that goes through S3; one that fails is a failed entry."""
        assert self._offload is not None
        out: list[Entry] = []
        for entry in entries:
            if not self._offload.wanted(entry):
                out.append(entry)
                continue
            try:
                out.append(self._put(entry))
            except MessageTooLargeError as exc:
                result.failed.append(FailedEntry(entry.index, "MessageTooLarge", str(exc), True))
            except SendError as exc:
                result.failed.append(FailedEntry(entry.index, "PutObjectFailed", str(exc), False))
        return out
