"""`sealq dlq` against the local AWS stand-in, on a DLQ filled the way workers fill one (plus
one message SQS's own redrive would have moved there, without `sealq-reason`): counts are
exact, bodies never show, and every command leaves alone what it did not select."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sealq.demo.standin import StandIn

from .cli_helpers import cli_env, sealq, standin_client

SECRET = "BODY-MUST-NOT-SHOW"


@dataclass(frozen=True)
class Dead:
    reason: str | None
    kid: str | None
    client_id: str | None


# 3 handler-error, 3 key-expired (two clients), 1 malformed, 1 unlabelled.
MIX = [
    Dead("handler-error", "kid-new", "shop"),
    Dead("handler-error", "kid-new", "shop"),
    Dead("handler-error", "kid-new", "billing"),
    Dead("key-expired", "kid-old", "shop"),
    Dead("key-expired", "kid-old", "shop"),
    Dead("key-expired", "kid-old", "legacy"),
    Dead("malformed", None, "fuzzer"),
    Dead(None, "kid-new", "billing"),
]


@dataclass
class Queues:
    sqs: Any
    source: str
    dlq: str
    bodies: dict[str, Dead]


@pytest.fixture(scope="module")
def env(standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return cli_env(standin, tmp_path_factory.mktemp("dlq-cli"))


@pytest.fixture(scope="module")
def sqs(standin: StandIn) -> Any:
    return standin_client(standin, "sqs")


def _attrs(dead: Dead) -> dict[str, dict[str, str]]:
    values = {
        "sealq-reason": dead.reason,
        "key-id": dead.kid,
        "client-id": dead.client_id,
        "content-type": "application/json",
        "sealq-format": "jwe",
    }
    if dead.reason:
        values["sealq-detail"] = "short detail"
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items() if v}


@pytest.fixture
def queues(sqs: Any) -> Queues:
    name = f"sealq-dlq-{uuid.uuid4().hex[:10]}"
    source = str(sqs.create_queue(QueueName=name)["QueueUrl"])
    dlq = str(sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"])
    bodies: dict[str, Dead] = {}
    for i, dead in enumerate(MIX):
        body = f"eyJhbGciOiJFQ0RILUVTIn0.{SECRET}-{i}.sealed"
        sqs.send_message(QueueUrl=dlq, MessageBody=body, MessageAttributes=_attrs(dead))
        bodies[body] = dead
    return Queues(sqs, source, dlq, bodies)


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every visible message of a test-only queue (hidden afterwards, which is fine here)."""
    got: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=60,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    ).get("Messages", []):
        got += batch
    return got


def reasons(messages: list[dict[str, Any]]) -> Counter[str | None]:
    return Counter(
        m.get("MessageAttributes", {}).get("sealq-reason", {}).get("StringValue") for m in messages
    )


def counts(sqs: Any, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def assert_untouched(q: Queues) -> None:
    """Every message is still in the DLQ, visible, and nobody received it before."""
    assert counts(q.sqs, q.dlq) == (len(MIX), 0)
    messages = drain(q.sqs, q.dlq)
    assert len(messages) == len(MIX)
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in messages} == {"1"}
    assert drain(q.sqs, q.source) == []


def one_line_error(proc: Any) -> str:
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sealq")
    return str(lines[0])


def test_stats_counts_exactly_and_keeps_every_message(env: dict[str, str], queues: Queues) -> None:
    out = json.loads(sealq(env, "dlq", "stats", "--dlq-url", queues.dlq).stdout)  # not a TTY: JSON
    assert out["total"] == len(MIX)
    assert out["by_reason"] == {
        "handler-error": 3,
        "key-expired": 3,
        "malformed": 1,
        "unlabelled": 1,
    }
    groups = {(g["reason"], g["kid"], g["client_id"]): g["count"] for g in out["groups"]}
    assert groups == {
        ("handler-error", "kid-new", "shop"): 2,
        ("handler-error", "kid-new", "billing"): 1,
        ("key-expired", "kid-old", "shop"): 2,
        ("key-expired", "kid-old", "legacy"): 1,
        ("malformed", None, "fuzzer"): 1,
        ("unlabelled", "kid-new", "billing"): 1,
    }
    assert 0 <= out["newest_age_s"] <= out["oldest_age_s"] < 120
    assert out["truncated"] is False
    assert SECRET not in json.dumps(out)
    # Visible again at once, each exactly once: the scan hid nothing for longer than itself.
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)
    assert len({m["MessageId"] for m in drain(queues.sqs, queues.dlq)}) == len(MIX)


