"""Fetching payloads sent through S3 (SQS Extended Client pointers), within a memory bound.

A pointer message names a bucket and key (`sealq.aws.payloads`); the object is a sealed
token, opened exactly as an inline one. Three rules keep this safe and bounded:

- Only buckets the operator listed (`--payload-buckets`) are read: a pointer is unauthenticated,
  and the worker deletes what it handled, so it must not be steerable to any bucket its role
  can reach.
- Size: GetObject's `ContentLength` is checked before any of the body is read, and the read is
  capped at `max_bytes + 1` in case a stand-in or proxy misreports it; larger is `too-large`.
  It arrives in chunks into one growing buffer; decoding and parsing it (base64 of megabytes)
  happen on a crypto thread, like its decryption.
  (One request, no HEAD first: a HEAD would add a round trip to every message.)
- Memory: `slots` admits `at_once` offloaded messages from fetch until their outcome is
  decided (the token and its plaintext are alive that long), so those hold at most
  `at_once x (max_bytes + plaintext ~ 3/4 max_bytes)` beside the inline messages'
  `max_in_flight x 1 MiB`. Messages waiting for a slot hold only their small pointer.

Failures are classified like KMS's: a missing object is permanent (`payload-missing`);
AccessDenied and the like need an operator (retried, counting attempts, then
`payload-unavailable`); throttling, 5xx and connection errors pass by themselves (retried,
never dead-lettered). A handled message's object is deleted once SQS has deleted the
message (not before: a failed SQS delete redelivers it, and it must still open), unless
`keep` leaves that to a bucket lifecycle rule. A dead-lettered message's object is kept, so
the DLQ copy (the pointer) can be redriven.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from sealq.aws.errors import S3_MISCONFIGURED, S3_MISSING, error_code
from sealq.aws.payloads import S3Pointer
from sealq.worker.logs import event

log = logging.getLogger("sealq.worker")


class Failure(StrEnum):
    MISSING = "missing"
    """NoSuchKey / NoSuchBucket / 404: permanent."""
    TOO_LARGE = "too-large"
    """Over `max_bytes`: permanent."""
    REFUSED = "refused"
    """No S3 configured, or the bucket is not one we may read: permanent."""
    DENIED = "denied"
    """S3 refused us (AccessDenied, ...): an operator must act; counts attempts."""
    UNAVAILABLE = "unavailable"
    """Throttled, 5xx, timeout, connection: passes by itself; never dead-letters."""


class PayloadFailed(NamedTuple):
    kind: Failure
    detail: str


NOT_CONFIGURED = PayloadFailed(Failure.REFUSED, "sent through S3; run the worker with --payload-buckets")


def parse_buckets(text: str) -> frozenset[str]:
    return frozenset(b.strip() for b in text.split(",") if b.strip())


class PayloadStore:
    """The worker's S3 side: bounded fetches, and deleting handled payloads."""

    def __init__(self, s3: Any, *, buckets: frozenset[str], max_bytes: int, at_once: int, keep: bool) -> None:
        self._s3 = s3
        self._buckets = buckets
        self.max_bytes = max_bytes
        self._keep = keep
        self.slots = asyncio.Semaphore(at_once)
        """Held from fetch to outcome by each offloaded message: the memory bound."""
        self._deleting: set[asyncio.Task[None]] = set()
        self.fetched = 0
        self.deleted = 0

    async def fetch(self, pointer: S3Pointer) -> bytearray | PayloadFailed:
        """The object's bytes (a sealed token, if all is well), or why not (hold a slot while
        calling this). Decoding is left to the caller, off the event loop."""
        if pointer.bucket not in self._buckets:
            return PayloadFailed(Failure.REFUSED, f"bucket {pointer.bucket} is not in --payload-buckets")
        try:
            response = await self._s3.get_object(Bucket=pointer.bucket, Key=pointer.key)
            body = response["Body"]
            try:
                length = int(response.get("ContentLength", 0))
                if length > self.max_bytes:
                    return _too_large(length, self.max_bytes)
                data = await _read(body, self.max_bytes + 1)
            finally:
                body.close()
        except ClientError as exc:
            return _classify(exc)
        except (BotoCoreError, OSError, TimeoutError) as exc:
            return PayloadFailed(Failure.UNAVAILABLE, type(exc).__name__)
        if len(data) > self.max_bytes:
            return _too_large(len(data), self.max_bytes)
        self.fetched += 1
        return data

    def discard(self, pointer: S3Pointer) -> None:
        """After a handled message's SQS delete: delete its object (in the background)."""
        if self._keep:
            return
        task = asyncio.create_task(self._delete(pointer))
        self._deleting.add(task)
        task.add_done_callback(self._deleting.discard)

    async def _delete(self, pointer: S3Pointer) -> None:
        try:
            await self._s3.delete_object(Bucket=pointer.bucket, Key=pointer.key)
            self.deleted += 1
        except (BotoCoreError, ClientError) as exc:  # the handled message is gone; only storage leaks
            event(
                log,
                logging.WARNING,
                "payload object not deleted; a bucket lifecycle rule will have to",
                bucket=pointer.bucket,
                error=error_code(exc),
            )

    async def close(self) -> None:
        """Wait for the deletes under way (shutdown)."""
        if self._deleting:
            await asyncio.gather(*set(self._deleting), return_exceptions=True)


async def _read(body: Any, limit: int) -> bytearray:
    """Up to `limit` bytes of a streaming body; `read(n)` returns what has arrived, so loop."""
    data = bytearray()
    while len(data) < limit and (chunk := await body.read(limit - len(data))):
        data += chunk
    return data


def _too_large(size: int, limit: int) -> PayloadFailed:
    return PayloadFailed(Failure.TOO_LARGE, f"payload is {size} bytes; --max-payload-bytes is {limit}")


def _classify(exc: ClientError) -> PayloadFailed:
    code = error_code(exc)
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    if code in S3_MISSING or status == "404":
        return PayloadFailed(Failure.MISSING, code)
    if code in S3_MISCONFIGURED or status == "403":
        return PayloadFailed(Failure.DENIED, code)
    return PayloadFailed(Failure.UNAVAILABLE, code)
