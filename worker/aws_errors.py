"""Sorting AWS failures into 'try again later' and 'will never work'."""

from __future__ import annotations

from botocore.exceptions import ClientError

# KMS saying the wrapped key or its EncryptionContext is wrong: retrying cannot help.
KMS_PERMANENT = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
