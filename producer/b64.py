"""Strict unpadded base64url (RFC 7515 section 2), as JOSE requires.

The stdlib decoder silently skips characters outside the alphabet; a strict check first
keeps a token with stray bytes from decoding to something else.
"""

from __future__ import annotations

import base64
import binascii
import re

_B64URL = re.compile(rb"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(data: bytes) -> bytes:
    """Decode unpadded base64url; raise ValueError on anything else."""
    if len(data) % 4 == 1 or _B64URL.fullmatch(data) is None:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def int_to_b64url(value: int, length: int | None = None) -> str:
    """Big-endian, minimal (or fixed `length`) bytes, as JWK `n`, `e`, `x`, `y` require."""
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big")).decode("ascii")