def test_stats_max_messages_caps_the_scan(env: dict[str, str], queues: Queues) -> None:
    out = json.loads(
        sealq(env, "dlq", "stats", "--json", "--max-messages", "5", "--dlq-url", queues.dlq).stdout
    )
    assert (out["total"], out["truncated"]) == (5, True)
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)


def test_peek_shows_attributes_never_bodies(env: dict[str, str], queues: Queues) -> None:
    proc = sealq(env, "dlq", "peek", "-n", "3", "--json", "--dlq-url", queues.dlq)
    assert SECRET not in proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["count"] == 3
    for message in out["messages"]:
        assert message["size"] > message["body_size"] > 0
        assert message["attributes"]["key-id"] == message["kid"]
        assert "Body" not in message and "body" not in message
    assert counts(queues.sqs, queues.dlq) == (len(MIX), 0)


def test_redrive_moves_only_the_selected_reason(env: dict[str, str], queues: Queues) -> None:
    dry = sealq(env, "dlq", "redrive", "--json", "--dry-run", "--reason", "handler-error",
                "--dlq-url", queues.dlq, "--queue-url", queues.source)  # fmt: skip
    assert json.loads(dry.stdout)["matched"] == 3
    assert counts(queues.sqs, queues.source) == (0, 0)

    proc = sealq(env, "dlq", "redrive", "--json", "--reason", "handler-error",
                 "--dlq-url", queues.dlq, "--queue-url", queues.source)  # fmt: skip
    assert json.loads(proc.stdout)["redriven"] == 3
    moved = drain(queues.sqs, queues.source)
    assert len(moved) == 3
    for m in moved:
        dead = queues.bodies[m["Body"]]  # the original body, byte for byte
        assert dead.reason == "handler-error"
        attrs = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
        assert attrs == {
            "key-id": dead.kid,
            "client-id": dead.client_id,
            "content-type": "application/json",
            "sealq-format": "jwe",
        }
    assert reasons(drain(queues.sqs, queues.dlq)) == {"key-expired": 3, "malformed": 1, None: 1}


def test_redrive_everything_falls_back_without_move_task(
    env: dict[str, str], queues: Queues, backend: str
) -> None:
    proc = sealq(env, "dlq", "redrive", "--dlq-url", queues.dlq, "--queue-url", queues.source)
    if backend == "ministack":  # no StartMessageMoveTask at all
        assert "StartMessageMoveTask is not available here" in proc.stdout
    else:  # LocalStack, as AWS: no queue's RedrivePolicy names this DLQ, so SQS will not move it
        assert f"no queue names {queues.dlq} as its dead-letter queue" in proc.stdout
        assert f"give {queues.source} a RedrivePolicy" in proc.stdout
        assert "not available" not in proc.stdout
    assert "moving messages one by one" in proc.stdout
    assert f"redriven {len(MIX)} message(s)" in proc.stdout
    assert len(drain(queues.sqs, queues.source)) == len(MIX)
    assert counts(queues.sqs, queues.dlq) == (0, 0)


@pytest.mark.backends("localstack")  # ministack has no StartMessageMoveTask
def test_redrive_everything_starts_a_move_task(env: dict[str, str], queues: Queues) -> None:
    """SQS moves the messages server-side, into a source whose redrive policy names the DLQ."""
    attrs = queues.sqs.get_queue_attributes(QueueUrl=queues.dlq, AttributeNames=["QueueArn"])
    policy = {"deadLetterTargetArn": attrs["Attributes"]["QueueArn"], "maxReceiveCount": "5"}
    queues.sqs.set_queue_attributes(QueueUrl=queues.source, Attributes={"RedrivePolicy": json.dumps(policy)})
    proc = sealq(env, "dlq", "redrive", "--dlq-url", queues.dlq, "--queue-url", queues.source)
    assert f"started an SQS message move task for about {len(MIX)} message(s)" in proc.stdout
    assert "not available" not in proc.stdout
    moved: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(moved) < len(MIX) and time.monotonic() < deadline:
        moved += drain(queues.sqs, queues.source)
        time.sleep(0.2)
    assert sorted(m["Body"] for m in moved) == sorted(queues.bodies)
    assert counts(queues.sqs, queues.dlq) == (0, 0)


