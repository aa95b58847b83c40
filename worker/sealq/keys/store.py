"""Reading and writing the keyset document at a file path or an `s3://bucket/key` URL.

Files are replaced atomically (write beside, fsync, rename) with owner-only permissions, so a
worker re-reading the keyset never sees half a document.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from sealq.aws import clients as aws
from sealq.aws.errors import describe_aws_error
from sealq.errors import SealqError
from sealq.keys.keyset import Keyset


class KeysetError(SealqError):
    """The keyset cannot be read or written, or is not a valid sealq keyset."""


class KeysetNotFoundError(KeysetError):
    """Nothing at the keyset location yet; the message says how to create one."""


class KeysetStore:
    def __init__(self, location: str | os.PathLike[str], s3_client: Any | None = None) -> None:
        self.location = str(location)
        if not self.location:
            raise KeysetError("no keyset given: pass --keyset PATH_OR_S3_URL or set SEALQ_KEYSET")
        self._s3 = s3_client
        if self.is_s3:
            bucket, _, key = self.location[len("s3://") :].partition("/")
            if not bucket or not key:
                raise KeysetError(f"keyset URL {self.location!r} must look like s3://bucket/key")
            self._bucket, self._key = bucket, key

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def _client(self) -> Any:
        if self._s3 is None:
            self._s3 = aws.client("s3")
        return self._s3

    def read_bytes(self) -> bytes:
        if self.is_s3:
            try:
                body = self._client().get_object(Bucket=self._bucket, Key=self._key)["Body"]
                return bytes(body.read())
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                    raise self._missing() from None
                raise KeysetError(describe_aws_error(exc, f"reading {self.location}")) from None
            except BotoCoreError as exc:
                raise KeysetError(describe_aws_error(exc, f"reading {self.location}")) from None
        try:
            return Path(self.location).read_bytes()
        except FileNotFoundError:
            raise self._missing() from None
        except OSError as exc:
            raise KeysetError(f"cannot read keyset {self.location}: {exc.strerror}") from None

    def _missing(self) -> KeysetNotFoundError:
        return KeysetNotFoundError(
            f"no keyset at {self.location}; create one with `sealq keys create --keyset "
            f"{self.location} --cmk ... --spec ... --expires-in ...`"
        )

    def load(self) -> Keyset:
        return parse_keyset(self.read_bytes(), self.location)

    def load_or_empty(self) -> Keyset:
        try:
            return self.load()
        except KeysetNotFoundError:
            return Keyset()

    def save(self, keyset: Keyset) -> None:
        data = keyset.model_dump_json(indent=2).encode("utf-8") + b"\n"
        if self.is_s3:
            try:
                self._client().put_object(
                    Bucket=self._bucket, Key=self._key, Body=data, ContentType="application/json"
                )
            except (BotoCoreError, ClientError) as exc:
                raise KeysetError(describe_aws_error(exc, f"writing {self.location}")) from None
            return
        path = Path(self.location)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise KeysetError(f"cannot write keyset {path}: {exc.strerror or exc}") from None


def parse_keyset(data: bytes, where: str = "keyset") -> Keyset:
    try:
        return Keyset.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "document"
        raise KeysetError(f"{where} is not a valid sealq keyset: {field}: {first['msg']}") from None
