"""The stand-in itself (each backend): reachable, KMS key pairs and SQS behave as sealq needs."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.demo.standin import StandIn, StandInError
from sealq.demo.standin_localstack import open_standin

if TYPE_CHECKING:  # stubs are a dev extra, not needed to run the tests
    from mypy_boto3_kms.literals import DataKeyPairSpecType

CONTEXT = {"sealq:purpose": "worker-key", "sealq:kid": "k-test"}


def _get(endpoint_port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", endpoint_port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_health_reachable(standin: StandIn) -> None:
    assert standin.endpoint_url == f"http://127.0.0.1:{standin.port}"
    status, body = _get(standin.port, standin.health_path)
    assert status == 200
    services = json.loads(body)["services"]
    for name in ("sqs", "kms", "s3"):
        assert services[name] in ("available", "running")
    assert standin.pid is not None and _pid_alive(standin.pid)


def test_env_points_at_standin(standin: StandIn) -> None:
    env = standin.env()
    assert env["AWS_ENDPOINT_URL"] == standin.endpoint_url
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]


def test_ensure_installed_is_idempotent(standin: StandIn) -> None:
    started = time.perf_counter()
    exe = standin.install()
    assert exe.is_file()
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "RSA_4096"])
def test_kms_data_key_pair_round_trip(aws_env: str, spec: DataKeyPairSpecType) -> None:
    kms = boto3.client("kms")
    assert kms.meta.endpoint_url == aws_env
    key_id = kms.create_key(Description="sealq test")["KeyMetadata"]["KeyId"]

    pair = kms.generate_data_key_pair_without_plaintext(
        KeyId=key_id, KeyPairSpec=spec, EncryptionContext=CONTEXT
    )
    assert "PrivateKeyPlaintext" not in pair
    public = serialization.load_der_public_key(pair["PublicKey"])

    plain = kms.decrypt(
        CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=CONTEXT, KeyId=key_id
    )["Plaintext"]
    private = serialization.load_der_private_key(plain, password=None)
    # DER PKCS#8, exactly as real KMS returns it.
    assert plain == private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if spec == "ECC_NIST_P256":
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert public.curve.name == "secp256r1"
        assert private.public_key().public_numbers() == public.public_numbers()
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        assert isinstance(private, rsa.RSAPrivateKey)
        assert public.key_size == 4096
        assert private.public_key().public_numbers() == public.public_numbers()


def test_kms_decrypt_rejects_other_context(aws_env: str) -> None:
    kms = boto3.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.generate_data_key_pair_without_plaintext(
        KeyId=key_id, KeyPairSpec="ECC_NIST_P256", EncryptionContext=CONTEXT
    )["PrivateKeyCiphertextBlob"]

    for other in ({**CONTEXT, "sealq:kid": "k-other"}, {}, {**CONTEXT, "extra": "x"}):
        with pytest.raises(ClientError) as caught:
            kms.decrypt(CiphertextBlob=blob, EncryptionContext=other)
        assert caught.value.response["Error"]["Code"] == "InvalidCiphertextException"


def test_kms_disabled_key_refuses_decrypt(aws_env: str) -> None:
    kms = boto3.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.generate_data_key_pair_without_plaintext(
        KeyId=key_id, KeyPairSpec="ECC_NIST_P256", EncryptionContext=CONTEXT
    )["PrivateKeyCiphertextBlob"]
    kms.disable_key(KeyId=key_id)
    with pytest.raises(ClientError) as caught:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
    assert caught.value.response["Error"]["Code"] == "DisabledException"

    kms.enable_key(KeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    with pytest.raises(ClientError) as caught:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
    assert caught.value.response["Error"]["Code"] == "KMSInvalidStateException"


def test_sqs_round_trip(aws_env: str) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"sealq-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    assert url.startswith(aws_env)
    sqs.send_message(
        QueueUrl=url,
        MessageBody="sealed-body",
        MessageAttributes={"sealq-kid": {"DataType": "String", "StringValue": "k-test"}},
    )
    got = sqs.receive_message(
        QueueUrl=url,
        WaitTimeSeconds=1,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )["Messages"]
    assert [m["Body"] for m in got] == ["sealed-body"]
    assert got[0]["MessageAttributes"]["sealq-kid"]["StringValue"] == "k-test"
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)


async def test_aiobotocore_sqs_and_kms(aws_env: str) -> None:
    session = get_session()
    async with (
        session.create_client("kms") as kms,
        session.create_client("sqs") as sqs,
    ):
        key_id = (await kms.create_key())["KeyMetadata"]["KeyId"]
        pair = await kms.generate_data_key_pair_without_plaintext(
            KeyId=key_id, KeyPairSpec="ECC_NIST_P256", EncryptionContext=CONTEXT
        )
        plain = await kms.decrypt(
            CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=CONTEXT
        )
        assert serialization.load_der_private_key(plain["Plaintext"], password=None)

        url = (await sqs.create_queue(QueueName=f"sealq-aio-{uuid.uuid4().hex[:12]}"))["QueueUrl"]
        await sqs.send_message(QueueUrl=url, MessageBody="async")
        got = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
        assert [m["Body"] for m in got["Messages"]] == ["async"]


def test_reset_and_stop_leave_nothing_behind(standin: StandIn) -> None:
    # A private instance, so resetting and stopping cannot disturb the shared one.
    with open_standin(standin.backend, standin.home) as own:
        pid = own.pid
        assert pid is not None and pid != standin.pid
        sqs = boto3.client(
            "sqs",
            endpoint_url=own.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        sqs.create_queue(QueueName="to-be-reset")
        own.reset()
        assert sqs.list_queues().get("QueueUrls", []) == []
        port = own.port
    assert own.pid is None
    assert not _pid_alive(pid)
    with pytest.raises(OSError):
        _get(port, own.health_path)
    own.stop()  # idempotent
    with pytest.raises(StandInError):
        _ = own.endpoint_url


def _listening_addresses(pgid: int) -> set[str]:
    """Local addresses of every TCP socket listening in the stand-in's process group (Linux /proc)."""
    inodes: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:  # gone meanwhile, or not ours to read
            continue
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                found.add(fields[1].rsplit(":", 1)[0])
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_listens_on_loopback_only(standin: StandIn) -> None:
    assert standin.pid is not None
    # /proc/net/tcp writes 127.0.0.1 as 0100007F.
    assert _listening_addresses(standin.pid) == {"0100007F"}


@pytest.mark.parametrize("ci", ["", "true"], ids=["local", "ci"])
def test_without_python313_localstack_skips_locally_and_fails_in_ci(tmp_path: Path, ci: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SEALQ_LOCALSTACK_PYTHON", "CI")}
    env.update(PATH=str(tmp_path), PYENV_ROOT=str(tmp_path / "no-pyenv"), HOME=str(tmp_path), CI=ci)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q",
         f"{Path(__file__).name}::test_health_reachable[localstack]"],
        cwd=Path(__file__).parent, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    hint = "LocalStack needs Python 3.13 (none found)"
    assert hint in proc.stdout and "SEALQ_LOCALSTACK_PYTHON" in proc.stdout, proc.stdout[-2000:]
    if ci:
        assert proc.returncode != 0 and "1 error" in proc.stdout, proc.stdout[-2000:]
    else:
        assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout[-2000:]
