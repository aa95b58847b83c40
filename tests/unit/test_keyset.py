"""The keyset document: lifetimes, the public view, and the KMS EncryptionContext."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from sealq.keys.keyset import (
    KeyRecord,
    Keyset,
    KeySpec,
    KeyState,
    UnknownKidError,
    new_kid,
    public_key_problem,
)
from sealq.keys.store import KeysetError, parse_keyset
from sealq.producer.jwks import choose_key, parse_jwks
from tests.conftest import KeyPair

T0 = datetime(2027, 1, 1, tzinfo=UTC)
WRAPPED = base64.b64encode(b"wrapped-private-key-blob").decode()


def _der(pair: KeyPair) -> str:
    der = pair.public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _record(
    pair: KeyPair,
    kid: str,
    *,
    start: datetime = T0,
    days: int = 30,
    created: datetime | None = None,
    spec: KeySpec = KeySpec.ECC_NIST_P256,
) -> KeyRecord:
    return KeyRecord(
        kid=kid,
        key_spec=spec,
        alg=spec.alg,
        cmk_arn="arn:aws:kms:us-east-1:000000000000:key/test",
        public_key=_der(pair),
        wrapped_private_key=WRAPPED,
        created_at=created or start,
        not_before=start,
        expires_at=start + timedelta(days=days),
    )


def test_encryption_context_binds_kid_and_expiry(ec_pair: KeyPair) -> None:
    record = _record(ec_pair, "k1")
    assert record.encryption_context() == {
        "sealq:kid": "k1",
        "sealq:expires-at": "2027-01-31T00:00:00Z",
    }
    later = record.model_copy(update={"expires_at": T0 + timedelta(days=365)})
    assert later.encryption_context() != record.encryption_context()


def test_status_follows_the_clock(ec_pair: KeyPair) -> None:
    record = _record(ec_pair, "k1", start=T0 + timedelta(days=1))
    assert record.status(T0) == "pending"
    assert record.status(T0 + timedelta(days=1)) == "active"
    assert record.status(T0 + timedelta(days=31)) == "expired"
    assert record.shredded(T0).status(T0 + timedelta(days=2)) == "expired"


def test_shredding_erases_the_wrapped_key(ec_pair: KeyPair) -> None:
    shredded = _record(ec_pair, "k1").shredded(T0 + timedelta(seconds=5, microseconds=7))
    assert shredded.wrapped_private_key is None
    assert shredded.state is KeyState.EXPIRED
    assert shredded.shredded_at == T0 + timedelta(seconds=5)
    assert WRAPPED not in shredded.model_dump_json()


def test_jwks_excludes_expired_and_shredded_and_never_carries_wrapped_keys(
    keypairs: dict[str, KeyPair],
) -> None:
    now = T0 + timedelta(days=10)
    keyset = Keyset()
    keyset = keyset.with_record(_record(keypairs["P-256"], "live"))
    keyset = keyset.with_record(_record(keypairs["P-384"], "past", start=T0, days=5))
    keyset = keyset.with_record(_record(keypairs["RSA-2048"], "shred").shredded(T0))
    keyset = keyset.with_record(_record(keypairs["P-521"], "pending", start=now + timedelta(days=1)))
    jwks = keyset.jwks(now)
    assert [k["kid"] for k in jwks["keys"]] == ["pending", "live"]
    text = json.dumps(jwks)
    assert WRAPPED not in text
    assert "wrapped" not in text and "cmk" not in text
    for jwk in jwks["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
    # and clients accept it as it is
    assert [k.kid for k in parse_jwks(jwks)] == ["pending", "live"]


def test_jwks_members(ec_pair: KeyPair) -> None:
    (jwk,) = Keyset().with_record(_record(ec_pair, "k1")).jwks(T0)["keys"]
    assert jwk["use"] == "enc"
    assert jwk["alg"] == "ECDH-ES+A256KW"
    assert jwk["nbf"] == int(T0.timestamp())
    assert jwk["exp"] == int((T0 + timedelta(days=30)).timestamp())


def test_key_made_in_the_same_second_wins_current_and_jwks_order(ec_pair: KeyPair) -> None:
    """`keys rotate` right after `keys create`: not-before and expiry tie to the second."""
    first = _record(ec_pair, "first", created=T0 + timedelta(microseconds=100))
    second = _record(ec_pair, "second", created=T0 + timedelta(microseconds=900))
    for ordering in ([first, second], [second, first]):
        keyset = Keyset()
        for record in ordering:
            keyset = keyset.with_record(record)
        current = keyset.current(T0)
        assert current is not None and current.kid == "second"
        jwks = keyset.jwks(T0)
        assert [k["kid"] for k in jwks["keys"]] == ["second", "first"]
        assert choose_key(parse_jwks(jwks), T0.timestamp()).kid == "second"


def test_created_at_keeps_microseconds_through_json(ec_pair: KeyPair) -> None:
    created = T0 + timedelta(microseconds=123456)
    keyset = Keyset().with_record(_record(ec_pair, "k1", created=created))
    again = parse_keyset(keyset.model_dump_json().encode())
    assert again.get("k1").created_at == created
    assert again.get("k1").not_before == T0


def test_current_ignores_expired_and_pending(ec_pair: KeyPair) -> None:
    keyset = Keyset()
    keyset = keyset.with_record(_record(ec_pair, "old", start=T0, days=5))
    keyset = keyset.with_record(_record(ec_pair, "pending", start=T0 + timedelta(days=20)))
    keyset = keyset.with_record(_record(ec_pair, "now", start=T0 + timedelta(days=1)))
    assert keyset.current(T0 + timedelta(days=2)).kid == "now"  # type: ignore[union-attr]
    assert keyset.current(T0 + timedelta(days=21)).kid == "pending"  # type: ignore[union-attr]
    assert keyset.current(T0 + timedelta(days=99)) is None


def test_with_record_replaces_the_same_kid(ec_pair: KeyPair) -> None:
    keyset = Keyset().with_record(_record(ec_pair, "k1"))
    keyset = keyset.with_record(keyset.get("k1").shredded(T0))
    assert len(keyset.keys) == 1
    assert keyset.get("k1").wrapped_private_key is None


def test_unknown_kid_names_it_and_the_fix(ec_pair: KeyPair) -> None:
    with pytest.raises(UnknownKidError, match=r"'nope'.*sealq keys list"):
        Keyset().with_record(_record(ec_pair, "k1")).get("nope")


def test_public_pem_is_the_public_key(rsa_pair: KeyPair) -> None:
    pem = _record(rsa_pair, "r1", spec=KeySpec.RSA_2048).public_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert serialization.load_pem_public_key(pem.encode()) == rsa_pair.public


def test_new_kid_is_valid_and_unique() -> None:
    kids = {new_kid(KeySpec.RSA_4096, T0) for _ in range(100)}
    assert len(kids) == 100
    assert all(k.startswith("rsa4096-20270101-") for k in kids)
    assert new_kid(KeySpec.ECC_NIST_P384, T0).startswith("p384-")


def test_keyset_with_an_alg_that_does_not_fit_the_key_spec_fails_to_load_naming_the_kid(
    ec_pair: KeyPair,
) -> None:
    # An RSA alg on a P-256 key could never open a message; loading such a keyset must fail
    # (the worker keeps its last good keyset) instead of costing a KMS Decrypt per delivery.
    document = json.loads(Keyset().with_record(_record(ec_pair, "p256-bad")).model_dump_json())
    document["keys"][0]["alg"] = "RSA-OAEP-256"
    with pytest.raises(KeysetError) as caught:
        parse_keyset(json.dumps(document).encode(), "ks.json")
    message = str(caught.value)
    assert "\n" not in message
    assert "ks.json is not a valid sealq keyset" in message and "'p256-bad'" in message
    assert "RSA-OAEP-256" in message and "ECC_NIST_P256" in message
    with pytest.raises(ValueError, match="p256-bad"):  # built in code, too
        KeyRecord(**{**_record(ec_pair, "p256-bad").model_dump(), "alg": "RSA-OAEP-256"})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other/9"), "unsupported keyset format"),
        (lambda d: d["keys"][0].update(kid="../x"), "invalid key id"),
        (lambda d: d["keys"][0].update(expires_at="2027-01-01T00:00:00"), "timezone"),
        (lambda d: d["keys"][0].update(extra=1), "keys.0.extra"),
        (lambda d: d["keys"][0].update(key_spec="ECC_SECG_P256K1"), "key_spec"),
    ],
)
def test_parse_keyset_errors_name_the_field(ec_pair: KeyPair, mutate: object, message: str) -> None:
    document = json.loads(Keyset().with_record(_record(ec_pair, "k1")).model_dump_json())
    mutate(document)  # type: ignore[operator]
    with pytest.raises(KeysetError, match=message):
        parse_keyset(json.dumps(document).encode(), "ks.json")


def test_parse_keyset_rejects_non_json() -> None:
    with pytest.raises(KeysetError, match=r"ks.json is not a valid sealq keyset"):
        parse_keyset(b"{nope", "ks.json")


def test_public_key_problem_names_the_kid_of_a_key_that_is_not_its_spec(
    keypairs: dict[str, KeyPair], rsa_pair: KeyPair
) -> None:
    good = _record(keypairs["P-384"], "p384-k", spec=KeySpec.ECC_NIST_P384)
    assert public_key_problem(good) is None
    assert public_key_problem(_record(rsa_pair, "rsa-k", spec=KeySpec.RSA_2048)) is None
    other_curve = good.model_copy(update={"public_key": _der(keypairs["P-256"])})
    rsa_in_ec = good.model_copy(update={"public_key": _der(rsa_pair)})
    wrong_size = _record(rsa_pair, "rsa-k", spec=KeySpec.RSA_4096)
    for record, shown in ((other_curve, "P-256"), (rsa_in_ec, "RSA_2048"), (wrong_size, "RSA_2048")):
        problem = public_key_problem(record)
        assert problem is not None and record.kid in problem and shown in problem
        assert "\n" not in problem
    garbage = good.model_copy(update={"public_key": base64.b64encode(b"not a key").decode()})
    problem = public_key_problem(garbage)
    assert problem is not None and "p384-k" in problem and "does not parse" in problem
