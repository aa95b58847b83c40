"""The KMS EncryptionContext a wrapped private key is bound to, by record version.

KMS authenticates the context with the blob: Decrypt under any other context is refused
(`InvalidCiphertextException`), so whatever is in it cannot be edited in the keyset.

- version 1 (legacy, records without a `context` field): kid and expiry. A keyset writer
  could still swap the public key (producers would seal to someone else's key) or the alg.
- version 2 (`"context": 2`): also the alg and a SHA-256 of the public key's DER
  SubjectPublicKeyInfo, so that swap makes KMS itself refuse the unwrap.

`GenerateDataKeyPairWithoutPlaintext` returns the public key in the same call that takes the
context, so `keys create` wraps under version 1 first and moves the blob to version 2 with
KMS ReEncrypt (the plaintext never leaves KMS). Pure functions: no I/O, no KMS.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Literal

ContextVersion = Literal[1, 2]
LEGACY: ContextVersion = 1
BOUND: ContextVersion = 2

KID = "sealq:kid"
EXPIRES_AT = "sealq:expires-at"
ALG = "sealq:alg"
SPKI_SHA256 = "sealq:spki-sha256"


def spki_sha256(spki_der: bytes) -> str:
    """base64url without padding of SHA-256 over the DER SubjectPublicKeyInfo (43 characters)."""
    digest = hashlib.sha256(spki_der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def iso(moment: datetime) -> str:
    """Seconds, UTC, `Z`: the one spelling of a timestamp inside a context."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def legacy_context(kid: str, expires_at: datetime) -> dict[str, str]:
    """Version 1: kid and expiry only."""
    return {KID: kid, EXPIRES_AT: iso(expires_at)}


def bound_context(kid: str, expires_at: datetime, alg: str, spki_der: bytes) -> dict[str, str]:
    """Version 2: version 1 plus the alg and the public key's hash."""
    return {**legacy_context(kid, expires_at), ALG: alg, SPKI_SHA256: spki_sha256(spki_der)}


def encryption_context(
    version: ContextVersion, kid: str, expires_at: datetime, alg: str, spki_der: bytes
) -> dict[str, str]:
    """The context of a record of `version` (the worker's unwrap and `keys verify` use it)."""
    if version == BOUND:
        return bound_context(kid, expires_at, alg, spki_der)
    return legacy_context(kid, expires_at)
