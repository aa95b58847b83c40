"""Keys bound to their public key and alg (context 2): made by `create_key` through FakeKMS
(GenerateDataKeyPairWithoutPlaintext, then ReEncrypt), and refused by KMS Decrypt itself
when a keyset writer swaps the public key or alg or relabels the record as legacy.

Uses the worker rig of test_pool (MemorySQS, FakeKMS, a keyset file in tmp_path).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from sealq.envelope.jwe import seal_at
from sealq.envelope.jwk import Alg
from sealq.errors import Reason
from sealq.keys.context import BOUND, LEGACY
from sealq.keys.keyset import KeyRecord, KeySpec
from sealq.keys.kms import KeyBindingError, create_key, unwrap, verify_key
from sealq.testing.kms import FAKE_CMK_ARN, UNSUPPORTED, FakeKMS
from sealq.worker.classify import KeyEntry
from sealq.worker.keycache import KeyCache, KeyRefused
from tests.component.test_pool import (
    LIVE,
    Keys,
    Recorder,
    Rig,
    attrs,
    dlq_reason,
    keys,  # noqa: F401 - the fixture
    peek,
    running,
    sealing,
    until,
)

NOW = datetime.now(UTC)
SWAP_KEY, SWAP_ALG, RELABELLED = "ec-swap-key", "ec-swap-alg", "ec-relabelled"


def _spki_b64(private: object) -> str:
    der = private.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


class SyncDecrypt:
    """FakeKMS's Decrypt for the blocking `unwrap` / `keys verify` path."""

    def __init__(self, kms: FakeKMS) -> None:
        self.kms = kms

    def decrypt(self, **kw: object) -> dict[str, Any]:
        step = self.kms.decrypt(**kw)  # never suspends unless delay_s is set: run it to its end
        try:
            step.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        step.close()
        raise AssertionError("FakeKMS.decrypt suspended: clear delay_s")


def _create(kms: FakeKMS, warnings: list[str] | None = None) -> KeyRecord:
    sink = warnings if warnings is not None else []
    return create_key(
        kms,
        cmk=FAKE_CMK_ARN,
        spec=KeySpec.ECC_NIST_P256,
        lifetime=timedelta(days=1),
        now=NOW,
        warn=sink.append,
    )


