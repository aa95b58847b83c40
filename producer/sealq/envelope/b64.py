"""Strict unpadded base64url (RFC 7515 section 2), as JOSE requires.

The stdlib's urlsafe decoder silently skips characters outside the alphabet; here the
translated input goes through binascii's strict mode, which refuses them. `+`, `/` and `=`
(standard alphabet, padding) are refused in the same pass: the translation maps them to a
byte outside every base64 alphabet, so strict mode refuses them too, and a length of 4n+1
gets no padding, which strict mode refuses as well. One translate and one decode per part,
no extra scans: every message decodes seven parts (measured with bench/per_message.py).
"""

from __future__ import annotations

import base64
import binascii

URLSAFE_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/***")
"""base64url to standard base64; `+`, `/` and `=` become `*`, which strict decoding refuses."""
B64_PADDING = (b"", b"", b"==", b"=")


def b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


CHUNK_CHARS = 256 * 1024
"""Inputs longer than this (payloads sent through S3 run to megabytes) are decoded in pieces
of this many characters (a multiple of 4): one binascii call holds the GIL throughout, ~10 ms
a megabyte on a loaded core, which would stall the event loop while a crypto thread decodes."""


def b64url_decode(data: bytes) -> bytes:
    """Decode unpadded base64url; raise ValueError on anything else."""
    try:
        if len(data) <= CHUNK_CHARS:
            return binascii.a2b_base64(
                data.translate(URLSAFE_TO_STANDARD) + B64_PADDING[len(data) % 4], strict_mode=True
            )
        view, pieces = memoryview(data), []
        for start in range(0, len(data), CHUNK_CHARS):
            piece = view[start : start + CHUNK_CHARS].tobytes().translate(URLSAFE_TO_STANDARD)
            if start + CHUNK_CHARS >= len(data):
                piece += B64_PADDING[len(data) % 4]
            pieces.append(binascii.a2b_base64(piece, strict_mode=True))
        return b"".join(pieces)
    except binascii.Error:
        raise ValueError("not base64url") from None


def int_to_b64url(value: int, length: int | None = None) -> str:
    """Big-endian, minimal (or fixed `length`) bytes, as JWK `n`, `e`, `x`, `y` require."""
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big")).decode("ascii")
