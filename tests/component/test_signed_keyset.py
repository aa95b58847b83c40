"""Signed key sets end to end in memory: FakeKMS signs (as `keys publish --sign-with` does),
jwcrypto and joserfc verify, and producers pinned to the signer accept or refuse it, with
nothing sent when they refuse. Also the AWS rules FakeKMS keeps for Sign / GetPublicKey."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws as rfc_jws
from joserfc.jwk import ECKey
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

from sealq.envelope.b64 import b64url_decode, b64url_encode
from sealq.envelope.jwk import public_key_to_jwk
from sealq.errors import (
    BadSignatureError,
    JwksError,
    JwksRollbackError,
    SignedJwksExpiredError,
    UnsignedJwksError,
    UntrustedSignerError,
)
from sealq.keys.signing import Signer, SignerKeyError, next_version, sign_jwks, signer
from sealq.producer import AsyncProducer, Producer
from sealq.producer.signed import TYP
from sealq.testing import FakeKMS
from sealq.testing.sqs import MemoryQueue, MemorySQS

QUEUE = "https://sqs.us-east-1.amazonaws.com/000000000000/signed"


class RecordingSQS:
    """The boto3 SQS calls a Producer makes, recorded: a refusal must leave this empty."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kw: Any) -> dict[str, Any]:
        self.sent.append(kw)
        return {"MessageId": f"m-{len(self.sent)}"}


@pytest.fixture
def kms() -> FakeKMS:
    return FakeKMS()


def new_signer(kms: FakeKMS, alias: str) -> Signer:
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return signer(kms, alias)


def jwks(now: float) -> dict[str, Any]:
    enc = ec.generate_private_key(ec.SECP256R1()).public_key()
    key = public_key_to_jwk(
        enc, f"k-{time.monotonic_ns()}", not_before=int(now) - 10, expires_at=int(now) + 86400
    )
    return {"keys": [key]}


def publish(
    kms: FakeKMS, by: Signer, path: Path, *, version: int, now: float | None = None, valid_for_s: int = 3600
) -> str:
    at = time.time() if now is None else now
    document = sign_jwks(kms, by, jwks(at), now=int(at), valid_for_s=valid_for_s, version=version)
    path.write_text(document + "\n")
    return document


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_kms_signed_jwks_verifies_with_jwcrypto_and_joserfc(kms: FakeKMS, tmp_path: Path) -> None:
    by = new_signer(kms, "alias/sealq-signer")
    document = publish(kms, by, tmp_path / "jwks.jws", version=41)
    checked = jc_jws.JWS()
    checked.deserialize(document, key=jc_jwk.JWK.from_pem(by.pem().encode()), alg="ES256")
    assert checked.jose_header == {"alg": "ES256", "typ": TYP, "kid": by.thumbprint}
    assert by.thumbprint == jc_jwk.JWK.from_pem(by.pem().encode()).thumbprint()
    result = rfc_jws.deserialize_compact(document, ECKey.import_key(by.jwk()), algorithms=["ES256"])
    body = json.loads(result.payload)
    assert body["version"] == 41 and body["exp"] - body["iat"] == 3600 and body["keys"]
    assert kms.sign_calls == 1


def test_pinned_producer_accepts_and_refuses(kms: FakeKMS, tmp_path: Path) -> None:
    by, other = new_signer(kms, "alias/a"), new_signer(kms, "alias/b")
    pin = tmp_path / "signer.pem"
    pin.write_text(by.pem())
    good = tmp_path / "good.jws"
    publish(kms, by, good, version=10)
    sqs = RecordingSQS()
    Producer(QUEUE, good, sqs_client=sqs, verify_with=pin).send(b"hello")
    assert len(sqs.sent) == 1

    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps(jwks(time.time())))
    foreign = tmp_path / "foreign.jws"
    publish(kms, other, foreign, version=11)
    expired = tmp_path / "expired.jws"
    publish(kms, by, expired, version=12, now=time.time() - 7200)
    head, payload, signature = good.read_text().strip().split(".")
    tampered = tmp_path / "tampered.jws"
    tampered.write_text(f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}")
    older = tmp_path / "older.jws"
    publish(kms, by, older, version=9)
    cases = [
        (unsigned, UnsignedJwksError, "unsigned JWKS"),
        (foreign, UntrustedSignerError, "not pinned"),
        (expired, SignedJwksExpiredError, "expired at"),
        (tampered, BadSignatureError, "altered after signing"),
        (older, JwksRollbackError, "version 9, older than version 10"),
    ]
    for source, error, words in cases:
        refused = RecordingSQS()
        with pytest.raises(error) as caught:
            Producer(QUEUE, source, sqs_client=refused, verify_with=pin).send(b"never sent")
        assert words in one_line(caught), source.name
        assert refused.sent == [], source.name