async def test_create_key_binds_the_public_key_and_alg_through_reencrypt() -> None:
    kms = FakeKMS()
    warnings: list[str] = []
    record = _create(kms, warnings)
    assert record.context == BOUND and record.bound and not warnings
    blob = base64.b64decode(record.wrapped_private_key or "")
    # only the re-encrypted blob is kept, and KMS holds it under the extended context
    assert blob != b"blob-0" and kms.contexts[blob] == record.encryption_context()
    assert set(record.encryption_context()) == {
        "sealq:kid",
        "sealq:expires-at",
        "sealq:alg",
        "sealq:spki-sha256",
    }
    cache = KeyCache(kms)
    opened = await cache.get(KeyEntry(record, record.expires_at.timestamp(), False))
    assert opened.kid == record.kid and cache.kms_errors == {}


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param("public_key", id="swapped-public-key"),
        pytest.param("alg", id="swapped-alg-and-public-key"),
        pytest.param("relabel", id="relabelled-v1"),
    ],
)
async def test_kms_decrypt_itself_refuses_an_edited_bound_record(
    edit: str,
    keys: Keys,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    kms = FakeKMS()
    record = _create(kms)
    updates: dict[str, object] = {
        "public_key": {"public_key": _spki_b64(keys.ec2)},
        "alg": {"public_key": _spki_b64(keys.rsa), "alg": Alg.RSA_OAEP_256, "key_spec": KeySpec.RSA_2048},
        "relabel": {"context": LEGACY},
    }[edit]
    edited = record.model_copy(update=updates)
    cache = KeyCache(kms)
    caplog.set_level(logging.ERROR, logger="sealq.worker")
    with pytest.raises(KeyRefused, match="InvalidCiphertextException"):
        await cache.get(KeyEntry(edited, edited.expires_at.timestamp(), False))
    assert cache.kms_errors == {"InvalidCiphertextException": 1}  # KMS said no, not the local match check
    assert not any("does not match" in r.getMessage() for r in caplog.records)
    problem = verify_key(SyncDecrypt(kms), edited)
    assert problem is not None and "InvalidCiphertextException" in problem and "edited" in problem
    assert verify_key(SyncDecrypt(kms), record) is None


async def test_messages_under_an_edited_bound_record_are_dead_lettered_decrypt_failed(
    tmp_path: Path,
    keys: Keys,  # noqa: F811 - the fixture
) -> None:
    """The attack end to end: a keyset writer swaps in their own key; producers seal to it;
    the worker's one KMS call per kid is refused and every message is decrypt-failed."""
    r = Rig(tmp_path / "keyset.json")
    r.add(keys.ec, LIVE)
    for kid in (SWAP_KEY, SWAP_ALG, RELABELLED):
        r.add(keys.ec2, kid)
    r.records[SWAP_KEY] = r.records[SWAP_KEY].model_copy(update={"public_key": _spki_b64(keys.ec)})
    r.records[SWAP_ALG] = r.records[SWAP_ALG].model_copy(
        update={"public_key": _spki_b64(keys.rsa), "alg": Alg.RSA_OAEP_256, "key_spec": KeySpec.RSA_2048}
    )
    r.records[RELABELLED] = r.records[RELABELLED].model_copy(update={"context": LEGACY})
    r.save()
    sealed_to = {SWAP_KEY: keys.ec, SWAP_ALG: keys.rsa, RELABELLED: keys.ec2}  # what producers were given
    handler = Recorder()
    worker = r.worker(handler)
    async with running(worker):
        bad = [
            r.put(seal_at(f"{kid}-{i}".encode(), sealing(kid, private), time.time()), attrs(kid))
            for kid, private in sealed_to.items()
            for i in range(2)
        ]
        good = r.put(seal_at(b"ok", sealing(LIVE, keys.ec), time.time()), attrs(LIVE))
        await until(lambda: len(peek(r.dlq)) == len(bad) and good in handler.handled_ids(), what="settled")
    assert {dlq_reason(m) for m in peek(r.dlq)} == {Reason.DECRYPT_FAILED.value}
    assert len(handler.messages) == 1 and len(r.src) == 0
    assert worker.keys.kms_errors == {"InvalidCiphertextException": 3}  # one refusal per edited kid
    assert r.kms.calls == 4


def test_a_kms_without_reencrypt_gets_a_legacy_record_and_one_warning_line() -> None:
    kms = FakeKMS()
    kms.refusing["ReEncrypt"] = UNSUPPORTED
    warnings: list[str] = []
    record = _create(kms, warnings)
    assert record.context == LEGACY and not record.bound
    assert len(warnings) == 1 and "NOT bound" in warnings[0] and UNSUPPORTED in warnings[0]
    assert record.kid in warnings[0]
    assert unwrap(SyncDecrypt(kms), record).kid == record.kid  # legacy keys open as before
    assert "context" not in record.model_dump(mode="json")


@pytest.mark.parametrize("code", ["AccessDeniedException", "KMSInternalException", "NotFoundException"])
def test_any_other_reencrypt_error_writes_no_record(code: str) -> None:
    kms = FakeKMS()
    kms.refusing["ReEncrypt"] = code
    warnings: list[str] = []
    with pytest.raises(KeyBindingError, match=code) as caught:
        _create(kms, warnings)
    assert not warnings
    permissions = "kms:ReEncryptFrom and kms:ReEncryptTo" in str(caught.value)
    assert permissions is (code == "AccessDeniedException")


def test_fake_kms_reencrypt_keeps_aws_rules() -> None:
    """Source context and key must be the blob's; the new blob is bound to the destination
    context; the old blob stays valid; the plaintext is never in the answer."""
    from botocore.exceptions import ClientError

    kms = FakeKMS()
    src = {"sealq:kid": "k"}
    pair = kms.generate_data_key_pair_without_plaintext(
        KeyId=FAKE_CMK_ARN, KeyPairSpec="ECC_NIST_P256", EncryptionContext=src
    )
    blob = pair["PrivateKeyCiphertextBlob"]

    def code(**kw: object) -> str:
        with pytest.raises(ClientError) as caught:
            kms.re_encrypt(**{"CiphertextBlob": blob, "DestinationKeyId": FAKE_CMK_ARN, **kw})
        return str(caught.value.response["Error"]["Code"])

    assert code(SourceEncryptionContext={"sealq:kid": "other"}) == "InvalidCiphertextException"
    assert code() == "InvalidCiphertextException"  # the context is required as given at wrap time
    assert (
        code(SourceEncryptionContext=src, SourceKeyId="arn:aws:kms:us-east-1:0:key/x") == "NotFoundException"
    )
    assert code(SourceEncryptionContext=src, DestinationKeyId="alias/none") == "NotFoundException"
    dst = {"sealq:kid": "k", "sealq:alg": "a"}
    out = kms.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext=src,
        DestinationKeyId=FAKE_CMK_ARN,
        DestinationEncryptionContext=dst,
    )
    assert set(out) == {"CiphertextBlob", "SourceKeyId", "KeyId"}
    decrypt = SyncDecrypt(kms).decrypt
    assert decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=dst)["Plaintext"]
    assert decrypt(CiphertextBlob=blob, EncryptionContext=src)["Plaintext"]
    with pytest.raises(ClientError, match="InvalidCiphertextException"):
        decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=src)


@pytest.mark.parametrize("code", [UNSUPPORTED, "AccessDeniedException"])
def test_keys_create_warns_or_refuses_in_one_line(
    code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI around it: unsupported -> a kid on stdout, one warning line, a legacy record;
    denied -> one error line naming the permissions, and no keyset written."""
    from sealq.cli import keys as keys_cli
    from sealq.cli.main import main

    kms = FakeKMS()
    kms.refusing["ReEncrypt"] = code
    monkeypatch.setattr(keys_cli, "_kms", lambda: kms)
    monkeypatch.delenv("SEALQ_ALLOWED_CMK_ARNS", raising=False)
    keyset = tmp_path / "keyset.json"
    rc = main(["keys", "create", "--keyset", str(keyset), "--cmk", FAKE_CMK_ARN, "--expires-in", "30d"])
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    if code == UNSUPPORTED:
        assert rc == 0 and line.startswith("sealq: warning: ") and out.strip() in line
        (record,) = json.loads(keyset.read_text())["keys"]
        assert "context" not in record
    else:
        assert rc != 0 and not out and not keyset.exists()
        assert "kms:ReEncryptFrom and kms:ReEncryptTo" in line and FAKE_CMK_ARN in line
