"""sealq.testing as a user meets it: run_handler drives the real worker and reports what it
did, TestKey seals like a producer, and the in-memory SQS and fake KMS keep AWS's rules."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import sealq.testing
from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_KEY_ID, ATTR_REASON
from sealq.errors import Reason
from sealq.keys.kms import decrypt_request
from sealq.producer.jwks import PublicKeySet
from sealq.testing import (
    FakeKMS,
    MemoryQueue,
    MemorySQS,
    Settled,
    TestKey,
    run_handler,
    run_handler_sync,
)
from sealq.worker import HandlerRejected, Message


class Recorder:
    """A handler that records what it saw and fails as it is told to."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.seen: list[Message] = []
        self.error = error

    async def __call__(self, message: Message) -> None:
        self.seen.append(message)
        if self.error is not None:
            raise self.error


@pytest.fixture(scope="module")
def key() -> TestKey:
    return TestKey(kid="kit-p256")


async def test_a_handler_that_returns_is_handled_and_saw_the_plaintext(key: TestKey) -> None:
    handler = Recorder()
    outcome = await run_handler(
        handler, '{"order": 7}', key=key, client_id="shop-eu", content_type="application/json"
    )
    assert outcome.settled is Settled.HANDLED and outcome.handled
    assert outcome.reason is None and outcome.retry_in_s is None and outcome.error is None
    (message,) = handler.seen
    assert message.json() == {"order": 7}
    assert (message.kid, message.client_id, message.content_type) == (
        "kit-p256",
        "shop-eu",
        "application/json",
    )
    assert message.receive_count == 1
    assert outcome.messages == (message,)


async def test_handler_rejected_is_dead_lettered_with_its_detail(key: TestKey) -> None:
    outcome = await run_handler(Recorder(HandlerRejected("no such customer")), b"x", key=key)
    assert outcome.dead_lettered
    assert outcome.reason is Reason.HANDLER_REJECTED
    assert outcome.detail == "no such customer"
    assert isinstance(outcome.error, HandlerRejected)
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.attribute(ATTR_KEY_ID) == "kit-p256"
    assert outcome.dead_letter.body.count(".") == 4  # the sealed token, never the plaintext


async def test_another_exception_is_retried_after_a_backoff(key: TestKey) -> None:
    outcome = await run_handler(Recorder(RuntimeError("database down")), b"x", key=key)
    assert outcome.retried and not outcome.dead_lettered
    # The worker's default backoff: 1-2 s at the first attempt.
    assert outcome.retry_in_s is not None and 1 <= outcome.retry_in_s <= 2
    assert isinstance(outcome.error, RuntimeError)
    assert len(outcome.messages) == 1


async def test_the_last_attempt_dead_letters_as_handler_error(key: TestKey) -> None:
    handler = Recorder(RuntimeError("database down"))
    outcome = await run_handler(handler, b"x", key=key, receive_count=3, max_attempts=3)
    assert outcome.dead_lettered and outcome.reason is Reason.HANDLER_ERROR
    assert outcome.detail == "RuntimeError after 3 attempts"
    assert handler.seen[0].receive_count == 3


async def test_a_slow_handler_times_out_into_a_retry(key: TestKey) -> None:
    async def slow(message: Message) -> None:
        await asyncio.sleep(5)

    outcome = await run_handler(slow, b"x", key=key, handler_timeout_s=0.2)
    assert outcome.retried
    assert isinstance(outcome.error, TimeoutError | asyncio.CancelledError)


@pytest.mark.parametrize(
    ("body", "attributes", "reason"),
    [
        pytest.param("not-a-token", None, Reason.MALFORMED, id="corrupt-body"),
        pytest.param(None, {ATTR_KEY_ID: None}, Reason.MALFORMED, id="no-key-id"),
        pytest.param(None, {ATTR_KEY_ID: "kit-other"}, Reason.KID_MISMATCH, id="key-id-differs"),
    ],
)
async def test_bad_messages_are_dead_lettered_before_the_handler(
    key: TestKey, body: str | None, attributes: dict[str, str | None] | None, reason: Reason
) -> None:
    handler = Recorder()
    outcome = await run_handler(handler, b"x", key=key, body=body, attributes=attributes)
    assert outcome.dead_lettered and outcome.reason is reason
    assert handler.seen == [] and not outcome.handler_called


async def test_a_token_for_a_key_the_worker_lacks_is_unknown_key(key: TestKey) -> None:
    stranger = TestKey(kid="kit-stranger").seal(b"x")
    handler = Recorder()
    outcome = await run_handler(
        handler, key=key, body=stranger.body, attributes={ATTR_KEY_ID: "kit-stranger"}
    )
    # Only after a fresh keyset read: a key rotated in meanwhile must not be called unknown.
    assert outcome.dead_lettered and outcome.reason is Reason.UNKNOWN_KEY
    assert handler.seen == []


async def test_a_message_for_a_key_past_its_expiry_is_key_expired() -> None:
    handler = Recorder()
    outcome = await run_handler(handler, b"late", key=TestKey("P-521", kid="kit-old", expires_in_s=-1))
    assert outcome.dead_lettered and outcome.reason is Reason.KEY_EXPIRED
    assert handler.seen == []


async def test_a_token_tampered_with_fails_to_decrypt(key: TestKey) -> None:
    token = key.seal(b"secret").body
    head, wrapped, iv, ciphertext, tag = token.split(".")
    flipped = ("A" if ciphertext[0] != "A" else "B") + ciphertext[1:]
    handler = Recorder()
    outcome = await run_handler(handler, key=key, body=".".join((head, wrapped, iv, flipped, tag)))
    assert outcome.dead_lettered and outcome.reason is Reason.DECRYPT_FAILED
    assert handler.seen == []


