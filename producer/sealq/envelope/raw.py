"""Seed-compatible raw mode: the body is base64 of one RSA-OAEP-SHA256 block, as made by

    openssl pkeyutl -encrypt -pubin -inkey public.pem -pkeyopt rsa_padding_mode:oaep \
        -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in msg | base64

for shell clients that cannot build a JWE. There is no header, so no `iat` and no algorithm
choice: the mode is selected by the `sealq-format` message attribute and the kid comes from
the (unauthenticated) `key-id` attribute, which is safe because only the holder of that kid's
key can decrypt. PKCS#1 v1.5 is never attempted (Bleichenbacher/Marvin oracle).
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives.asymmetric import rsa

from sealq.envelope.jwe import OAEP_SHA256, OpeningKey
from sealq.envelope.jwk import Alg
from sealq.errors import OpenError, Reason

RAW_FORMAT = "rsa-oaep-256-raw"
"""Value of the `sealq-format` attribute that selects this mode."""

_WHITESPACE = re.compile(rb"\s+")


def max_plaintext(key_size_bits: int) -> int:
    """OAEP-SHA256 capacity: k - 2*32 - 2 bytes (190/318/446 for RSA-2048/3072/4096)."""
    return key_size_bits // 8 - 66


def seal_raw(plaintext: bytes, public_key: rsa.RSAPublicKey) -> bytes:
    """What the openssl recipe produces, for tests and for clients without openssl."""
    if len(plaintext) > max_plaintext(public_key.key_size):
        raise ValueError(
            f"raw mode carries at most {max_plaintext(public_key.key_size)} bytes with "
            f"RSA-{public_key.key_size}; use the JWE format for longer messages"
        )
    return base64.b64encode(public_key.encrypt(plaintext, OAEP_SHA256))


def open_raw(body: bytes | str, key: OpeningKey) -> bytes:
    """Decrypt a raw-mode body. Raises OpenError like the JWE path."""
    if key.alg is not Alg.RSA_OAEP_256:
        raise OpenError(Reason.UNSUPPORTED_ALGORITHM)
    private = key.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    if isinstance(body, str):
        try:
            body = body.encode("ascii")
        except UnicodeEncodeError:
            raise OpenError(Reason.MALFORMED) from None
    try:
        ciphertext = base64.b64decode(_WHITESPACE.sub(b"", body), validate=True)
    except (binascii.Error, ValueError):
        raise OpenError(Reason.MALFORMED) from None
    if len(ciphertext) != private.key_size // 8:
        raise OpenError(Reason.MALFORMED)
    try:
        return private.decrypt(ciphertext, OAEP_SHA256)
    except ValueError:
        raise OpenError(Reason.DECRYPT_FAILED) from None
