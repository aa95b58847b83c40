"""`sealq send` as a client would run it, against the local AWS stand-in: what lands on the
queue, with which attributes, and that the key holder can open every message."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sealq.aws.limits import SQS_MAX_MESSAGE_BYTES
from sealq.demo.standin import StandIn
from sealq.envelope.jwe import OpeningKey, open_token, parse
from sealq.producer.jwks import choose_key, parse_jwks

from .cli_helpers import cli_env, sealq, standin_client, unwrap_kid


@dataclass
class Client:
    env: dict[str, str]
    jwks: Path
    kid: str
    opening: OpeningKey
    home: Path


@pytest.fixture(scope="module")
def client(standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Client:
    """An operator made two keys (create, then rotate) and published them."""
    home = tmp_path_factory.mktemp("send-cli")
    env = cli_env(standin, home)
    kms = standin_client(standin, "kms")
    cmk = kms.create_key()["KeyMetadata"]["KeyId"]
    sealq(env, "keys", "create", "--cmk", cmk, "--expires-in", "1d")
    kid = sealq(env, "keys", "rotate").stdout.strip()
    jwks = home / "jwks.json"
    sealq(env, "keys", "publish", "--out", str(jwks))
    assert len(parse_jwks(jwks.read_bytes())) == 2
    return Client(env, jwks, kid, unwrap_kid(kms, home / "keyset.json", kid), home)


@pytest.fixture
def sqs(standin: StandIn) -> Any:
    return standin_client(standin, "sqs")


@pytest.fixture
def queue(sqs: Any) -> str:
    return str(sqs.create_queue(QueueName=f"sealq-send-{uuid.uuid4().hex[:10]}")["QueueUrl"])


def receive_all(sqs: Any, queue: str, expected: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    for _ in range(expected // 10 + 5):
        batch = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        got += batch
        if len(got) >= expected and not batch:
            break
    return got


def attrs(message: dict[str, Any]) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}


def test_send_stdin_lines(client: Client, sqs: Any, queue: str) -> None:
    lines = [f"line {i}: {'é' * i}" for i in range(25)]
    stdin = ("\n".join(lines[:12]) + "\n\n" + "\r\n".join(lines[12:]) + "\n").encode()
    proc = sealq(
        client.env,
        "send",
        "--queue-url",
        queue,
        "--jwks",
        str(client.jwks),
        "--client-id",
        "shop-42",
        "--json",
        stdin=stdin,
    )
    assert json.loads(proc.stdout) == {"sent": 25, "failed": []}
    assert proc.stderr == ""  # no progress noise when not on a terminal

    received = receive_all(sqs, queue, 25)
    assert len(received) == 25
    current = choose_key(parse_jwks(client.jwks.read_bytes()), time.time())
    assert current.kid == client.kid  # the rotated key, not the older one
    opened = []
    for message in received:
        assert attrs(message) == {"key-id": client.kid, "client-id": "shop-42"}
        assert parse(message["Body"]).kid == client.kid
        opened.append(open_token(message["Body"], client.opening).decode())
    assert sorted(opened) == sorted(lines)


def test_send_text_output_and_no_client_id(client: Client, sqs: Any, queue: str) -> None:
    proc = sealq(client.env, "send", "--queue-url", queue, "--jwks", str(client.jwks), stdin=b"a\nb\nc\n")
    assert proc.stdout.strip() == "sent 3 message(s)"
    received = receive_all(sqs, queue, 3)
    assert [attrs(m) for m in received] == [{"key-id": client.kid}] * 3
    assert sorted(open_token(m["Body"], client.opening) for m in received) == [b"a", b"b", b"c"]


def test_send_file(client: Client, sqs: Any, queue: str, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40 + b"\n\n trailing newlines are kept\n"
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    proc = sealq(
        client.env,
        "send",
        "--queue-url",
        queue,
        "--jwks",
        str(client.jwks),
        "--file",
        str(path),
        "--client-id",
        "batch-job",
        "--content-type",
        "application/octet-stream",
    )
    message_id = proc.stdout.strip()
    (received,) = receive_all(sqs, queue, 1)
    assert received["MessageId"] == message_id
    assert attrs(received) == {
        "key-id": client.kid,
        "client-id": "batch-job",
        "content-type": "application/octet-stream",
    }
    assert open_token(received["Body"], client.opening) == payload

    out = sealq(
        client.env,
        "send",
        "--queue-url",
        queue,
        "--jwks",
        str(client.jwks),
        "--file",
        str(path),
        "--json",
    ).stdout
    summary = json.loads(out)
    assert summary["sent"] == 1 and summary["failed"] == []
    (again,) = receive_all(sqs, queue, 1)
    assert again["MessageId"] == summary["message_id"]


def test_too_large_line_is_reported_by_line_number(client: Client, sqs: Any, queue: str) -> None:
    huge = b"x" * (SQS_MAX_MESSAGE_BYTES * 3 // 4)
    stdin = b"first\n" + huge + b"\nthird\n"
    proc = sealq(
        client.env,
        "send",
        "--queue-url",
        queue,
        "--jwks",
        str(client.jwks),
        "--json",
        stdin=stdin,
        check=False,
    )
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["sent"] == 2
    assert [(f["line"], f["code"]) for f in summary["failed"]] == [(2, "MessageTooLarge")]
    received = receive_all(sqs, queue, 2)
    assert sorted(open_token(m["Body"], client.opening) for m in received) == [b"first", b"third"]


@pytest.mark.parametrize("flag", ["--client-id", "--content-type"])
def test_empty_attribute_is_refused_before_sending(client: Client, sqs: Any, queue: str, flag: str) -> None:
    proc = sealq(
        client.env,
        "send",
        "--queue-url",
        queue,
        "--jwks",
        str(client.jwks),
        flag,
        "",
        stdin=b"a\nb\n",
        check=False,
    )
    assert proc.returncode == 1
    name = flag.removeprefix("--")
    assert proc.stderr.splitlines() == [
        f"sealq: error: {name} must not be empty: SQS rejects empty attribute values; "
        "leave it out or give a value"
    ]
    assert proc.stdout == ""  # no per-line failures: nothing reached SQS
    assert receive_all(sqs, queue, 0) == []
