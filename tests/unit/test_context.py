"""The KMS EncryptionContext by record version: known-answer vectors, and which record edits
change it (each such edit makes KMS Decrypt refuse the wrapped key)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sealq.envelope.jwk import Alg
from sealq.keys.context import BOUND, LEGACY, spki_sha256
from sealq.keys.keyset import KeyRecord, KeySpec
from tests.conftest import load_vectors, vector_params

VECTORS = load_vectors("encryption_context.json")
SPKI = VECTORS["spki_der_b64"]
OTHER_SPKI = base64.b64encode(base64.b64decode(SPKI)[:-1] + b"\x00").decode()  # parses or not: only hashed


def _record(kid: str, expires_at: str, alg: str, version: int | None) -> KeyRecord:
    fields: dict[str, Any] = {
        "kid": kid,
        "key_spec": KeySpec.ECC_NIST_P256 if alg.startswith("ECDH") else KeySpec.RSA_2048,
        "alg": alg,
        "cmk_arn": "arn:aws:kms:us-east-1:000000000000:key/test",
        "public_key": SPKI,
        "wrapped_private_key": base64.b64encode(b"blob").decode(),
        "created_at": "2027-01-01T00:00:00Z",
        "not_before": "2027-01-01T00:00:00Z",
        "expires_at": expires_at,
    }
    if version is not None:
        fields["context"] = version
    return KeyRecord.model_validate(fields)


def test_spki_hash_is_base64url_sha256_without_padding() -> None:
    der = base64.b64decode(SPKI)
    assert spki_sha256(der) == VECTORS["spki_sha256"]  # computed by openssl, not by sealq
    assert len(spki_sha256(der)) == 43 and "=" not in spki_sha256(b"")
    hashes = "".join(spki_sha256(bytes([i])) for i in range(64))
    assert "+" not in hashes and "/" not in hashes and {"-", "_"} <= set(hashes)  # the url alphabet


@pytest.mark.parametrize("case", vector_params("encryption_context.json"))
def test_context_of_each_version_matches_the_vector(case: dict[str, Any]) -> None:
    r = case["record"]
    record = _record(r["kid"], r["expires_at"], r["alg"], case["context_version"])
    assert record.encryption_context() == case["context"]
    assert record.bound is (case["context_version"] == BOUND)


def test_a_record_without_the_field_is_legacy_and_is_written_without_it() -> None:
    legacy = _record("k1", "2027-01-31T00:00:00Z", "ECDH-ES+A256KW", None)
    assert legacy.context == LEGACY and not legacy.bound
    assert "context" not in json.loads(legacy.model_dump_json())  # older workers still read it
    bound = legacy.model_copy(update={"context": BOUND})
    assert json.loads(bound.model_dump_json())["context"] == BOUND
    assert KeyRecord.model_validate_json(bound.model_dump_json()) == bound


def test_an_unknown_context_version_is_refused() -> None:
    with pytest.raises(ValueError, match="context"):
        _record("k1", "2027-01-31T00:00:00Z", "ECDH-ES+A256KW", 3)


def test_every_bound_field_changes_the_v2_context_but_only_kid_and_expiry_change_v1() -> None:
    """What KMS binds: an edit that leaves the context as it was would still unwrap."""
    for version, binds_key in ((BOUND, True), (LEGACY, False)):
        record = _record("k1", "2027-01-31T00:00:00Z", "ECDH-ES+A256KW", version)
        base = record.encryption_context()
        later = datetime(2027, 1, 31, tzinfo=UTC) + timedelta(days=1)
        assert record.model_copy(update={"kid": "k2"}).encryption_context() != base
        assert record.model_copy(update={"expires_at": later}).encryption_context() != base
        swapped_key = record.model_copy(update={"public_key": OTHER_SPKI}).encryption_context()
        swapped_alg = record.model_copy(
            update={"alg": Alg.RSA_OAEP_256, "key_spec": KeySpec.RSA_2048}
        ).encryption_context()
        assert (swapped_key != base) is binds_key and (swapped_alg != base) is binds_key
    # relabelling a v2 record as v1 asks KMS for another context: Decrypt refuses it too
    bound = _record("k1", "2027-01-31T00:00:00Z", "ECDH-ES+A256KW", BOUND)
    assert bound.model_copy(update={"context": LEGACY}).encryption_context() != bound.encryption_context()


def test_keys_list_shows_each_keys_binding() -> None:
    from sealq.cli.keys_render import list_lines, record_view
    from sealq.keys.keyset import Keyset

    legacy = _record("p256-20270101-00000001", "2027-01-31T00:00:00Z", "ECDH-ES+A256KW", None)
    bound = _record("p256-20270101-00000002", "2027-01-31T00:00:00Z", "ECDH-ES+A256KW", BOUND)
    now = datetime(2027, 1, 2, tzinfo=UTC)
    assert [record_view(r, now)["binding"] for r in (legacy, bound)] == ["unbound", "bound"]
    header, *rows = list_lines(Keyset(keys=[legacy, bound]), now)
    assert "BINDING" in header
    assert [row.split()[0] for row in rows] == [legacy.kid, bound.kid]
    assert " unbound " in rows[0] and " bound " in rows[1]
