"""Verifying a signed key set: a compact JWS (RFC 7515), ES256, over the JWKS.

Written here with `cryptography` instead of a JOSE library because the producer's base
install is boto3 + cryptography only, and the profile is narrow enough to check in full by
hand: one serialization (compact), one alg (ES256), three header members, nothing optional.
tests/unit/test_signed_jwks.py cross-checks it against jwcrypto and joserfc both ways.

Steps (the README's "Signed key sets" section is the contract for other languages):

1. three base64url segments `header.payload.signature` (a JSON document is refused: an
   unsigned JWKS says so, a JSON-serialized JWS is not accepted);
2. the header is exactly `{"alg": "ES256", "typ": "sealq-jwks+jws", "kid": THUMBPRINT}`:
   any other alg (`none`, `HS256`, ...), typ or member (`crit`, `jwk`, `jku`, ...) is refused;
3. `kid` names a pinned key (its RFC 7638 thumbprint) and the 64-byte `r || s` signature
   verifies over `ASCII(header "." payload)` with ECDSA P-256 SHA-256;
4. the payload is a JWKS with integer `iat`, `exp` and `version`; `exp` is in the future and
   `iat` not more than `MAX_CLOCK_SKEW_S` ahead;
5. `version` is not lower than the highest this process accepted under any of the same pins
   (rollback: a replayed older, validly signed document is refused).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sealq.envelope.b64 import b64url_decode
from sealq.errors import (
    BadSignatureError,
    JwksRollbackError,
    JwsProfileError,
    SignedJwksExpiredError,
    UnsignedJwksError,
    UntrustedSignerError,
)
from sealq.producer.pins import Pin

TYP = "sealq-jwks+jws"
ALG = "ES256"
HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})
MAX_CLOCK_SKEW_S = 300
_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")
_RESIGN = "ask the operator to run `sealq keys publish --sign-with KEY` again"


@dataclass(frozen=True)
class SignedKeySet:
    """A verified document: the JWKS and the signed claims about it."""

    jwks: dict[str, Any]
    version: int
    issued_at: int
    expires_at: int
    signer: str  # the pinned key's thumbprint


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _json_part(segment: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except ValueError:
        raise JwsProfileError(f"the signed key set's {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise JwsProfileError(f"the signed key set's {what} must be a JSON object")
    return value


def _split(document: bytes | str) -> tuple[bytes, bytes, bytes]:
    data = document.encode("utf-8") if isinstance(document, str) else document
    data = data.strip()
    if data.startswith(b"{"):
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "keys" in parsed:
            raise UnsignedJwksError(
                "the key set is an unsigned JWKS but a signer is pinned (verify_with); "
                "refusing it: publish it with `sealq keys publish --sign-with KEY`"
            )
        raise JwsProfileError(
            "the key set is JSON, not a compact JWS; sealq signs key sets in compact "
            "serialization (header.payload.signature)"
        )
    parts = data.split(b".")
    if len(parts) != 3 or not all(parts):
        raise JwsProfileError("the key set is not a compact JWS (three base64url parts joined by '.')")
    return parts[0], parts[1], parts[2]


def _check_header(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if alg != ALG:
        shown = alg if isinstance(alg, str) and len(alg) <= 16 else "?"
        raise JwsProfileError(f"the signed key set uses alg {shown!r}; only {ALG} is accepted")
    if header.get("typ") != TYP:
        raise JwsProfileError(f"the signed key set's typ must be {TYP!r}; is it a sealq key set?")
    extra = sorted(set(header) - HEADER_MEMBERS)
    if extra:
        raise JwsProfileError(
            f"the signed key set's header has members sealq does not accept: {', '.join(extra)[:80]}"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not _THUMBPRINT.fullmatch(kid):
        raise JwsProfileError("the signed key set's kid must be the signer's RFC 7638 thumbprint")
    return kid


def _check_signature(pin: Pin, signing_input: bytes, segment: bytes) -> None:
    try:
        raw = b64url_decode(segment)
    except ValueError:
        raw = b""
    if len(raw) != 64:
        raise BadSignatureError("the signed key set's signature is not a 64-byte ES256 signature")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        pin.key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BadSignatureError(
            f"the signed key set's signature does not verify under pinned key {pin.thumbprint}: "
            "it was altered after signing; fetch it again from the publisher"
        ) from None


def _claim(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise JwsProfileError(f"the signed key set's payload needs a whole-number {name!r}")
    return value


def verify_document(document: bytes | str, pins: tuple[Pin, ...], now: float | None) -> SignedKeySet:
    """Steps 1-4 (everything but rollback; `now=None` skips the time checks, for the
    publisher reading its previous document); each refusal is a specific SignedJwksError."""
    header_b64, payload_b64, signature_b64 = _split(document)
    kid = _check_header(_json_part(header_b64, "header"))
    pin = next((p for p in pins if p.thumbprint == kid), None)
    if pin is None:
        pinned = ", ".join(p.thumbprint for p in pins)
        raise UntrustedSignerError(
            f"the key set is signed by key {kid}, which is not pinned (pinned: {pinned}); "
            "if the signer was rotated, pin the new key from `sealq keys signer-pem`"
        )
    _check_signature(pin, header_b64 + b"." + payload_b64, signature_b64)
    payload = _json_part(payload_b64, "payload")
    issued, expires, version = (_claim(payload, n) for n in ("iat", "exp", "version"))
    if now is not None and now >= expires:
        raise SignedJwksExpiredError(f"the signed key set expired at {_when(expires)}; {_RESIGN}")
    if now is not None and issued > now + MAX_CLOCK_SKEW_S:
        raise JwsProfileError(
            f"the signed key set is issued in the future ({_when(issued)}); check this clock"
        )
    jwks = {k: v for k, v in payload.items() if k not in ("iat", "exp", "version")}
    return SignedKeySet(jwks, version, issued, expires, pin.thumbprint)


class VersionMemory:
    """The highest `version` accepted per pinned thumbprint, for the rollback check.

    Keyed by every pin of the verifier that accepted it, so two producers pinning overlapping
    signers share what they have seen, and a rotation (pins {old, new}) keeps the count.
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def accept(self, signed: SignedKeySet, pins: tuple[Pin, ...]) -> None:
        with self._lock:
            highest = max((self._seen.get(p.thumbprint, 0) for p in pins), default=0)
            if signed.version < highest:
                raise JwksRollbackError(
                    f"the signed key set is version {signed.version}, older than version "
                    f"{highest} already accepted: refusing a rollback; {_RESIGN} if this persists"
                )
            for p in pins:
                self._seen[p.thumbprint] = max(self._seen.get(p.thumbprint, 0), signed.version)


PROCESS_VERSIONS = VersionMemory()


class KeySetVerifier:
    """Verifies documents under fixed pins and remembers versions (process-wide by default)."""

    def __init__(self, pins: tuple[Pin, ...], memory: VersionMemory = PROCESS_VERSIONS) -> None:
        self.pins = pins
        self._memory = memory

    def verify(self, document: bytes | str, now: float) -> SignedKeySet:
        signed = verify_document(document, self.pins, now)
        self._memory.accept(signed, self.pins)
        return signed
