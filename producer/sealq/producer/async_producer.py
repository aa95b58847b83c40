"""The asyncio (aiobotocore) producer; same decisions as `Producer`, non-blocking I/O.

aiobotocore is the `sealq[async]` extra: without it, and without an `sqs_client` of your own,
constructing an `AsyncProducer` raises `MissingExtraError` saying so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

from sealq.aws.errors import AwsError, describe_aws_error
from sealq.envelope.attributes import ATTR_CLIENT_ID
from sealq.errors import MessageTooLargeError, PinnedKeyError, SendError
from sealq.extras import require
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

PUTS_AT_ONCE = 4
"""Concurrent PutObject calls of one send_batch."""


class AsyncProducer:
    """Use as `async with AsyncProducer(url, jwks) as p: await p.send(b"...")`.

    Loading and refreshing the JWKS (file, HTTPS or S3 reads) runs in a worker thread so the
    event loop never blocks on it. Pass `sqs_client` to reuse an open aiobotocore client.
    `verify_with` pins signer keys, as for `Producer`; a refused key set raises on entry.
    `s3_bucket`, `s3_prefix`, `s3_always` and `s3_client` as for `Producer`.
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
        if sqs_client is None or (s3_bucket and s3_client is None):
            require("async", "AsyncProducer")
        check_attribute(ATTR_CLIENT_ID, client_id)
        self.queue_url = queue_url
        self._queue = QueueKind(queue_url)
        self.client_id = client_id
        self._jwks = jwks
        if isinstance(jwks, PublicKeySet) and verify_with is not None:
            raise PinnedKeyError("give verify_with to the PublicKeySet you pass, not to the producer")
        self._keys: PublicKeySet | None = jwks if isinstance(jwks, PublicKeySet) else None
        self._verify_with = verify_with
        self._sqs = sqs_client
        self._clock = clock
        self._retries = retries
        self._stack = AsyncExitStack()
        self._offload = Offload(s3_bucket, s3_prefix, s3_always) if s3_bucket else None
        self._s3: Any = s3_client

    async def __aenter__(self) -> AsyncProducer:
        if self._keys is None:
            jwks = self._jwks
            assert not isinstance(jwks, PublicKeySet)
            self._keys = await asyncio.to_thread(
                PublicKeySet, jwks, clock=self._clock, verify_with=self._verify_with
            )
        if self._sqs is None:
            from aiobotocore.session import get_session

            from sealq.aws.clients import aio_client_config

            self._sqs = await self._stack.enter_async_context(
                get_session().create_client("sqs", config=aio_client_config())
            )
        if self._offload is not None and self._s3 is None:
            from aiobotocore.session import get_session

            from sealq.aws.clients import aio_client_config

            self._s3 = await self._stack.enter_async_context(
                get_session().create_client("s3", config=aio_client_config())
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _current_key(self) -> Any:
        if self._keys is None:
            raise RuntimeError("use AsyncProducer inside `async with`")
        key = self._keys.current_without_io()
        if key is not None:
            return key
        # current() will re-read the source: keep that file/network read off the loop.
        return await asyncio.to_thread(self._keys.current)

    async def send(
        self,
        message: Sendable,
        *,
        client_id: str | None = None,
        content_type: str | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        if not isinstance(message, OutgoingMessage):
            message = OutgoingMessage(
                message,
                client_id or self.client_id,
                content_type,
                group_id=group_id,
                deduplication_id=deduplication_id,
            )
        await self._learn_queue()
        entry = build_entry(
            0,
            as_message(message, self.client_id),
            await self._current_key(),
            self._clock(),
            self._queue,
            offload=self._offload is not None,
        )
        if self._offload is not None and self._offload.wanted(entry):
            entry = await self._put(entry)
        try:
            response = await self._sqs.send_message(  # type: ignore[union-attr]
                QueueUrl=self.queue_url,
                MessageBody=entry.body,
                MessageAttributes=entry.attributes,
                **entry.fifo,
            )
        except AwsError as exc:
            raise SendError(describe_aws_error(exc, "SendMessage")) from None
        return str(response["MessageId"])

    async def send_batch(self, messages: Iterable[Sendable]) -> BatchResult:
        await self._learn_queue()
        key = await self._current_key()
        entries, result = build_entries(
            messages, self.client_id, key, self._clock(), self._queue, offload=self._offload is not None
        )
        if self._offload is not None:
            entries = await self._put_large(entries, result)
        exchange = batch_exchanges(entries, result, self._retries)
        try:
            pending = next(exchange)
            while True:
                try:
                    response = await self._sqs.send_message_batch(  # type: ignore[union-attr]
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

    async def _learn_queue(self) -> None:
        """Once per producer, on a FIFO queue: is content-based deduplication on? (`fifo`)"""
        if self._queue.needs_lookup:
            try:
                response = await self._sqs.get_queue_attributes(  # type: ignore[union-attr]
                    QueueUrl=self.queue_url, AttributeNames=[CONTENT_DEDUP_ATTRIBUTE]
                )
            except AwsError:
                response = None  # not allowed to ask: random ids work on every FIFO queue
            self._queue.learn(response)

    async def _put(self, entry: Entry) -> Entry:
        """Put the sealed token in S3; the pointer entry to send instead."""
        assert self._offload is not None
        pointer, sent = self._offload.pointer(entry)
        try:
            await self._s3.put_object(Bucket=pointer.bucket, Key=pointer.key, Body=entry.body.encode("ascii"))
        except AwsError as exc:
            raise SendError(describe_aws_error(exc, f"PutObject to bucket {pointer.bucket}")) from None
        return sent

    async def _put_large(self, entries: list[Entry], result: BatchResult) -> list[Entry]:
        """`_put` for each entry that goes through S3, a few at once; one that fails is a
        failed entry."""
        offload = self._offload
        assert offload is not None
        gate = asyncio.Semaphore(PUTS_AT_ONCE)

        async def one(entry: Entry) -> Entry | None:
            if not offload.wanted(entry):
                return entry
            async with gate:
                try:
                    return await self._put(entry)
                except MessageTooLargeError as exc:
                    result.failed.append(FailedEntry(entry.index, "MessageTooLarge", str(exc), True))
                except SendError as exc:
                    result.failed.append(FailedEntry(entry.index, "PutObjectFailed", str(exc), False))
            return None

        return [e for e in await asyncio.gather(*map(one, entries)) if e is not None]