def test_a_tampered_key_is_a_bad_signature(kms: FakeKMS, tmp_path: Path) -> None:
    by = new_signer(kms, "alias/t")
    head, payload, signature = publish(kms, by, tmp_path / "x", version=1).split(".")
    body = json.loads(b64url_decode(payload.encode()))
    body["keys"][0]["x"] = jwks(time.time())["keys"][0]["x"]  # the attacker's key
    forged = b64url_encode(json.dumps(body).encode()).decode()
    (tmp_path / "forged.jws").write_text(f"{head}.{forged}.{signature}")
    with pytest.raises(BadSignatureError, match="altered after signing"):
        Producer(QUEUE, tmp_path / "forged.jws", sqs_client=RecordingSQS(), verify_with=by.jwk())


def test_expiry_while_running_stops_sending(kms: FakeKMS, tmp_path: Path) -> None:
    by, now = new_signer(kms, "alias/e"), [time.time()]
    source = tmp_path / "jwks.jws"
    publish(kms, by, source, version=1, now=now[0], valid_for_s=60)
    sqs = RecordingSQS()
    producer = Producer(QUEUE, source, sqs_client=sqs, verify_with=by.pem(), clock=lambda: now[0])
    producer.send(b"inside the validity")
    now[0] += 61
    with pytest.raises(SignedJwksExpiredError, match="expired and no fresh one verified"):
        producer.send(b"after it")
    assert len(sqs.sent) == 1
    publish(kms, by, source, version=2, now=now[0])  # the operator re-signs
    now[0] += 5  # re-reads after expiry are at most one per 5 s
    producer.send(b"again")
    assert len(sqs.sent) == 2


def test_two_pins_carry_a_signer_rotation(kms: FakeKMS, tmp_path: Path) -> None:
    old, new = new_signer(kms, "alias/old"), new_signer(kms, "alias/new")
    source, now = tmp_path / "jwks.jws", [time.time()]
    publish(kms, old, source, version=100)
    sqs = RecordingSQS()
    producer = Producer(
        QUEUE, source, sqs_client=sqs, verify_with=[old.pem(), new.jwk()], clock=lambda: now[0]
    )
    first = producer.keys.current().kid
    publish(kms, new, source, version=101)
    now[0] += 301  # past refresh_s: the producer re-reads and verifies under the second pin
    producer.send(b"after the rotation")
    second = producer.keys.current().kid
    assert second != first and len(sqs.sent) == 1
    with pytest.raises(UntrustedSignerError):
        Producer(QUEUE, source, sqs_client=RecordingSQS(), verify_with=old.pem())
    publish(kms, old, source, version=99)  # an older document, still validly signed
    now[0] += 301
    producer.send(b"still the verified keys")  # the refresh is refused; the keys stay
    assert producer.keys.current().kid == second


async def test_async_producer_refuses_unsigned_and_sends_signed(kms: FakeKMS, tmp_path: Path) -> None:
    by, queue = new_signer(kms, "alias/async"), MemoryQueue(QUEUE)
    sqs = MemorySQS(queue)
    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps(jwks(time.time())))
    with pytest.raises(UnsignedJwksError):
        async with AsyncProducer(QUEUE, unsigned, sqs_client=sqs, verify_with=by.pem()) as refused:
            await refused.send(b"never")
    assert len(queue) == 0
    publish(kms, by, tmp_path / "signed.jws", version=1)
    async with AsyncProducer(QUEUE, tmp_path / "signed.jws", sqs_client=sqs, verify_with=by.pem()) as p:
        await p.send(b"sealed")
    assert len(queue) == 1


