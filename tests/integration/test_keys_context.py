"""The EncryptionContext of a new key binds its public key and alg (context 2, made with KMS
ReEncrypt), checked against real KMS crypto on LocalStack; ministack, which has no ReEncrypt,
gets the documented fallback (a legacy record and a warning). Legacy records open on both.
(Hardening issue, bug 5; the context itself: sealq.keys.context.)"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.demo.standin import StandIn
from sealq.envelope.jwk import Alg
from sealq.keys.context import LEGACY, legacy_context
from sealq.keys.keyset import KeyRecord, KeySpec
from sealq.keys.kms import create_key, decrypt_request, unwrap
from sealq.keys.store import parse_keyset

from .cli_helpers import cli_env, sealq, standin_client

NOW = datetime.now(UTC)


def _spki_b64(public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _refused(kms: Any, record: KeyRecord) -> str:
    with pytest.raises(ClientError) as caught:
        kms.decrypt(**decrypt_request(record))
    return str(caught.value.response["Error"]["Code"])


def _cmk(kms: Any) -> str:
    return str(kms.create_key(Description="sealq context test")["KeyMetadata"]["Arn"])


def test_a_new_key_is_bound_and_kms_refuses_a_record_edited_to_another_key_or_alg(
    standin: StandIn, backend: str
) -> None:
    if backend == "ministack":
        pytest.skip(
            "ministack 1.5.33 has no KMS ReEncrypt (InvalidAction), which AWS always has; "
            "its fallback is test_a_kms_without_reencrypt_gets_an_unbound_key_and_says_so"
        )
    kms = standin_client(standin, "kms")
    warnings: list[str] = []
    record = create_key(
        kms,
        cmk=_cmk(kms),
        spec=KeySpec.ECC_NIST_P256,
        lifetime=timedelta(days=1),
        now=NOW,
        warn=warnings.append,
    )
    assert record.bound and not warnings
    stored = parse_keyset(json.dumps({"keys": [json.loads(record.model_dump_json())]}).encode()).get(
        record.kid
    )
    assert stored.context == 2 and unwrap(kms, stored).kid == record.kid  # a saved v2 record opens
    edits: dict[str, dict[str, Any]] = {
        "public key": {"public_key": _spki_b64(ec.generate_private_key(ec.SECP256R1()).public_key())},
        "alg": {
            "alg": Alg.RSA_OAEP_256,
            "key_spec": KeySpec.RSA_2048,
            "public_key": _spki_b64(rsa.generate_private_key(65537, 2048).public_key()),
        },
        "relabelled v1": {"context": LEGACY},
    }
    refusals = {what: _refused(kms, record.model_copy(update=update)) for what, update in edits.items()}
    assert refusals == dict.fromkeys(edits, "InvalidCiphertextException")


@pytest.mark.backends("ministack")
def test_a_kms_without_reencrypt_gets_an_unbound_key_and_says_so(standin: StandIn, tmp_path: Path) -> None:
    """ministack answers ReEncrypt `InvalidAction` ("Unknown action"): `keys create` still
    writes a (legacy) record, with one warning line; list and verify show it unbound."""
    kms = standin_client(standin, "kms")
    env = cli_env(standin, tmp_path, SEALQ_ALLOWED_CMK_ARNS=None)
    made = sealq(env, "keys", "create", "--cmk", _cmk(kms), "--expires-in", "30d")
    kid = made.stdout.strip()
    (warning,) = made.stderr.strip().splitlines()
    assert warning.startswith("sealq: warning: ") and kid in warning
    assert "NOT bound" in warning and "InvalidAction" in warning
    (record,) = json.loads((tmp_path / "keyset.json").read_text())["keys"]
    assert "context" not in record  # version 1, as before this change
    listed = sealq(env, "keys", "list", "--json")
    assert [k["binding"] for k in json.loads(listed.stdout)["keys"]] == ["unbound"]
    verified = sealq(env, "keys", "verify")  # exit 0: unbound is a warning, not a failure
    assert verified.stdout.splitlines() == [f"{kid}: ok: the private key matches its public key"]
    (note,) = verified.stderr.strip().splitlines()
    assert note.startswith("sealq: warning: ") and kid in note and "unbound" in note


def test_a_legacy_record_still_opens(standin: StandIn) -> None:
    """A key made before the binding: wrapped under kid and expiry, its record has no
    `context` field. It opens exactly as before, and it is reported unbound."""
    kms = standin_client(standin, "kms")
    cmk = _cmk(kms)
    kid, expires_at = "p256-20270101-1e9ac1d0", NOW.replace(microsecond=0) + timedelta(days=1)
    pair = kms.generate_data_key_pair_without_plaintext(
        KeyId=cmk, KeyPairSpec="ECC_NIST_P256", EncryptionContext=legacy_context(kid, expires_at)
    )
    document = {
        "format": "sealq-keyset/1",
        "keys": [
            {
                "kid": kid,
                "key_spec": "ECC_NIST_P256",
                "alg": "ECDH-ES+A256KW",
                "cmk_arn": pair["KeyId"],
                "public_key": base64.b64encode(pair["PublicKey"]).decode(),
                "wrapped_private_key": base64.b64encode(pair["PrivateKeyCiphertextBlob"]).decode(),
                "created_at": NOW.isoformat(),
                "not_before": NOW.isoformat(),
                "expires_at": expires_at.isoformat(),
                "state": "active",
            }
        ],
    }
    record = parse_keyset(json.dumps(document).encode()).get(kid)
    assert not record.bound
    assert unwrap(kms, record).kid == kid
    assert "context" not in json.loads(record.model_dump_json())  # re-saved unchanged
