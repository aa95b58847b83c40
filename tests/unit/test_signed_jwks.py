"""The hand-written ES256 JWS check of signed key sets (sealq.producer.signed) and the pins it
trusts (sealq.producer.pins), cross-checked against jwcrypto and joserfc."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws as rfc_jws
from joserfc.jwk import ECKey
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

from sealq.envelope.b64 import b64url_encode
from sealq.envelope.jwk import public_key_to_jwk
from sealq.errors import (
    BadSignatureError,
    JwksRollbackError,
    JwsProfileError,
    PinnedKeyError,
    SignedJwksExpiredError,
    UnsignedJwksError,
    UntrustedSignerError,
)
from sealq.keys.signing import der_to_raw
from sealq.producer.pins import load_pins, public_jwk, thumbprint
from sealq.producer.signed import TYP, KeySetVerifier, VersionMemory, verify_document

NOW = 1_800_000_000


def _seg(value: Any) -> bytes:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def _jwks() -> dict[str, Any]:
    enc = ec.generate_private_key(ec.SECP256R1()).public_key()
    return {"keys": [public_key_to_jwk(enc, "k-2026-a", not_before=NOW - 10, expires_at=NOW + 86400)]}


def payload(version: int = 1, *, iat: int = NOW, exp: int = NOW + 3600) -> dict[str, Any]:
    return {**_jwks(), "iat": iat, "exp": exp, "version": version}


def sign(private: ec.EllipticCurvePrivateKey, body: Any, **header: Any) -> str:
    """A compact JWS built by hand, so tests can vary every part."""
    protected = {"alg": "ES256", "typ": TYP, "kid": thumbprint(private.public_key()), **header}
    signing_input = _seg(protected) + b"." + _seg(body)
    der = private.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    return (signing_input + b"." + b64url_encode(der_to_raw(der))).decode()


@pytest.fixture
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def pins_of(*keys: ec.EllipticCurvePrivateKey) -> tuple[Any, ...]:
    return load_pins([pem(k.public_key()) for k in keys])


def test_thumbprint_matches_jwcrypto_and_joserfc(signer: ec.EllipticCurvePrivateKey) -> None:
    jwk = public_jwk(signer.public_key())
    assert thumbprint(signer.public_key()) == jc_jwk.JWK(**jwk).thumbprint()
    assert thumbprint(signer.public_key()) == ECKey.import_key(jwk).thumbprint()
    # RFC 7638 section 3.1's canonical form, hashed by hand.
    canonical = '{"crv":"P-256","kty":"EC","x":"' + jwk["x"] + '","y":"' + jwk["y"] + '"}'
    assert (
        thumbprint(signer.public_key()) == b64url_encode(hashlib.sha256(canonical.encode()).digest()).decode()
    )


def test_accepts_what_jwcrypto_and_joserfc_sign(signer: ec.EllipticCurvePrivateKey) -> None:
    private_pem = signer.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    header = {"alg": "ES256", "typ": TYP, "kid": thumbprint(signer.public_key())}
    body = json.dumps(payload(7))
    token = jc_jws.JWS(body)
    token.add_signature(jc_jwk.JWK.from_pem(private_pem), alg="ES256", protected=json.dumps(header))
    by_jwcrypto = token.serialize(compact=True)
    by_joserfc = rfc_jws.serialize_compact(header, body, ECKey.import_key(private_pem), algorithms=["ES256"])
    for document in (by_jwcrypto, by_joserfc):
        signed = verify_document(document, pins_of(signer), NOW)
        assert (signed.version, signed.signer) == (7, thumbprint(signer.public_key()))
        assert signed.jwks["keys"][0]["kid"] == "k-2026-a"


def test_what_sealq_signs_verifies_with_jwcrypto_and_joserfc(signer: ec.EllipticCurvePrivateKey) -> None:
    document = sign(signer, payload(3))
    public_pem = pem(signer.public_key())
    checked = jc_jws.JWS()
    checked.deserialize(document, key=jc_jwk.JWK.from_pem(public_pem), alg="ES256")
    assert json.loads(checked.payload)["version"] == 3
    result = rfc_jws.deserialize_compact(document, ECKey.import_key(public_pem), algorithms=["ES256"])
    assert result.headers()["typ"] == TYP and json.loads(result.payload)["version"] == 3


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ({"alg": "none"}, "alg 'none'"),
        ({"alg": "HS256"}, "alg 'HS256'"),
        ({"alg": "ES384"}, "only ES256"),
        ({"typ": "JWT"}, "typ must be"),
        ({"crit": ["exp"]}, "crit"),
        ({"jwk": {"kty": "EC"}}, "jwk"),
        ({"kid": "../../etc"}, "thumbprint"),
    ],
)
def test_refuses_other_headers(
    signer: ec.EllipticCurvePrivateKey, header: dict[str, Any], error: str
) -> None:
    with pytest.raises(JwsProfileError, match=error):
        verify_document(sign(signer, payload(), **header), pins_of(signer), NOW)


def test_refuses_an_hs256_token_keyed_with_the_public_key(signer: ec.EllipticCurvePrivateKey) -> None:
    """The classic alg confusion: HMAC keyed by the (public) PEM. Refused on alg, before any key use."""
    key_text = pem(signer.public_key())
    head = _seg({"alg": "HS256", "typ": TYP, "kid": thumbprint(signer.public_key())}) + b"." + _seg(payload())
    mac = hmac.HMAC(key_text, hashes.SHA256())
    mac.update(head)
    with pytest.raises(JwsProfileError, match="HS256"):
        verify_document(head + b"." + b64url_encode(mac.finalize()), pins_of(signer), NOW)


def test_refusals_name_why(signer: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    pins = pins_of(signer)
    with pytest.raises(UnsignedJwksError, match="unsigned JWKS"):
        verify_document(json.dumps(_jwks()), pins, NOW)
    flattened = json.dumps({"payload": "x", "protected": "y", "signature": "z"})
    with pytest.raises(JwsProfileError, match="not a compact JWS"):
        verify_document(flattened, pins, NOW)
    with pytest.raises(UntrustedSignerError, match="not pinned"):
        verify_document(sign(other, payload()), pins, NOW)
    with pytest.raises(SignedJwksExpiredError, match="expired at"):
        verify_document(sign(signer, payload(exp=NOW)), pins, NOW)
    with pytest.raises(JwsProfileError, match="future"):
        verify_document(sign(signer, payload(iat=NOW + 301)), pins, NOW)
    with pytest.raises(JwsProfileError, match="whole-number 'version'"):
        verify_document(sign(signer, {**payload(), "version": "9"}), pins, NOW)
    head, _, sig = sign(signer, payload()).split(".")
    with pytest.raises(BadSignatureError, match="altered after signing"):
        verify_document(f"{head}.{_seg(payload(99)).decode()}.{sig}", pins, NOW)
    forged = sign(other, payload()).split(".")[2]  # right kid, someone else's signature
    with pytest.raises(BadSignatureError):
        verify_document(f"{head}.{_seg(payload()).decode()}.{forged}", pins, NOW)
    with pytest.raises(BadSignatureError, match="64-byte"):
        verify_document(f"{head}.{_seg(payload()).decode()}.{sig[:-4]}", pins, NOW)


def test_rollback_is_refused_across_verifiers_sharing_a_pin(signer: ec.EllipticCurvePrivateKey) -> None:
    memory = VersionMemory()
    old, new = ec.generate_private_key(ec.SECP256R1()), signer
    rotating = KeySetVerifier(pins_of(old, new), memory)
    assert rotating.verify(sign(old, payload(5)), NOW).version == 5
    assert rotating.verify(sign(new, payload(6)), NOW).version == 6
    assert rotating.verify(sign(new, payload(6)), NOW).version == 6  # the same one again is fine
    with pytest.raises(JwksRollbackError, match="version 5, older than version 6"):
        rotating.verify(sign(old, payload(5)), NOW)
    with pytest.raises(JwksRollbackError):
        KeySetVerifier(pins_of(new), memory).verify(sign(new, payload(4)), NOW)


def test_pin_shapes(signer: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    public = signer.public_key()
    text = pem(public)
    jwk = {**public_jwk(public), "kid": thumbprint(public)}
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "a.pem").write_bytes(text + pem(other))
    (tmp_path / "a.jwk").write_text(json.dumps(jwk))
    want = thumbprint(public)
    shapes: list[Any] = [text, text.decode(), public_jwk(public), jwk, json.dumps(jwk), {"keys": [jwk]}]
    for shape in [*shapes, tmp_path / "a.jwk", str(tmp_path / "a.jwk")]:
        assert [p.thumbprint for p in load_pins(shape)] == [want]
    assert [p.thumbprint for p in load_pins(tmp_path / "a.pem")] == [want, thumbprint(other)]
    assert len(load_pins([text, jwk, pem(other)])) == 2  # duplicates collapse


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda k: {**public_jwk(k), "kid": "A" * 43}, "not its RFC 7638 thumbprint"),
        (lambda k: {**public_jwk(k), "d": "AAAA"}, "private key"),
        (lambda k: {**public_jwk(k), "crv": "P-384"}, "crv P-256"),
        (lambda k: pem(ec.generate_private_key(ec.SECP384R1()).public_key()), "P-256"),
        (lambda k: "/nonexistent/pin.pem", "cannot read pinned key file"),
        (lambda k: [], "empty"),
        (lambda k: b"not a key", "expected a PEM"),
    ],
)
def test_bad_pins_are_refused(signer: ec.EllipticCurvePrivateKey, make: Any, error: str) -> None:
    with pytest.raises(PinnedKeyError, match=error):
        load_pins(make(signer.public_key()))
