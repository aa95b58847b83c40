"""Signing the published JWKS with a KMS asymmetric key (ES256): the private half stays in KMS.

Compact serialization, because it is one string that every JOSE library verifies in one
call (jwcrypto `JWS.deserialize`, joserfc `jws.deserialize_compact`, jose4j, go-jose,
`jose` in JS), and because with one signature the flattened JSON form adds nothing.

KMS `Sign` is called with `MessageType=DIGEST` (the SHA-256 of the JWS signing input):
AWS caps a RAW message at 4096 bytes, and a JWKS holding two RSA-4096 keys is near that. KMS
returns a DER ECDSA signature; JWS ES256 wants the fixed 64-byte `r || s` (RFC 7518 3.4),
so it is converted, and checked against the public key before the document is written.

`version` is max(publish time in milliseconds, previous version + 1), the previous being the
document already at `--out` when it verifies under the same signer: monotonic across
publishes to one place even if a clock steps back, and still ordered (by time) when there is
no previous document to read (stdout, a fresh machine).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sealq.envelope.b64 import b64url_encode
from sealq.errors import SealqError, SignedJwksError
from sealq.producer.pins import Pin, public_jwk, thumbprint
from sealq.producer.signed import ALG, TYP, verify_document

SIGNING_ALGORITHM = "ECDSA_SHA_256"


class SignerKeyError(SealqError):
    """The --sign-with KMS key cannot sign sealq key sets (wrong spec or usage)."""


@dataclass(frozen=True)
class Signer:
    """A KMS signing key and its public half (from GetPublicKey)."""

    key_id: str  # the key's ARN, as KMS reports it
    public_key: ec.EllipticCurvePublicKey
    thumbprint: str

    def pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def jwk(self) -> dict[str, str]:
        """The thumbprinted JWK clients pin: kid is the RFC 7638 thumbprint."""
        return {**public_jwk(self.public_key), "kid": self.thumbprint, "alg": ALG, "use": "sig"}


def signer(kms: Any, key_id: str) -> Signer:
    """GetPublicKey, refusing a key that is not ECC_NIST_P256 / SIGN_VERIFY / ECDSA_SHA_256."""
    response = kms.get_public_key(KeyId=key_id)
    spec, usage = response.get("KeySpec"), response.get("KeyUsage")
    if spec != "ECC_NIST_P256" or usage != "SIGN_VERIFY":
        raise SignerKeyError(
            f"--sign-with {key_id} is a {spec} key for {usage}; create one with "
            "`aws kms create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY`"
        )
    if SIGNING_ALGORITHM not in response.get("SigningAlgorithms", [SIGNING_ALGORITHM]):
        raise SignerKeyError(f"--sign-with {key_id} does not offer {SIGNING_ALGORITHM}")
    key = serialization.load_der_public_key(response["PublicKey"])
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignerKeyError(f"KMS returned a non-EC public key for --sign-with {key_id}")
    return Signer(str(response.get("KeyId") or key_id), key, thumbprint(key))


def der_to_raw(der: bytes, size: int = 32) -> bytes:
    """A DER ECDSA signature (what KMS returns) as JWS's fixed-width `r || s`."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _segment(value: dict[str, Any]) -> bytes:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def sign_jwks(kms: Any, by: Signer, jwks: dict[str, Any], *, now: int, valid_for_s: int, version: int) -> str:
    """The compact JWS over the JWKS plus iat, exp and version; one KMS Sign call."""
    header = {"alg": ALG, "typ": TYP, "kid": by.thumbprint}
    payload = {**jwks, "iat": now, "exp": now + valid_for_s, "version": version}
    signing_input = _segment(header) + b"." + _segment(payload)
    response = kms.sign(
        KeyId=by.key_id,
        Message=hashlib.sha256(signing_input).digest(),
        MessageType="DIGEST",
        SigningAlgorithm=SIGNING_ALGORITHM,
    )
    der = response["Signature"]
    try:
        by.public_key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignerKeyError(
            f"KMS Sign with {by.key_id} returned a signature its public key does not verify; "
            "check --sign-with"
        ) from None
    return (signing_input + b"." + b64url_encode(der_to_raw(der))).decode("ascii")


def next_version(previous: bytes | None, by: Signer, now_ms: int) -> int:
    """max(now in ms, previous + 1); a previous document not verifiably ours is ignored."""
    if previous is None:
        return now_ms
    try:
        # No time checks: an expired previous document still fixes the order.
        signed = verify_document(previous, (Pin(by.thumbprint, by.public_key),), now=None)
    except SignedJwksError:
        return now_ms
    return max(now_ms, signed.version + 1)