def test_version_is_monotonic_across_publishes(kms: FakeKMS, tmp_path: Path) -> None:
    by, other = new_signer(kms, "alias/v"), new_signer(kms, "alias/w")
    now_ms = 1_800_000_000_000
    assert next_version(None, by, now_ms) == now_ms
    ahead = publish(kms, by, tmp_path / "p", version=now_ms + 5000).encode()  # a clock that stepped back
    assert next_version(ahead, by, now_ms) == now_ms + 5001
    assert next_version(b"garbage", by, now_ms) == now_ms
    # A previous document not signed by this signer cannot push the count (nor be trusted).
    foreign = publish(kms, other, tmp_path / "q", version=2**60).encode()
    assert next_version(foreign, by, now_ms) == now_ms


def test_fake_kms_keeps_aws_sign_rules(kms: FakeKMS) -> None:
    by = new_signer(kms, "alias/rules")
    symmetric = kms.create_key()["KeyMetadata"]["KeyId"]

    def code(call: Any, **kw: Any) -> str:
        with pytest.raises(ClientError) as caught:
            call(**kw)
        return str(caught.value.response["Error"]["Code"])

    sign = {"SigningAlgorithm": "ECDSA_SHA_256"}
    assert code(kms.sign, KeyId=symmetric, Message=b"x", **sign) == "InvalidKeyUsageException"
    assert (
        code(kms.sign, KeyId=by.key_id, Message=b"x" * 4097, MessageType="RAW", **sign)
        == "ValidationException"
    )
    assert (
        code(kms.sign, KeyId=by.key_id, Message=b"x" * 31, MessageType="DIGEST", **sign)
        == "ValidationException"
    )
    alg = {"SigningAlgorithm": "RSASSA_PSS_SHA_256"}
    assert code(kms.sign, KeyId=by.key_id, Message=b"x", **alg) == "InvalidKeyUsageException"
    assert code(kms.get_public_key, KeyId=symmetric) == "UnsupportedOperationException"
    assert code(kms.get_public_key, KeyId="alias/none") == "NotFoundException"
    assert code(kms.create_key, KeySpec="ECC_NIST_P256") == "ValidationException"


def test_signer_refuses_a_key_that_cannot_sign_es256() -> None:
    class Rsa:
        def get_public_key(self, **kw: Any) -> dict[str, Any]:
            return {"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY", "PublicKey": b""}

    with pytest.raises(SignerKeyError, match="RSA_2048 key for SIGN_VERIFY; create one with"):
        signer(Rsa(), "alias/rsa")


def test_an_unpinned_producer_is_told_to_pin_a_signed_key_set(kms: FakeKMS, tmp_path: Path) -> None:
    by = new_signer(kms, "alias/unpinned")
    publish(kms, by, tmp_path / "jwks.jws", version=1)
    with pytest.raises(JwksError, match=r"signed .* pin its signer with verify_with") as caught:
        Producer(QUEUE, tmp_path / "jwks.jws", sqs_client=RecordingSQS())
    one_line(caught)


def test_signature_validity_without_a_signer_is_refused(
    kms: FakeKMS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sealq.cli.main import main
    from sealq.testing import record_for, write_keyset

    write_keyset(tmp_path / "keyset.json", record_for(kms, ec.generate_private_key(ec.SECP256R1()), "k-1"))
    argv = ["keys", "publish", "--keyset", str(tmp_path / "keyset.json"), "--out", str(tmp_path / "j")]
    assert main([*argv, "--signature-valid-for", "1d"]) == 1
    err = capsys.readouterr().err
    assert err == "sealq: error: --signature-valid-for applies only with --sign-with KMS_KEY\n"
    assert main(argv) == 0 and json.loads((tmp_path / "j").read_text())["keys"][0]["kid"] == "k-1"
