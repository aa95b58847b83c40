"""Signed key sets against both stand-ins: `keys publish --sign-with` and `keys signer-pem`
through the stand-in's KMS (Sign, GetPublicKey on an ECC_NIST_P256 SIGN_VERIFY key), checked
with jwcrypto and joserfc, then `sealq send --verify-with` accepting it and refusing what it
must (one-line error, the queue left empty). The CLI runs in process (`main`) to keep it quick;
tests/integration/test_keys_cli.py covers the subprocess behaviour of the keys commands."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from joserfc import jws as rfc_jws
from joserfc.jwk import ECKey
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

from sealq.cli.main import main
from sealq.demo.standin import StandIn
from sealq.producer.signed import TYP

from .cli_helpers import standin_client


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def signing_key(kms: Any, name: str) -> str:
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    alias = f"alias/sealq-{name}-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    return alias


def queue_is_empty(sqs: Any, url: str) -> bool:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    count = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return not got and count["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_signed_publish_verifies_and_pins(
    standin: StandIn, aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kms, sqs = standin_client(standin, "kms"), standin_client(standin, "sqs")
    keyset, out, pem, jwk = (
        str(tmp_path / n) for n in ("keyset.json", "jwks.jws", "signer.pem", "signer.jwk")
    )
    cmk = kms.create_key()["KeyMetadata"]["KeyId"]
    signer, stranger = signing_key(kms, "signer"), signing_key(kms, "stranger")
    assert run(capsys, "keys", "create", "--keyset", keyset, "--cmk", cmk, "--expires-in", "1d")[0] == 0
    publish = ("keys", "publish", "--keyset", keyset, "--out", out, "--sign-with", signer)
    code, _, err = run(capsys, *publish, "--signature-valid-for", "1h")
    assert code == 0 and "signed by" in err, err
    first = Path(out).read_text().strip()
    assert run(capsys, "keys", "signer-pem", "--sign-with", signer, "--out", pem)[0] == 0
    code, _, err = run(capsys, "keys", "signer-pem", "--sign-with", signer, "--format", "jwk", "--out", jwk)
    assert code == 0
    thumb = jc_jwk.JWK.from_pem(Path(pem).read_bytes()).thumbprint()
    assert json.loads(Path(jwk).read_text())["kid"] == thumb and thumb in err

    checked = jc_jws.JWS()
    checked.deserialize(first, key=jc_jwk.JWK.from_pem(Path(pem).read_bytes()), alg="ES256")
    assert checked.jose_header == {"alg": "ES256", "typ": TYP, "kid": thumb}
    body = json.loads(checked.payload)
    assert body["exp"] - body["iat"] == 3600 and len(body["keys"]) == 1
    by_rfc = rfc_jws.deserialize_compact(
        first, ECKey.import_key(json.loads(Path(jwk).read_text())), algorithms=["ES256"]
    )
    assert json.loads(by_rfc.payload) == body

    assert run(capsys, *publish)[0] == 0  # publishing again moves the version on
    second = json.loads(rfc_jws.extract_compact(Path(out).read_text().strip().encode()).payload)
    assert second["version"] > body["version"] and second["exp"] - second["iat"] == 7 * 86400

    url = sqs.create_queue(QueueName=f"sealq-signed-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    message = tmp_path / "message.txt"
    message.write_text("sealed to a key the signer vouched for")
    send = ("send", "--queue-url", url, "--file", str(message))
    assert run(capsys, *send, "--jwks", out, "--verify-with", jwk)[0] == 0
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])

    unsigned, foreign = tmp_path / "unsigned.json", tmp_path / "foreign.jws"
    assert run(capsys, "keys", "publish", "--keyset", keyset, "--out", str(unsigned))[0] == 0
    assert (
        run(capsys, "keys", "publish", "--keyset", keyset, "--out", str(foreign), "--sign-with", stranger)[0]
        == 0
    )
    for source, why in ((unsigned, "unsigned JWKS"), (foreign, "not pinned")):
        code, _, err = run(capsys, *send, "--jwks", str(source), "--verify-with", pem)
        assert code == 1 and err.count("\n") == 1 and why in err and err.startswith("sealq: error: "), err
    assert queue_is_empty(sqs, url)  # nothing was sealed or sent for a refused key set
    # Two pins: the stranger's document is accepted once its key is pinned too (rotation).
    stranger_pem = tmp_path / "stranger.pem"
    assert run(capsys, "keys", "signer-pem", "--sign-with", stranger, "--out", str(stranger_pem))[0] == 0
    assert (
        run(capsys, *send, "--jwks", str(foreign), "--verify-with", pem, "--verify-with", str(stranger_pem))[
            0
        ]
        == 0
    )
    assert len(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])) == 1


def test_publish_refuses_a_key_that_cannot_sign(
    standin: StandIn, aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kms = standin_client(standin, "kms")
    cmk = kms.create_key()["KeyMetadata"]["KeyId"]
    code, _, err = run(capsys, "keys", "signer-pem", "--sign-with", cmk)
    assert code == 1 and err.count("\n") == 1 and "--sign-with" in err, err


def test_kms_sign_follows_aws_rules(standin: StandIn) -> None:
    """What the signing path relies on: DIGEST of SHA-256 size, DER ECDSA that verifies."""
    kms = standin_client(standin, "kms")
    alias = signing_key(kms, "rules")
    digest = hashlib.sha256(b"header.payload").digest()
    sign = {"KeyId": alias, "SigningAlgorithm": "ECDSA_SHA_256"}
    der = kms.sign(Message=digest, MessageType="DIGEST", **sign)["Signature"]
    assert der[0] == 0x30  # DER SEQUENCE, not JWS's raw r || s
    with pytest.raises(ClientError) as caught:
        kms.sign(Message=digest[:31], MessageType="DIGEST", **sign)
    assert caught.value.response["Error"]["Code"] == "ValidationException"


# Where a stand-in answers differently from the KMS API reference (docs win; FakeKMS keeps
# the documented rule, tests/component/test_signed_keyset.py).
_WRONG_USAGE = {
    "ministack": "ministack 1.5.33 answers UnsupportedOperationException; AWS documents "
    "InvalidKeyUsageException for Sign with a key whose KeyUsage is not SIGN_VERIFY",
}
_RAW_LIMIT = {
    "ministack": "ministack 1.5.33 signs a RAW message over 4096 bytes; AWS caps Message at 4096",
    "localstack": "LocalStack 4.14.0 signs a RAW message over 4096 bytes; AWS caps Message at 4096",
}


@pytest.mark.parametrize("rule", ["wrong-usage", "raw-limit"])
def test_kms_sign_refuses_what_aws_refuses(standin: StandIn, backend: str, rule: str) -> None:
    faulty = (_WRONG_USAGE if rule == "wrong-usage" else _RAW_LIMIT).get(backend)
    if faulty:
        pytest.skip(faulty)
    kms = standin_client(standin, "kms")
    if rule == "wrong-usage":
        key, message, expected = kms.create_key()["KeyMetadata"]["KeyId"], b"x", "InvalidKeyUsageException"
    else:
        key, message, expected = signing_key(kms, "raw"), b"x" * 4097, "ValidationException"
    with pytest.raises(ClientError) as caught:
        kms.sign(KeyId=key, Message=message, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
    assert caught.value.response["Error"]["Code"] == expected
