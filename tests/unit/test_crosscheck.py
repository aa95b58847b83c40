"""sealq's hand-written JWE profile against two independent JOSE libraries, both directions."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwe as rfc_jwe
from joserfc.jwk import ECKey, RSAKey
from joserfc.registry import HeaderParameter
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk

from sealq.envelope.jwe import open_token, seal
from sealq.envelope.jwk import jwk_to_sealing_key, public_key_to_jwk
from tests.conftest import KEY_KINDS, KeyPair

PLAINTEXT = "ünïcode and bytes \x00\x01".encode() * 7


def _alg(pair: KeyPair) -> str:
    return pair.sealing.alg.value


def _private_pem(pair: KeyPair) -> bytes:
    return pair.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _rfc_key(pair: KeyPair, jwk: dict[str, object] | None = None) -> ECKey | RSAKey:
    cls = ECKey if pair.kind.startswith("P-") else RSAKey
    return cls.import_key(jwk if jwk is not None else _private_pem(pair))


# joserfc refuses header members it does not know; sealq's `iat` (RFC 7519 5.3 replicated
# claim) has to be registered, as the README tells users of that library.
_RFC_REGISTRY = rfc_jwe.JWERegistry(
    header_registry={"iat": HeaderParameter("Issued at", "int")},
    algorithms=["ECDH-ES+A256KW", "RSA-OAEP-256", "A256GCM"],
)


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_jwcrypto_opens_what_sealq_sealed(keypairs: dict[str, KeyPair], kind: str) -> None:
    pair = keypairs[kind]
    token = seal(PLAINTEXT, pair.sealing).decode()
    key = jc_jwk.JWK.from_pem(_private_pem(pair))
    message = jc_jwe.JWE()
    message.deserialize(token, key=key)
    assert message.payload == PLAINTEXT


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_sealq_opens_what_jwcrypto_sealed_to_published_jwk(
    keypairs: dict[str, KeyPair], kind: str
) -> None:
    pair = keypairs[kind]
    public = jc_jwk.JWK(**public_key_to_jwk(pair.public, pair.kid))
    header = {"alg": _alg(pair), "enc": "A256GCM", "kid": pair.kid}
    message = jc_jwe.JWE(PLAINTEXT, protected=json.dumps(header))
    message.add_recipient(public)
    assert open_token(message.serialize(compact=True), pair.opening) == PLAINTEXT


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_joserfc_opens_what_sealq_sealed(keypairs: dict[str, KeyPair], kind: str) -> None:
    pair = keypairs[kind]
    token = seal(PLAINTEXT, pair.sealing)
    result = rfc_jwe.decrypt_compact(token, _rfc_key(pair), registry=_RFC_REGISTRY)
    assert result.plaintext == PLAINTEXT
    assert result.protected["kid"] == pair.kid


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_sealq_opens_what_joserfc_sealed_to_published_jwk(
    keypairs: dict[str, KeyPair], kind: str
) -> None:
    pair = keypairs[kind]
    public = _rfc_key(pair, public_key_to_jwk(pair.public, pair.kid))
    header = {"alg": _alg(pair), "enc": "A256GCM", "kid": pair.kid}
    token = rfc_jwe.encrypt_compact(header, PLAINTEXT, public, registry=_RFC_REGISTRY)
    assert open_token(token, pair.opening) == PLAINTEXT


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_published_jwk_round_trips_through_both_libraries(
    keypairs: dict[str, KeyPair], kind: str
) -> None:
    pair = keypairs[kind]
    ours = public_key_to_jwk(pair.public, pair.kid, not_before=1, expires_at=2)
    for theirs in (
        json.loads(jc_jwk.JWK(**ours).export_public()),
        _rfc_key(pair, ours).as_dict(private=False),
    ):
        parsed = jwk_to_sealing_key(theirs)
        assert parsed.key == pair.public
        assert parsed.kid == pair.kid


def test_sealq_opens_jwcrypto_token_with_apu_apv(keypairs: dict[str, KeyPair]) -> None:
    pair = keypairs["P-256"]
    public = jc_jwk.JWK(**public_key_to_jwk(pair.public, pair.kid))
    header = {
        "alg": "ECDH-ES+A256KW",
        "enc": "A256GCM",
        "kid": pair.kid,
        "apu": "QWxpY2U",
        "apv": "Qm9i",
    }
    message = jc_jwe.JWE(PLAINTEXT, protected=json.dumps(header))
    message.add_recipient(public)
    assert open_token(message.serialize(compact=True), pair.opening) == PLAINTEXT
