"""Public keys as sealq publishes them: kid rules, the one alg each key is pinned to, and
strict JWK (RFC 7517/7518) conversion that refuses anything carrying private material."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.envelope.b64 import b64url_decode, int_to_b64url
from sealq.errors import InvalidKidError, JwksError

KID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Kids arrive from untrusted messages: letters, digits, `-` and `_`, at most 64, no dots or
slashes, so a kid can never name a path or break out of a log field."""

ENC = "A256GCM"


class Alg(StrEnum):
    ECDH_ES_A256KW = "ECDH-ES+A256KW"
    RSA_OAEP_256 = "RSA-OAEP-256"


# JWK curve name -> (curve class, coordinate length in bytes)
CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}
_CURVE_BY_OID_NAME = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
RSA_SIZES = frozenset({2048, 3072, 4096})

# Members that only a private JWK carries; their presence means someone published a secret.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

PublicKeyObject = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKeyObject = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def validate_kid(kid: object) -> str:
    if not isinstance(kid, str) or KID_PATTERN.fullmatch(kid) is None:
        raise InvalidKidError(
            f"invalid key id {str(kid)[:80]!r}: use 1-64 letters, digits, '-' or '_'"
        )
    return kid


def curve_name(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> str:
    """The JWK name of a key's curve; ValueError for curves outside the profile."""
    try:
        return _CURVE_BY_OID_NAME[key.curve.name]
    except KeyError:
        raise ValueError(
            f"curve {key.curve.name} is not allowed; use P-256, P-384 or P-521"
        ) from None


def alg_for_key(key: PublicKeyObject | PrivateKeyObject) -> Alg:
    """The single alg a key is pinned to; ValueError for keys outside the profile."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        curve_name(key)
        return Alg.ECDH_ES_A256KW
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size not in RSA_SIZES:
            raise ValueError(f"RSA-{key.key_size} is not allowed; use 2048, 3072 or 4096 bits")
        return Alg.RSA_OAEP_256
    raise ValueError(f"unsupported key type {type(key).__name__}")


@dataclass(frozen=True, slots=True)
class SealingKey:
    """A public key a producer may seal to, with its validity window (epoch seconds)."""

    kid: str
    alg: Alg
    key: PublicKeyObject
    not_before: int | None = None
    expires_at: int | None = None

    def usable_at(self, now: float) -> bool:
        if self.not_before is not None and now < self.not_before:
            return False
        return self.expires_at is None or now < self.expires_at


def public_key_to_jwk(
    key: PublicKeyObject, kid: str, *, not_before: int | None = None, expires_at: int | None = None
) -> dict[str, Any]:
    alg = alg_for_key(key)
    jwk: dict[str, Any]
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = curve_name(key)
        size = CURVES[crv][1]
        nums = key.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": crv,
            "x": int_to_b64url(nums.x, size),
            "y": int_to_b64url(nums.y, size),
        }
    else:
        rnums = key.public_numbers()
        jwk = {"kty": "RSA", "n": int_to_b64url(rnums.n), "e": int_to_b64url(rnums.e)}
    jwk.update({"kid": validate_kid(kid), "use": "enc", "alg": alg.value})
    if not_before is not None:
        jwk["nbf"] = not_before
    if expires_at is not None:
        jwk["exp"] = expires_at
    return jwk


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise JwksError(f"JWK member {name!r} must be a base64url string")
    try:
        return b64url_decode(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise JwksError(f"JWK member {name!r} is not valid base64url") from None


def _optional_time(jwk: Mapping[str, Any], name: str) -> int | None:
    value = jwk.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise JwksError(f"JWK member {name!r} must be a NumericDate (seconds since the epoch)")
    return int(value)


def jwk_to_sealing_key(jwk: Mapping[str, Any]) -> SealingKey:
    """Parse one public JWK; JwksError says what is wrong with it."""
    if not isinstance(jwk, Mapping):
        raise JwksError("each entry of 'keys' must be a JSON object")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise JwksError(
            f"JWK {jwk.get('kid')!r} contains private key members; publish public keys only"
        )
    try:
        kid = validate_kid(jwk.get("kid"))
    except InvalidKidError as exc:
        raise JwksError(str(exc)) from None
    use = jwk.get("use", "enc")
    if use != "enc":
        raise JwksError(f"JWK {kid!r} has use {use!r}; sealq keys must have use 'enc'")
    kty = jwk.get("kty")
    key: PublicKeyObject
    try:
        if kty == "EC":
            crv = jwk.get("crv")
            if crv not in CURVES:
                raise JwksError(f"JWK {kid!r}: curve {crv!r} not allowed; use P-256/P-384/P-521")
            curve_cls, size = CURVES[str(crv)]
            x, y = _member(jwk, "x"), _member(jwk, "y")
            if len(x) != size or len(y) != size:
                raise JwksError(f"JWK {kid!r}: x and y must be {size} bytes for {crv}")
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve_cls(), b"\x04" + x + y)
        elif kty == "RSA":
            n = int.from_bytes(_member(jwk, "n"), "big")
            e = int.from_bytes(_member(jwk, "e"), "big")
            key = rsa.RSAPublicNumbers(e, n).public_key()
        else:
            raise JwksError(f"JWK {kid!r}: kty {kty!r} not supported; use EC or RSA")
        alg = alg_for_key(key)
    except ValueError as exc:
        raise JwksError(f"JWK {kid!r}: {exc}") from None
    declared = jwk.get("alg")
    if declared is not None and declared != alg.value:
        raise JwksError(f"JWK {kid!r} declares alg {declared!r}; sealq pins this key to {alg}")
    return SealingKey(
        kid=kid,
        alg=alg,
        key=key,
        not_before=_optional_time(jwk, "nbf"),
        expires_at=_optional_time(jwk, "exp"),
    )
