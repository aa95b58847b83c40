"""Parsing a published JWKS strictly, and choosing the key to seal to."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.envelope.b64 import int_to_b64url
from sealq.envelope.jwk import Alg, SealingKey, public_key_to_jwk
from sealq.errors import JwksError, NoUsableKeyError
from sealq.producer.jwks import choose_key, parse_jwks
from tests.conftest import KeyPair

NOW = 1_800_000_000


def _jwk(pair: KeyPair, kid: str | None = None, **extra: Any) -> dict[str, Any]:
    jwk = public_key_to_jwk(pair.public, kid or pair.kid)
    jwk.update(extra)
    return jwk


def test_parses_ec_and_rsa_keys_with_their_pinned_alg(ec_pair: KeyPair, rsa_pair: KeyPair) -> None:
    keys = parse_jwks({"keys": [_jwk(ec_pair, nbf=NOW - 10, exp=NOW + 10), _jwk(rsa_pair)]})
    assert [(k.kid, k.alg) for k in keys] == [
        (ec_pair.kid, Alg.ECDH_ES_A256KW),
        (rsa_pair.kid, Alg.RSA_OAEP_256),
    ]
    assert keys[0].key == ec_pair.public
    assert (keys[0].not_before, keys[0].expires_at) == (NOW - 10, NOW + 10)
    assert keys[1].key == rsa_pair.public


def test_accepts_json_text(ec_pair: KeyPair) -> None:
    import json

    assert parse_jwks(json.dumps({"keys": [_jwk(ec_pair)]}))[0].kid == ec_pair.kid


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k"])
def test_rejects_private_members(ec_pair: KeyPair, member: str) -> None:
    with pytest.raises(JwksError, match="private key members"):
        parse_jwks({"keys": [_jwk(ec_pair, **{member: "AAAA"})]})


def test_rejects_a_real_private_jwk(ec_pair: KeyPair) -> None:
    private = ec_pair.private
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    leaked = _jwk(ec_pair, d=int_to_b64url(private.private_numbers().private_value, 32))
    with pytest.raises(JwksError, match="publish public keys only"):
        parse_jwks({"keys": [leaked]})


def test_rejects_duplicate_kids(ec_pair: KeyPair, rsa_pair: KeyPair) -> None:
    with pytest.raises(JwksError, match="same kid twice"):
        parse_jwks({"keys": [_jwk(ec_pair, "same"), _jwk(rsa_pair, "same")]})


@pytest.mark.parametrize(
    ("pair_name", "alg"),
    [
        ("ec", "RSA-OAEP-256"),
        ("ec", "ECDH-ES"),
        ("rsa", "ECDH-ES+A256KW"),
        ("rsa", "RSA1_5"),
        ("rsa", "RSA-OAEP"),
    ],
)
def test_rejects_alg_the_key_is_not_pinned_to(
    ec_pair: KeyPair, rsa_pair: KeyPair, pair_name: str, alg: str
) -> None:
    pair = ec_pair if pair_name == "ec" else rsa_pair
    with pytest.raises(JwksError, match="declares alg"):
        parse_jwks({"keys": [_jwk(pair, alg=alg)]})


@pytest.mark.parametrize("crv", ["secp256k1", "P-192", "X25519", None])
def test_rejects_curves_outside_the_profile(ec_pair: KeyPair, crv: str | None) -> None:
    with pytest.raises(JwksError, match="curve"):
        parse_jwks({"keys": [_jwk(ec_pair, crv=crv)]})


def test_rejects_a_point_off_the_curve(ec_pair: KeyPair) -> None:
    jwk = _jwk(ec_pair)
    jwk["y"] = jwk["x"]  # (x, x) is not on P-256 for a random x
    with pytest.raises(JwksError, match=ec_pair.kid):
        parse_jwks({"keys": [jwk]})


def test_rejects_coordinates_of_the_wrong_length(ec_pair: KeyPair) -> None:
    jwk = _jwk(ec_pair, crv="P-384")  # P-256 coordinates claimed as P-384
    with pytest.raises(JwksError, match="48 bytes"):
        parse_jwks({"keys": [jwk]})


def test_rejects_small_rsa_keys() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(65537, 1024).public_key()
    nums = small.public_numbers()
    jwk = {"kty": "RSA", "kid": "small", "n": int_to_b64url(nums.n), "e": int_to_b64url(nums.e)}
    with pytest.raises(JwksError, match="RSA-1024 is not allowed"):
        parse_jwks({"keys": [jwk]})


@pytest.mark.parametrize("use", ["sig", "", None])
def test_rejects_use_other_than_enc(ec_pair: KeyPair, use: str | None) -> None:
    with pytest.raises(JwksError, match="use"):
        parse_jwks({"keys": [_jwk(ec_pair, use=use)]})


@pytest.mark.parametrize("kid", ["../etc/passwd", "a.b", "", "x" * 65, 7])
def test_rejects_bad_kids(ec_pair: KeyPair, kid: object) -> None:
    jwk = _jwk(ec_pair)
    jwk["kid"] = kid
    with pytest.raises(JwksError, match="invalid key id"):
        parse_jwks({"keys": [jwk]})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "not valid JSON"),
        ('{"keys": 5}', '"keys" array'),
        ("[]", '"keys" array'),
        ({"keys": []}, "no keys"),
        ({"keys": [5]}, "JSON object"),
        ({"keys": [{"kty": "oct", "kid": "a"}]}, "kty"),
    ],
)
def test_rejects_malformed_documents(document: Any, message: str) -> None:
    with pytest.raises(JwksError, match=message):
        parse_jwks(document)


@pytest.mark.parametrize("value", ["1800000000", True, [1]])
def test_rejects_non_numeric_times(ec_pair: KeyPair, value: object) -> None:
    with pytest.raises(JwksError, match="NumericDate"):
        parse_jwks({"keys": [_jwk(ec_pair, exp=value)]})


def _key(pair: KeyPair, kid: str, nbf: int | None, exp: int | None) -> SealingKey:
    return SealingKey(kid, pair.sealing.alg, pair.public, nbf, exp)


def test_choose_key_picks_latest_not_before_among_usable(ec_pair: KeyPair) -> None:
    keys = (
        _key(ec_pair, "old", NOW - 1000, NOW + 100),
        _key(ec_pair, "current", NOW - 10, NOW + 1000),
        _key(ec_pair, "pending", NOW + 50, NOW + 2000),  # not valid yet
        _key(ec_pair, "expired", NOW - 5, NOW),  # expires exactly now
    )
    assert choose_key(keys, NOW).kid == "current"
    assert choose_key(keys, NOW + 60).kid == "pending"
    assert choose_key(keys, NOW + 1500).kid == "pending"


def test_choose_key_tie_goes_to_first_listed(ec_pair: KeyPair) -> None:
    keys = (_key(ec_pair, "newer", NOW, NOW + 10), _key(ec_pair, "older", NOW, NOW + 10))
    assert choose_key(keys, NOW).kid == "newer"
    assert choose_key(tuple(reversed(keys)), NOW).kid == "older"


def test_choose_key_without_times_is_usable(ec_pair: KeyPair) -> None:
    assert choose_key((_key(ec_pair, "forever", None, None),), NOW).kid == "forever"


def test_choose_key_when_all_expired_says_when_and_what_to_do(ec_pair: KeyPair) -> None:
    keys = (_key(ec_pair, "a", NOW - 100, NOW - 50), _key(ec_pair, "b", NOW - 100, NOW - 1))
    with pytest.raises(NoUsableKeyError) as info:
        choose_key(keys, NOW)
    text = str(info.value)
    assert "every key has expired" in text
    assert "2027-01-15T07:59:59Z" in text  # when the last key expired
    assert "sealq keys rotate" in text


def test_choose_key_when_none_valid_yet(ec_pair: KeyPair) -> None:
    with pytest.raises(NoUsableKeyError, match="no key is valid yet"):
        choose_key((_key(ec_pair, "a", NOW + 10, NOW + 100),), NOW)


def test_parse_does_not_mutate_input(ec_pair: KeyPair) -> None:
    document = {"keys": [_jwk(ec_pair)]}
    before = copy.deepcopy(document)
    parse_jwks(document)
    assert document == before
