"""The signer keys a producer pins (`verify_with=`), and their RFC 7638 thumbprints.

A pin names one P-256 public key (ES256 is the only signature alg a signed key set may use).
Accepted shapes:

- PEM text, `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo), as `sealq keys signer-pem`
  prints; several PEM blocks in one text pin each of them;
- a public JWK (`kty` EC, `crv` P-256, `x`, `y`) as a dict or JSON text. If it has a `kid`,
  the kid must be the key's RFC 7638 thumbprint (a "thumbprinted JWK", what `signer-pem
  --format jwk` prints): a pin whose kid and key disagree is refused rather than never matching;
- a JWKS `{"keys": [...]}` of such JWKs;
- a `Path`, or a str that is neither PEM nor JSON, naming a file holding any of the above;
- a list or tuple of any of these: every key is pinned (so the signer itself can be rotated).

A bare thumbprint is not a pin: the document carries no key to check it against (an embedded
`jwk` header would be key injection). A JWK with a private member (`d`) is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.b64 import b64url_decode, b64url_encode, int_to_b64url
from sealq.errors import PinnedKeyError

PinInput = str | bytes | Path | Mapping[str, Any]
PinsInput = PinInput | Sequence[PinInput]
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
_MAX_PIN_FILE = 64 * 1024


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The members RFC 7638 hashes for an EC key (and all a verifying JWK needs)."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise PinnedKeyError(f"a signer key must be P-256 (ES256), not {key.curve.name}")
    nums = key.public_numbers()
    return {"crv": "P-256", "kty": "EC", "x": int_to_b64url(nums.x, 32), "y": int_to_b64url(nums.y, 32)}


def thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 SHA-256 thumbprint: required members, sorted, no whitespace, base64url."""
    canonical = json.dumps(public_jwk(key), sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest()).decode("ascii")


@dataclass(frozen=True)
class Pin:
    """One pinned signer key and its thumbprint (the `kid` its signatures carry)."""

    thumbprint: str
    key: ec.EllipticCurvePublicKey


def _pin(key: object, where: str) -> Pin:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise PinnedKeyError(f"{where}: a signer key must be an EC P-256 public key")
    return Pin(thumbprint(key), key)


def _coordinate(jwk: Mapping[str, Any], name: str, where: str) -> int:
    value = jwk.get(name)
    try:
        raw = b64url_decode(value.encode("ascii")) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise PinnedKeyError(f"{where}: JWK member {name!r} must be 32 bytes of base64url (P-256)")
    return int.from_bytes(raw, "big")


def _from_jwk(jwk: Mapping[str, Any], where: str) -> Pin:
    if "d" in jwk:
        raise PinnedKeyError(f"{where}: this JWK holds a private key; pin the public key only")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise PinnedKeyError(f"{where}: a signer JWK must have kty EC and crv P-256 (ES256)")
    try:
        key = ec.EllipticCurvePublicNumbers(
            _coordinate(jwk, "x", where), _coordinate(jwk, "y", where), ec.SECP256R1()
        ).public_key()
    except ValueError:
        raise PinnedKeyError(f"{where}: the JWK's point is not on P-256") from None
    pin = _pin(key, where)
    kid = jwk.get("kid")
    if kid is not None and kid != pin.thumbprint:
        raise PinnedKeyError(
            f"{where}: the JWK's kid is not its RFC 7638 thumbprint ({pin.thumbprint}); "
            "copy the pin again from `sealq keys signer-pem --format jwk`"
        )
    return pin


def _from_json(document: object, where: str) -> list[Pin]:
    if isinstance(document, Mapping) and isinstance(document.get("keys"), list):
        pins = [_from_jwk(j, where) for j in document["keys"] if isinstance(j, Mapping)]
        if len(pins) != len(document["keys"]) or not pins:
            raise PinnedKeyError(f"{where}: a JWKS of pins must hold one or more JWK objects")
        return pins
    if isinstance(document, Mapping):
        return [_from_jwk(document, where)]
    raise PinnedKeyError(f"{where}: expected a JWK or a JWKS object")


def _from_text(data: bytes, where: str) -> list[Pin]:
    text = data.strip()
    if text.startswith(b"{"):
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise PinnedKeyError(f"{where}: not valid JSON: {exc}") from None
        return _from_json(document, where)
    blocks = _PEM_BLOCK.findall(text)
    if not blocks:
        raise PinnedKeyError(f"{where}: expected a PEM public key, a JWK or a JWKS")
    pins = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block)
        except ValueError:
            raise PinnedKeyError(f"{where}: the PEM public key does not parse") from None
        pins.append(_pin(key, where))
    return pins


def _from_file(path: Path) -> list[Pin]:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_PIN_FILE + 1)
    except OSError as exc:
        raise PinnedKeyError(f"cannot read pinned key file {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_PIN_FILE:
        raise PinnedKeyError(f"pinned key file {path} is larger than 64 KiB; is it the right file?")
    return _from_text(data, str(path))


def _load_one(item: PinInput) -> list[Pin]:
    if isinstance(item, Mapping):
        return _from_json(item, "verify_with")
    if isinstance(item, Path):
        return _from_file(item)
    if isinstance(item, bytes):
        return _from_text(item, "verify_with")
    if isinstance(item, str):
        stripped = item.lstrip()
        if stripped.startswith(("{", "-----BEGIN")):
            return _from_text(item.encode("utf-8"), "verify_with")
        return _from_file(Path(item))
    raise PinnedKeyError(f"verify_with: cannot use a {type(item).__name__} as a pinned key")


def load_pins(spec: PinsInput) -> tuple[Pin, ...]:
    """Every key `spec` pins, without duplicates; PinnedKeyError names the first problem."""
    items: Sequence[PinInput] = (
        spec if isinstance(spec, list | tuple) else [spec]  # type: ignore[list-item]
    )
    found: dict[str, Pin] = {}
    for item in items:
        for pin in _load_one(item):
            found.setdefault(pin.thumbprint, pin)
    if not found:
        raise PinnedKeyError("verify_with is empty; give the signer's PEM or JWK")
    return tuple(found.values())