def test_the_sync_wrapper_runs_an_rsa_key() -> None:
    handler = Recorder()
    outcome = run_handler_sync(handler, b"plain", key=TestKey("RSA-2048", kid="kit-rsa"))
    assert outcome.handled and handler.seen[0].plaintext == b"plain"


async def test_a_plain_function_runs_in_a_thread_as_under_sealq_run(key: TestKey) -> None:
    threads: list[threading.Thread] = []

    def blocking(message: Message) -> None:
        threads.append(threading.current_thread())
        if message.plaintext == b"bad":
            raise HandlerRejected("bad")

    assert (await run_handler(blocking, b"ok", key=key)).handled
    assert threads and threads[0] is not threading.main_thread()
    assert (await run_handler(blocking, b"bad", key=key)).reason is Reason.HANDLER_REJECTED


async def test_sealq_environment_variables_do_not_change_the_run(
    key: TestKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALQ_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("SEALQ_BACKOFF_BASE_S", "0")
    outcome = await run_handler(Recorder(RuntimeError("x")), b"x", key=key)
    assert outcome.retried and outcome.retry_in_s is not None and outcome.retry_in_s >= 1


# ----- the parts ------------------------------------------------------------------------------


def test_test_key_serves_a_producer_and_opens_what_it_sealed(key: TestKey) -> None:
    keys = PublicKeySet(key.jwks())
    assert [k.kid for k in keys.keys] == ["kit-p256"]
    entry = key.seal(b"hello", client_id="shop-eu")
    assert entry.attributes[ATTR_CLIENT_ID]["StringValue"] == "shop-eu"
    kms = FakeKMS()
    record = key.record(kms)
    assert "PRIVATE" not in record.model_dump_json() and b"BEGIN" not in record.model_dump_json().encode()
    assert "kit-p256" in repr(key) and "PRIVATE" not in repr(key)


async def test_fake_kms_refuses_an_edited_encryption_context(key: TestKey) -> None:
    kms = FakeKMS()
    request = decrypt_request(key.record(kms))
    assert (await kms.decrypt(**request))["Plaintext"]
    edited = {**request, "EncryptionContext": {**request["EncryptionContext"], "sealq:expires-at": "2099"}}
    for bad in (edited, {**request, "CiphertextBlob": b"never-issued"}):
        with pytest.raises(ClientError) as caught:
            await kms.decrypt(**bad)
        assert caught.value.response["Error"]["Code"] == "InvalidCiphertextException"


async def test_memory_sqs_refuses_what_sqs_refuses() -> None:
    sqs = MemorySQS(MemoryQueue("q"))
    too_many = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)}
    empty = {"a": {"DataType": "String", "StringValue": ""}}
    for attributes, body in ((too_many, "x"), (empty, "x"), ({}, "x" * (1024 * 1024 + 1))):
        with pytest.raises(ClientError) as caught:
            await sqs.send_message(QueueUrl="q", MessageBody=body, MessageAttributes=attributes)
        assert caught.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert len(sqs["q"]) == 0
    await sqs.send_message(QueueUrl="q", MessageBody="x" * 1000, MessageAttributes={})
    assert len(sqs["q"]) == 1


async def test_memory_queue_shows_visibility_set_by_the_consumer() -> None:
    queue = MemoryQueue("q")
    queue.put("b", {ATTR_REASON: {"DataType": "String", "StringValue": "malformed"}}, receive_count=2)
    (got,) = (await queue.receive_message(MaxNumberOfMessages=10, VisibilityTimeout=30))["Messages"]
    assert got["Attributes"]["ApproximateReceiveCount"] == "3"
    (before,) = queue.messages()
    assert not before.visible and before.visibility_s is None
    entries = [{"Id": "0", "ReceiptHandle": got["ReceiptHandle"], "VisibilityTimeout": 7}]
    await queue.change_message_visibility_batch(Entries=entries)
    (after,) = queue.messages()
    assert after.visibility_s == 7 and after.attribute(ATTR_REASON) == "malformed"


async def test_the_usage_example_in_the_docstring_passes() -> None:
    doc = sealq.testing.__doc__ or ""
    example = textwrap.dedent(doc[doc.index("    from sealq") : doc.index("`run_handler` seals")])
    namespace: dict[str, Any] = {}
    exec(compile(example, "sealq.testing example", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        await test()


def test_the_kit_exports_what_its_docstring_promises() -> None:
    assert set(sealq.testing.__all__) == {n for n in dir(sealq.testing) if not n.startswith("_")} - {
        "fifo_sqs",
        "harness",
        "keys",
        "kms",
        "kms_sign",
        "s3",
        "sqs",
    }
    for name in ("run_handler", "TestKey", "MemorySQS", "MemoryS3", "FakeKMS", "HandlerOutcome"):
        assert name in (sealq.testing.__doc__ or "")


def test_the_keyset_run_handler_writes_holds_no_private_key(
    key: TestKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    written: list[str] = []

    async def read_the_keyset(message: Message) -> None:
        (path,) = tmp_path.glob("sealq-testing-*/keyset.json")
        written.append(path.read_text())

    assert run_handler_sync(read_the_keyset, b"x", key=key).handled
    (record,) = json.loads(written[0])["keys"]
    assert base64.b64decode(record["wrapped_private_key"]).startswith(b"blob-")  # a label, not a key
    assert list(tmp_path.iterdir()) == []  # and the file is gone afterwards
