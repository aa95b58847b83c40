"""Round trips and header contents of the wire format."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sealq.envelope.b64 import b64url_decode
from sealq.envelope.jwe import TYP, OpeningKey, derive_kek, open_token, parse, seal, seal_at
from sealq.errors import OpenError, Reason
from tests.conftest import KEY_KINDS, KeyPair, load_vectors, vector_params


@pytest.mark.parametrize("kind", KEY_KINDS)
@pytest.mark.parametrize("size", [0, 1, 1000, 200_000])
def test_round_trip_every_key_kind(keypairs: dict[str, KeyPair], kind: str, size: int) -> None:
    pair = keypairs[kind]
    plaintext = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert open_token(seal(plaintext, pair.sealing), pair.opening) == plaintext


def test_protected_header_carries_kid_alg_enc_iat_typ(ec_pair: KeyPair) -> None:
    token = seal_at(b"hi", ec_pair.sealing, 1_800_000_000.7)
    header = json.loads(b64url_decode(token.split(b".")[0]))
    assert header["kid"] == ec_pair.kid
    assert header["alg"] == "ECDH-ES+A256KW"
    assert header["enc"] == "A256GCM"
    assert header["iat"] == 1_800_000_000
    assert header["typ"] == TYP
    assert set(header["epk"]) == {"kty", "crv", "x", "y"}


def test_every_seal_uses_fresh_content_key_and_iv(rsa_pair: KeyPair) -> None:
    tokens = [seal(b"same", rsa_pair.sealing).split(b".") for _ in range(20)]
    assert len({t[1] for t in tokens}) == 20  # encrypted content keys
    assert len({t[2] for t in tokens}) == 20  # IVs


def test_parsed_token_exposes_iat_for_expiry_grace(ec_pair: KeyPair) -> None:
    parsed = parse(seal_at(b"x", ec_pair.sealing, 1234))
    assert (parsed.kid, parsed.iat) == (ec_pair.kid, 1234)


def test_open_with_other_key_of_same_kind_fails_opaquely(keypairs: dict[str, KeyPair]) -> None:
    other = KeyPair("P-256", keypairs["P-256"].kid)
    with pytest.raises(OpenError) as info:
        open_token(seal(b"x", keypairs["P-256"].sealing), other.opening)
    assert info.value.reason is Reason.DECRYPT_FAILED
    assert str(info.value) == "message could not be opened (decrypt-failed)"


@pytest.mark.parametrize("apu, apv", [(b"", b""), (b"alice", b""), (b"", b"bob"), (b"a", b"b")])
def test_concat_kdf_matches_cryptography(apu: bytes, apv: bytes) -> None:
    z = bytes(range(32))
    alg = b"ECDH-ES+A256KW"
    other = (
        len(alg).to_bytes(4, "big")
        + alg
        + len(apu).to_bytes(4, "big")
        + apu
        + len(apv).to_bytes(4, "big")
        + apv
        + (256).to_bytes(4, "big")
    )
    expected = ConcatKDFHash(hashes.SHA256(), 32, other).derive(z)
    assert derive_kek(z, apu, apv) == expected


def test_opening_key_refuses_pickle_and_hides_material(ec_pair: KeyPair) -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(ec_pair.opening)
    assert "PRIVATE" not in repr(ec_pair.opening)
    assert repr(ec_pair.opening) == f"OpeningKey(kid={ec_pair.kid!r}, alg='ECDH-ES+A256KW')"


@pytest.fixture(scope="module")
def known_answer_keys() -> dict[str, OpeningKey]:
    doc = load_vectors("jwe_known_answer.json")
    return {
        k["kid"]: OpeningKey(
            k["kid"],
            load_pem_private_key(k["test_only_private_pem"].encode(), None),  # type: ignore[arg-type]
        )
        for k in doc["keys"]
    }


@pytest.mark.parametrize("case", vector_params("jwe_known_answer.json"))
def test_known_answer_vectors_still_open(
    case: dict[str, str], known_answer_keys: dict[str, OpeningKey]
) -> None:
    opened = open_token(case["token"], known_answer_keys[case["kid"]])
    assert opened == case["plaintext"].encode()


def test_a_body_of_many_parts_is_refused_without_splitting_it_whole() -> None:
    # A sender controls the body: a megabyte of separators must cost no more than any other
    # malformed token, not hundreds of thousands of objects per delivery.
    import tracemalloc

    from sealq.envelope.jwe import DEFAULT_MAX_TOKEN_BYTES

    body = b"ab." * (DEFAULT_MAX_TOKEN_BYTES // 3)
    tracemalloc.start()
    try:
        with pytest.raises(OpenError) as caught:
            parse(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.reason is Reason.MALFORMED
    assert peak < 64 * 1024, f"parsing allocated {peak} bytes"
