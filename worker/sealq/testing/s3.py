"""An in-memory S3 for the calls the worker makes on payloads sent through S3.

Async methods take and return what aiobotocore does. Rules kept (S3 API reference, on a
bucket without versioning): GetObject of a missing key is `NoSuchKey` (HTTP 404; the caller
has s3:ListBucket), of a missing bucket `NoSuchBucket` (404); the response carries
`ContentLength` and a `Body` read in chunks (`read(amt)` returns at most 64 KiB, as a network
stream returns what has arrived), closed by the caller; DeleteObject of a missing key
succeeds (204: deletes are idempotent); PutObject needs the bucket, a key of 1 to 1024 UTF-8
bytes and at most 5 GiB. `deny(bucket)` answers AccessDenied (403) as a
bucket policy would; `fail_next(code, status)` makes the next calls fail transiently (e.g.
`SlowDown`, 503). Not kept: versioning, multipart, regions, a network.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

MAX_KEY_BYTES = 1024
MAX_PUT_BYTES = 5 * 1024**3


CHUNK_BYTES = 64 * 1024
"""What one `read(amt)` returns at most, as a network stream returns what has arrived."""


class _Body:
    """The StreamingBody part of a GetObject response."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0
        self.closed = False

    async def read(self, amt: int | None = None) -> bytes:
        end = len(self._data) if amt is None else min(len(self._data), self._at + amt, self._at + CHUNK_BYTES)
        chunk, self._at = self._data[self._at : end], end
        return chunk

    def close(self) -> None:
        self.closed = True


class MemoryS3:
    """Buckets of objects in memory; `objects(bucket)` for tests to assert on."""

    def __init__(self, *buckets: str) -> None:
        self._buckets: dict[str, dict[str, bytes]] = {b: {} for b in buckets}
        self._denied: set[str] = set()
        self._failures: list[tuple[str, int]] = []
        self.calls: list[tuple[str, str, str]] = []
        """(operation, bucket, key) of every call, in order."""

    def create_bucket(self, bucket: str) -> None:
        self._buckets.setdefault(bucket, {})

    def objects(self, bucket: str) -> dict[str, bytes]:
        return dict(self._buckets[bucket])

    def deny(self, bucket: str) -> None:
        self._denied.add(bucket)

    def fail_next(self, code: str, status: int, times: int = 1) -> None:
        self._failures += [(code, status)] * times

    async def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        objects = self._enter("PutObject", Bucket, Key)
        if not 1 <= len(Key.encode()) <= MAX_KEY_BYTES:
            raise _error("KeyTooLongError" if Key else "InvalidArgument", 400, "PutObject")
        if len(Body) > MAX_PUT_BYTES:
            raise _error("EntityTooLarge", 400, "PutObject")
        objects[Key] = bytes(Body)
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}

    async def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        objects = self._enter("GetObject", Bucket, Key)
        if Key not in objects:
            raise _error("NoSuchKey", 404, "GetObject")
        data = objects[Key]
        return {"ContentLength": len(data), "Body": _Body(data), "ResponseMetadata": {"HTTPStatusCode": 200}}

    async def delete_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        self._enter("DeleteObject", Bucket, Key).pop(Key, None)
        return {"ResponseMetadata": {"HTTPStatusCode": 204}}

    def _enter(self, operation: str, bucket: str, key: str) -> dict[str, bytes]:
        self.calls.append((operation, bucket, key))
        if self._failures:
            code, status = self._failures.pop(0)
            raise _error(code, status, operation)
        if bucket in self._denied:
            raise _error("AccessDenied", 403, operation)
        if bucket not in self._buckets:
            raise _error("NoSuchBucket", 404, operation)
        return self._buckets[bucket]


def _error(code: str, status: int, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        operation,
    )