def test_purge_removes_only_the_selection(env: dict[str, str], queues: Queues) -> None:
    young = sealq(env, "dlq", "purge", "--json", "--yes", "--reason", "key-expired",
                  "--older-than", "7d", "--dlq-url", queues.dlq)  # fmt: skip
    assert json.loads(young.stdout)["purged"] == 0  # all of them are seconds old
    proc = sealq(env, "dlq", "purge", "--reason", "key-expired", "--yes", "--dlq-url", queues.dlq)
    assert "purged 3 message(s)" in proc.stdout
    assert reasons(drain(queues.sqs, queues.dlq)) == {"handler-error": 3, "malformed": 1, None: 1}


def test_purge_refuses_without_yes_off_a_terminal(env: dict[str, str], queues: Queues) -> None:
    proc = sealq(env, "dlq", "purge", "--reason", "key-expired", "--dlq-url", queues.dlq,
                 stdin=b"y\n", check=False)  # fmt: skip
    assert "--yes" in one_line_error(proc)
    assert_untouched(queues)


def test_watch_once_exits_3_naming_clients_and_kids(env: dict[str, str], queues: Queues) -> None:
    proc = sealq(env, "dlq", "watch", "--once", "--max", "key-expired=0", "--max", "total=100",
                 "--dlq-url", queues.dlq, check=False)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "ALERT key-expired: 3 > 0" in proc.stdout
    assert "shop (2), legacy (1)" in proc.stdout and "kid-old (3)" in proc.stdout
    assert "total" not in proc.stdout  # under its limit

    sealq(env, "dlq", "purge", "--reason", "key-expired", "--yes", "--dlq-url", queues.dlq)
    ok = sealq(env, "dlq", "watch", "--once", "--json", "--max", "key-expired=0", "--dlq-url", queues.dlq)
    assert json.loads(ok.stdout)["breaches"] == []
    assert counts(queues.sqs, queues.dlq) == (len(MIX) - 3, 0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "case",
    ["missing-dlq", "missing-source", "same-queue", "unreachable", "work-queue-as-dlq"],
)
def test_errors_are_one_line_and_touch_nothing(
    env: dict[str, str], queues: Queues, case: str, tmp_path: Path
) -> None:
    missing = queues.dlq.rsplit("/", 1)[0] + "/sealq-no-such-queue"
    dlq, source, run_env = queues.dlq, queues.source, env
    if case == "missing-dlq":
        dlq = missing
    elif case == "missing-source":
        source = missing
    elif case == "same-queue":
        source = queues.dlq
    elif case == "work-queue-as-dlq":  # a queue with a redrive policy of its own is not a DLQ
        arn = queues.sqs.get_queue_attributes(QueueUrl=queues.dlq, AttributeNames=["QueueArn"])
        policy = json.dumps({"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "5"})
        queues.sqs.set_queue_attributes(QueueUrl=queues.source, Attributes={"RedrivePolicy": policy})
        queues.sqs.send_message(QueueUrl=queues.source, MessageBody="live work")
        dlq, source = queues.source, queues.dlq
    else:
        run_env = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}
    commands = [
        ["redrive", "--dlq-url", dlq, "--queue-url", source],
        ["redrive", "--reason", "key-expired", "--dlq-url", dlq, "--queue-url", source],
    ]
    if case in ("missing-dlq", "work-queue-as-dlq"):
        commands += [
            ["stats", "--dlq-url", dlq],
            ["peek", "--dlq-url", dlq],
            ["purge", "--yes", "--dlq-url", dlq],
            ["watch", "--once", "--dlq-url", dlq],
        ]
    elif case == "unreachable":  # each try takes the bounded retries' few seconds
        commands = [["purge", "--yes", "--dlq-url", dlq], ["watch", "--once", "--dlq-url", dlq]]
    for command in commands:
        line = one_line_error(sealq(run_env, "dlq", *command, check=False))
        expected = {
            "missing-dlq": "--dlq-url",
            "missing-source": "--queue-url",
            "same-queue": "same queue",
            "unreachable": "cannot reach",
            "work-queue-as-dlq": "not a dead-letter queue",
        }[case]
        assert expected in line, line
    if case == "work-queue-as-dlq":
        live = drain(queues.sqs, queues.source)
        assert [m["Attributes"]["ApproximateReceiveCount"] for m in live] == ["1"]
        queues.sqs.delete_message(QueueUrl=queues.source, ReceiptHandle=live[0]["ReceiptHandle"])
    assert_untouched(queues)
