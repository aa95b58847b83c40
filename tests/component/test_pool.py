"""The worker pool in process: MemorySQS for SQS, FakeKMS for KMS, a keyset file in tmp_path.

Each test runs `Worker.run()` as a task, waits (polling with a deadline) until what a user
would see holds (queues, DLQ contents, handler calls), then stops the worker gracefully.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_CONTENT_TYPE, ATTR_FORMAT, ATTR_KEY_ID, ATTR_REASON
from sealq.envelope.jwe import seal_at
from sealq.envelope.jwk import Alg, PrivateKeyObject, SealingKey, alg_for_key
from sealq.envelope.raw import RAW_FORMAT, seal_raw
from sealq.errors import Reason
from sealq.keys.keyset import KeyRecord
from sealq.keys.store import KeysetStore
from sealq.testing.kms import FakeKMS, record_for, write_keyset
from sealq.testing.sqs import MemoryQueue, MemorySQS
from sealq.worker.handler import HandlerRejected, Message
from sealq.worker.leases import Leases, in_flight
from sealq.worker.outcomes import DeadLetter, Rules
from sealq.worker.pool import Tuning, Worker
from sealq.worker.settings import WorkerSettings
from sealq.worker.settling import Settler
from sealq.worker.stats import KidLabels, Stats

SRC, DLQ = "src", "dlq"
LIVE, RSA_LIVE, OLD, GONE, NEW = "ec-live", "rsa-live", "ec-old", "ec-gone", "ec-new"


# ----- keys and rig ------------------------------------------------------------------------


@dataclass
class Keys:
    ec: PrivateKeyObject
    ec2: PrivateKeyObject
    rsa: PrivateKeyObject


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
        rsa.generate_private_key(65537, 2048),
    )


def sealing(kid: str, private: PrivateKeyObject) -> SealingKey:
    public = private.public_key()
    return SealingKey(kid, alg_for_key(public), public)


def attrs(kid: str | None, client_id: str = "shop-eu", **extra: str) -> dict[str, dict[str, str]]:
    values = {ATTR_CLIENT_ID: client_id, **extra}
    if kid is not None:
        values[ATTR_KEY_ID] = kid
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


class Recorder:
    """A handler: records every message; plaintext b"reject" / b"fail" misbehave on purpose."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.messages: list[Message] = []
        self.calls: Counter[str] = Counter()
        self.delay_s = delay_s
        self.running = 0
        self.finished: list[str] = []

    async def __call__(self, message: Message) -> None:
        self.calls[message.message_id] += 1
        self.running += 1
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if message.plaintext == b"reject":
                raise HandlerRejected("order failed validation")
            if message.plaintext == b"fail":
                raise RuntimeError("downstream unavailable")
            self.messages.append(message)
            self.finished.append(message.message_id)
        finally:
            self.running -= 1

    def handled_ids(self) -> set[str]:
        return {m.message_id for m in self.messages}


class QuickPollSQS(MemorySQS):
    """Long polls last at most 0.1 s: a stopping worker lets a poll in flight finish, and
    the settings cannot go below one whole second."""

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        return await super().receive_message(**{**kw, "WaitTimeSeconds": min(kw["WaitTimeSeconds"], 0.1)})


@dataclass
class Rig:
    path: Path
    kms: FakeKMS = field(default_factory=FakeKMS)
    src: MemoryQueue = field(default_factory=lambda: MemoryQueue(SRC))
    dlq: MemoryQueue = field(default_factory=lambda: MemoryQueue(DLQ))
    records: dict[str, KeyRecord] = field(default_factory=dict)
    sqs: Any = None

    def __post_init__(self) -> None:
        self.sqs = QuickPollSQS(self.src, self.dlq)

    def add(self, private: PrivateKeyObject, kid: str, **kw: Any) -> KeyRecord:
        record = record_for(self.kms, private, kid, **kw)
        self.records[kid] = record
        return record

    def save(self) -> None:
        write_keyset(self.path, *self.records.values())

    def worker(
        self,
        handler: Callable[[Message], Any],
        *,
        clock: Callable[[], float] = time.time,
        max_message_bytes: int | None = None,
        tuning: Tuning | None = None,
        **overrides: Any,
    ) -> Worker:
        values: dict[str, Any] = {
            "queue_url": SRC,
            "dlq_url": DLQ,
            "keyset": str(self.path),
            "handler": "tests.component.test_pool:unused",
            "concurrency": 4,
            "pollers": 2,
            "max_in_flight": 40,
            "wait_time_s": 1,
            "visibility_timeout_s": 30,
            "heartbeat_s": 10,
            "max_attempts": 3,
            "backoff_base_s": 0,
            "backoff_max_s": 0,
            "shutdown_grace_s": 5,
            "keyset_refresh_s": 60,
            "crypto_threads": 2,
        }
        values.update(overrides)
        extra = {} if max_message_bytes is None else {"max_message_bytes": max_message_bytes}
        return Worker(
            WorkerSettings(**values),
            handler,
            sqs=self.sqs,
            kms=self.kms,
            keystore=KeysetStore(self.path),
            clock=clock,
            tuning=tuning or Tuning(),
            **extra,
        )

    def put(self, body: bytes | str, attributes: dict[str, dict[str, str]]) -> str:
        text = body.decode() if isinstance(body, bytes) else body
        return self.src.put(text, attributes)


@pytest.fixture
def rig(tmp_path: Path, keys: Keys) -> Rig:
    r = Rig(tmp_path / "keyset.json")
    r.add(keys.ec, LIVE)
    r.add(keys.rsa, RSA_LIVE)
    r.add(keys.ec2, OLD, now=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2), expires_in_s=3600)
    r.save()
    return r


# ----- running and waiting ------------------------------------------------------------------


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: worker.ready or task.done(), what="worker ready")
        assert not task.done(), task.exception()
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)


async def until(cond: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition") -> float:
    """Poll `cond` until true; return the seconds it took. Fails the test at the deadline."""
    started = time.monotonic()
    while not cond():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def peek(queue: MemoryQueue) -> list[Any]:
    """Every message a queue holds, visible or not (inspection only; nothing changes)."""
    return list(queue._ready) + list(queue._invisible.values())


def visible(queue: MemoryQueue) -> int:
    queue._expire_visibility(time.monotonic())
    return len(queue._ready)


def dlq_reason(stored: Any) -> str:
    return str(stored.attributes[ATTR_REASON]["StringValue"])


# ----- A1: every outcome --------------------------------------------------------------------


async def test_handled_message_reaches_handler_and_is_deleted(rig: Rig, keys: Keys) -> None:
    handler = Recorder()
    token = seal_at(b'{"order": 1}', sealing(LIVE, keys.ec), time.time())
    jwe_id = rig.put(token, attrs(LIVE, "shop-eu", **{ATTR_CONTENT_TYPE: "application/json"}))
    raw = seal_raw(b"raw order", keys.rsa.public_key())  # type: ignore[arg-type]
    raw_id = rig.put(raw, attrs(RSA_LIVE, "shell", **{ATTR_FORMAT: RAW_FORMAT}))
    worker = rig.worker(handler)
    async with running(worker):
        await until(lambda: len(handler.messages) == 2 and len(rig.src) == 0, what="2 handled")
    by_id = {m.message_id: m for m in handler.messages}
    jwe, rawm = by_id[jwe_id], by_id[raw_id]
    assert (jwe.plaintext, jwe.kid, jwe.client_id, jwe.receive_count) == (
        b'{"order": 1}',
        LIVE,
        "shop-eu",
        1,
    )
    assert jwe.content_type == "application/json" and jwe.json() == {"order": 1}
    assert (rawm.plaintext, rawm.kid, rawm.client_id, rawm.receive_count) == (
        b"raw order",
        RSA_LIVE,
        "shell",
        1,
    )
    assert rig.src.deleted == 2 and not peek(rig.dlq)
    assert sum(handler.calls.values()) == 2
    assert worker.stats.handled == 2


Case = Callable[[Rig, Keys], tuple[bytes | str, dict[str, dict[str, str]]]]


def _tampered(rig: Rig, keys: Keys) -> tuple[bytes, dict[str, dict[str, str]]]:
    token = bytearray(seal_at(b"secret order", sealing(LIVE, keys.ec), time.time()))
    cut = token.rindex(b".") - 3  # inside the ciphertext
    token[cut] = ord("A") if token[cut] != ord("A") else ord("B")
    return bytes(token), attrs(LIVE)


CASES: dict[str, tuple[Reason, Case]] = {
    "malformed-not-a-token": (Reason.MALFORMED, lambda r, k: ("not a sealed message", attrs(LIVE))),
    "malformed-no-key-id": (
        Reason.MALFORMED,
        lambda r, k: (seal_at(b"x", sealing(LIVE, k.ec), time.time()), attrs(None)),
    ),
    "too-large": (
        Reason.TOO_LARGE,
        lambda r, k: (seal_at(b"x" * 5000, sealing(LIVE, k.ec), time.time()), attrs(LIVE)),
    ),
    # sealed with RSA-OAEP-256 but naming an EC key of ours
    "unsupported-algorithm": (
        Reason.UNSUPPORTED_ALGORITHM,
        lambda r, k: (
            seal_at(b"x", SealingKey(LIVE, Alg.RSA_OAEP_256, k.rsa.public_key()), time.time()),  # type: ignore[arg-type]
            attrs(LIVE),
        ),
    ),
    "kid-mismatch": (
        Reason.KID_MISMATCH,
        lambda r, k: (seal_at(b"x", sealing(LIVE, k.ec), time.time()), attrs(RSA_LIVE)),
    ),
    "unknown-key": (
        Reason.UNKNOWN_KEY,
        lambda r, k: (seal_at(b"x", sealing(GONE, k.ec2), time.time()), attrs(GONE)),
    ),
    "key-expired": (
        Reason.KEY_EXPIRED,
        lambda r, k: (seal_at(b"x", sealing(OLD, k.ec2), time.time()), attrs(OLD)),
    ),
    "decrypt-failed": (Reason.DECRYPT_FAILED, _tampered),
    "handler-rejected": (
        Reason.HANDLER_REJECTED,
        lambda r, k: (seal_at(b"reject", sealing(LIVE, k.ec), time.time()), attrs(LIVE)),
    ),
    "handler-error": (
        Reason.HANDLER_ERROR,
        lambda r, k: (seal_at(b"fail", sealing(LIVE, k.ec), time.time()), attrs(LIVE)),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_dead_letter_keeps_body_and_attributes_with_reason(rig: Rig, keys: Keys, name: str) -> None:
    reason, build = CASES[name]
    body, attributes = build(rig, keys)
    body_text = body.decode() if isinstance(body, bytes) else body
    handler = Recorder()
    message_id = rig.put(body, attributes)
    good_id = rig.put(seal_at(b"fine", sealing(LIVE, keys.ec), time.time()), attrs(LIVE))
    worker = rig.worker(
        handler, max_message_bytes=4096, max_attempts=3, tuning=Tuning(unknown_kid_refresh_min_s=0.0)
    )
    async with running(worker):
        await until(lambda: len(peek(rig.dlq)) == 1 and len(rig.src) == 0, what=f"{name} dead-lettered")
    (dead,) = peek(rig.dlq)
    assert dlq_reason(dead) == reason.value
    assert dead.body == body_text
    for key, value in attributes.items():
        assert dead.attributes[key] == value
    assert set(dead.attributes) - set(attributes) <= {ATTR_REASON, "sealq-detail"}
    assert len(rig.src) == 0  # deleted from the source after the DLQ had it
    assert handler.handled_ids() == {good_id}
    assert message_id not in handler.handled_ids()
    if reason is Reason.HANDLER_ERROR:
        assert handler.calls[message_id] == 3  # max_attempts tries, then the DLQ
    elif reason is Reason.HANDLER_REJECTED:
        assert handler.calls[message_id] == 1  # rejected for good at once, no retries
    else:
        assert handler.calls[message_id] == 0
    assert worker.stats.dead_lettered_by_reason() == {reason.value: 1}


# ----- A2: single-flight KMS ----------------------------------------------------------------


async def test_one_kms_decrypt_for_many_messages_under_a_new_kid(rig: Rig, keys: Keys) -> None:
    rig.kms.delay_s = 0.3
    key = sealing(LIVE, keys.ec)
    now = time.time()
    for i in range(600):
        rig.put(seal_at(f"order {i}".encode(), key, now), attrs(LIVE))
    handler = Recorder()
    worker = rig.worker(handler, concurrency=200, max_in_flight=600, pollers=10)
    seen_in_flight: list[int] = []
    real_decrypt = rig.kms.decrypt

    async def watched(**kw: Any) -> dict[str, Any]:
        out = await real_decrypt(**kw)
        seen_in_flight.append(worker.in_flight)
        return out

    rig.kms.decrypt = watched  # type: ignore[method-assign]
    async with running(worker):
        await until(lambda: len(handler.messages) == 600, timeout=20, what="600 handled")
    assert rig.kms.calls == 1 and worker.keys.decrypt_calls == 1
    # The one call really overlapped with many consumers wanting the key.
    assert seen_in_flight and seen_in_flight[0] > 200
    assert len(rig.src) == 0 and not peek(rig.dlq)


async def test_unknown_kids_never_call_kms(rig: Rig, keys: Keys) -> None:
    for i in range(50):
        kid = f"ec-stranger-{i % 5}"
        rig.put(seal_at(b"x", sealing(kid, keys.ec2), time.time()), attrs(kid))
    worker = rig.worker(Recorder(), concurrency=20, tuning=Tuning(unknown_kid_refresh_min_s=0.5))
    async with running(worker):
        await until(lambda: len(peek(rig.dlq)) == 50, what="50 dead-lettered")
    assert rig.kms.calls == 0
    assert {dlq_reason(m) for m in peek(rig.dlq)} == {Reason.UNKNOWN_KEY.value}


# ----- A3: eviction at expiry, with the grace for messages sealed in time -------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_key_evicted_after_expiry_plus_grace(tmp_path: Path, keys: Keys) -> None:
    t0 = float(int(time.time()))
    r = Rig(tmp_path / "keyset.json")
    r.add(keys.ec, LIVE, now=datetime.fromtimestamp(t0, UTC), expires_in_s=100)
    r.save()
    clock = Clock(t0 + 10)
    handler = Recorder()
    key = sealing(LIVE, keys.ec)
    worker = r.worker(handler, clock=clock, key_grace_s=50, keyset_refresh_s=0.05)
    async with running(worker):
        first = r.put(seal_at(b"early", key, t0 + 5), attrs(LIVE))
        await until(lambda: first in handler.handled_ids(), what="early message handled")
        assert LIVE in worker.keys

        clock.now = t0 + 120  # past expiry, within the grace
        in_time = r.put(seal_at(b"sealed in time", key, t0 + 90), attrs(LIVE))
        too_late = r.put(seal_at(b"sealed after expiry", key, t0 + 110), attrs(LIVE))
        await until(lambda: in_time in handler.handled_ids() and len(peek(r.dlq)) == 1, what="grace")
        assert dlq_reason(peek(r.dlq)[0]) == Reason.KEY_EXPIRED.value
        assert too_late not in handler.calls
        await asyncio.sleep(0.2)  # housekeeping ran several times: the key is still needed
        assert LIVE in worker.keys

        clock.now = t0 + 151  # past expiry + grace
        await until(lambda: LIVE not in worker.keys, what="eviction")
        after = r.put(seal_at(b"sealed in time, delivered too late", key, t0 + 90), attrs(LIVE))
        await until(lambda: len(peek(r.dlq)) == 2, what="late message dead-lettered")
    assert after not in handler.calls
    assert [dlq_reason(m) for m in peek(r.dlq)] == [Reason.KEY_EXPIRED.value] * 2
    assert r.kms.calls == 1
    assert len(r.src) == 0


# ----- A4: partial batch failures on delete --------------------------------------------------


class FlakyDeletes(QuickPollSQS):
    """Fails the first DeleteMessageBatch call(s): some entries, or the whole call."""

    def __init__(self, *queues: MemoryQueue, mode: str) -> None:
        super().__init__(*queues)
        self.mode = mode
        self.failures_left = 2
        self.failed_entries = 0

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        if self.failures_left <= 0:
            return await super().delete_message_batch(**kw)
        self.failures_left -= 1
        if self.mode == "raise-client-error":
            raise ClientError({"Error": {"Code": "InternalError", "Message": "x"}}, "DeleteMessageBatch")
        if self.mode == "raise-connection":
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        entries = kw["Entries"]
        fail = entries[::2]
        keep = entries[1::2]
        self.failed_entries += len(fail)
        result = await super().delete_message_batch(**{**kw, "Entries": keep}) if keep else {}
        return {
            "Successful": result.get("Successful", []),
            "Failed": [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in fail]
            + result.get("Failed", []),
        }


@pytest.mark.parametrize("mode", ["entries", "raise-client-error", "raise-connection"])
async def test_failed_deletes_are_retried_until_deleted(rig: Rig, keys: Keys, mode: str) -> None:
    flaky = FlakyDeletes(rig.src, rig.dlq, mode=mode)
    rig.sqs = flaky
    ids = [
        rig.put(seal_at(f"o{i}".encode(), sealing(LIVE, keys.ec), time.time()), attrs(LIVE))
        for i in range(20)
    ]
    handler = Recorder()
    worker = rig.worker(handler, visibility_timeout_s=1, heartbeat_s=0.3)
    async with running(worker):
        await until(lambda: len(rig.src) == 0, what="all deleted")
        # Longer than the visibility timeout: anything not really deleted would come back.
        await asyncio.sleep(1.2)
    assert flaky.failures_left == 0
    if mode == "entries":
        assert flaky.failed_entries > 0
    assert set(handler.calls) == set(ids)
    assert set(handler.calls.values()) == {1}
    assert worker.stats.ack_failures == 0
    assert not peek(rig.dlq)


# ----- A5: heartbeat ---------------------------------------------------------------------


async def test_heartbeat_keeps_a_slow_message_invisible(rig: Rig, keys: Keys) -> None:
    handler = Recorder(delay_s=4.0)
    message_id = rig.put(seal_at(b"slow", sealing(LIVE, keys.ec), time.time()), attrs(LIVE))
    worker = rig.worker(handler, visibility_timeout_s=2, heartbeat_s=0.5)
    async with running(worker):
        await until(lambda: len(rig.src) == 0, timeout=8, what="slow message deleted")
    assert handler.calls == {message_id: 1}
    assert rig.src.calls.get("ChangeMessageVisibilityBatch", 0) >= 2  # extended twice in 4 s
    assert rig.src.deleted == 1


# ----- A6: one failing message does not hold back its batch ---------------------------------


async def test_failing_message_does_not_hold_back_the_others(rig: Rig, keys: Keys) -> None:
    key = sealing(LIVE, keys.ec)
    now = time.time()
    good = [rig.put(seal_at(f"o{i}".encode(), key, now), attrs(LIVE)) for i in range(4)]
    bad = rig.put(seal_at(b"fail", key, now), attrs(LIVE))
    good += [rig.put(seal_at(f"o{i}".encode(), key, now), attrs(LIVE)) for i in range(4, 9)]
    handler = Recorder()
    worker = rig.worker(handler, backoff_base_s=1, backoff_max_s=1, max_attempts=3)
    async with running(worker):
        took = await until(
            lambda: handler.handled_ids() == set(good) and len(rig.src) == 1, what="9 good handled"
        )
        assert took < 1.0
        await until(lambda: len(peek(rig.dlq)) == 1, what="bad one dead-lettered")
    assert all(handler.calls[g] == 1 for g in good)
    assert handler.calls[bad] == 3
    assert dlq_reason(peek(rig.dlq)[0]) == Reason.HANDLER_ERROR.value
    assert len(rig.src) == 0


# ----- A7: KMS unavailable is transient ---------------------------------------------------------


class OutageKMS(FakeKMS):
    def __init__(self, failure: str) -> None:
        super().__init__()
        self.failure = failure
        self.down = True

    async def decrypt(self, **kw: Any) -> dict[str, Any]:
        if self.down:
            self.calls += 1
            if self.failure == "connection":
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
            raise ClientError({"Error": {"Code": self.failure, "Message": "fake"}}, "Decrypt")
        return await super().decrypt(**kw)


@pytest.mark.parametrize("failure", ["ThrottlingException", "KMSInternalException", "connection"])
async def test_kms_outage_never_dead_letters(tmp_path: Path, keys: Keys, failure: str) -> None:
    r = Rig(tmp_path / "keyset.json", kms=OutageKMS(failure))
    r.add(keys.ec, LIVE)
    r.save()
    ids = {r.put(seal_at(b"x", sealing(LIVE, keys.ec), time.time()), attrs(LIVE)) for _ in range(30)}
    handler = Recorder()
    worker = r.worker(handler, concurrency=8, tuning=Tuning(kms_retry_s=1))
    kms = r.kms
    assert isinstance(kms, OutageKMS)
    async with running(worker):
        # Two rounds of "KMS down" at least: the messages came back and were tried again.
        await until(lambda: kms.calls >= 2 and worker.stats.retried >= 60, timeout=8, what="retries")
        assert not peek(r.dlq)
        assert len(r.src) == 30 and not handler.messages
        kms.down = False
        await until(lambda: len(handler.messages) == 30 and len(r.src) == 0, timeout=8, what="recovery")
    assert handler.handled_ids() == ids
    assert not peek(r.dlq)


# ----- A8: keyset changes reach a running worker ---------------------------------------------


async def test_new_key_in_keyset_is_used_without_restart(rig: Rig, keys: Keys) -> None:
    # The keyset was read at start, well within the rate limit: the new kid must still win.
    handler = Recorder()
    # Interval refresh far away: only the unknown-kid path can help.
    worker = rig.worker(handler, tuning=Tuning(unknown_kid_refresh_min_s=1.0))
    async with running(worker):
        rig.add(keys.ec2, NEW)
        rig.save()  # `keys rotate` while the worker runs
        message_id = rig.put(seal_at(b"after rotate", sealing(NEW, keys.ec2), time.time()), attrs(NEW))
        await until(lambda: message_id in handler.calls or bool(peek(rig.dlq)), timeout=5, what="outcome")
        assert worker.keys.decrypt_calls == 1
    assert not peek(rig.dlq), dlq_reason(peek(rig.dlq)[0])
    assert handler.messages[0].plaintext == b"after rotate" and handler.messages[0].kid == NEW


async def test_shredded_key_stops_decrypting_after_refresh(rig: Rig, keys: Keys) -> None:
    handler = Recorder()
    key = sealing(LIVE, keys.ec)
    worker = rig.worker(handler, keyset_refresh_s=0.1)
    async with running(worker):
        first = rig.put(seal_at(b"before", key, time.time()), attrs(LIVE))
        await until(lambda: first in handler.handled_ids(), what="handled before expire")
        assert LIVE in worker.keys
        rig.records[LIVE] = rig.records[LIVE].shredded(datetime.now(UTC))
        rig.save()  # `keys expire`
        await until(lambda: LIVE not in worker.keys, what="key evicted")
        second = rig.put(seal_at(b"after", key, time.time()), attrs(LIVE))
        await until(lambda: len(peek(rig.dlq)) == 1, what="dead-lettered")
    assert second not in handler.calls
    assert dlq_reason(peek(rig.dlq)[0]) == Reason.KEY_EXPIRED.value
    assert rig.kms.calls == 1


# ----- A9: graceful stop ------------------------------------------------------------------


async def test_stop_finishes_running_handlers_and_releases_the_rest(rig: Rig, keys: Keys) -> None:
    key = sealing(LIVE, keys.ec)
    ids = [rig.put(seal_at(f"o{i}".encode(), key, time.time()), attrs(LIVE)) for i in range(30)]
    handler = Recorder(delay_s=0.5)
    worker = rig.worker(handler, concurrency=2, max_in_flight=10, shutdown_grace_s=5)
    task = asyncio.create_task(worker.run())
    await until(lambda: handler.running == 2 and worker.in_flight == 10, what="2 running, 8 buffered")
    started = set(handler.calls)
    worker.stop()
    await asyncio.wait_for(task, 5)
    # The two running handlers finished and their messages are gone from the queue.
    assert set(handler.finished) == started and len(started) == 2
    assert rig.src.deleted == 2
    # The eight buffered ones were never handled and are visible again at once.
    assert set(handler.calls) == started
    assert visible(rig.src) == 28
    assert {m.message_id for m in peek(rig.src)} == set(ids) - started
    assert worker.stats.released == 8
    assert not peek(rig.dlq)


async def test_stop_past_grace_releases_unfinished_handlers(rig: Rig, keys: Keys) -> None:
    rig.put(seal_at(b"stuck", sealing(LIVE, keys.ec), time.time()), attrs(LIVE))
    handler = Recorder(delay_s=60)
    worker = rig.worker(handler, shutdown_grace_s=0.3)
    task = asyncio.create_task(worker.run())
    await until(lambda: handler.running == 1, what="handler running")
    worker.stop()
    took = time.monotonic()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - took < 2
    assert rig.src.deleted == 0 and visible(rig.src) == 1  # not lost: delivered again at once


# ----- A10: backpressure ----------------------------------------------------------------


async def test_in_flight_never_exceeds_the_bound(rig: Rig, keys: Keys) -> None:
    key = sealing(LIVE, keys.ec)
    now = time.time()
    for i in range(2000):
        rig.put(seal_at(f"o{i}".encode(), key, now), attrs(LIVE))
    handler = Recorder(delay_s=0.005)
    worker = rig.worker(handler, concurrency=20, max_in_flight=20, pollers=4)
    peak = peak_sqs = 0
    async with running(worker):
        deadline = time.monotonic() + 30
        while len(handler.messages) < 2000:
            assert time.monotonic() < deadline, "timed out"
            peak = max(peak, worker.in_flight)
            peak_sqs = max(peak_sqs, len(rig.src._invisible))
            await asyncio.sleep(0)
    assert 10 <= peak <= 20
    assert peak_sqs <= 20  # SQS's view: never more than 20 received and not yet deleted
    assert len(rig.src) == 0 and rig.src.deleted == 2000


async def test_key_cache_waiters_do_not_hang_when_unwrap_breaks_unexpectedly() -> None:
    """A failure outside the KMS error types (here: KMS returns bytes that are not a key)
    must reach every message waiting on that kid, not leave them hanging; bytes that do not
    load never will, so it is a refusal (test_key_failures has the cooldown)."""
    import asyncio as _asyncio

    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    from sealq.testing.kms import FakeKMS, record_for
    from sealq.worker.classify import KeyEntry
    from sealq.worker.keycache import KeyCache, KeyRefused

    kms = FakeKMS()
    kms.delay_s = 0.05
    record = record_for(kms, _ec.generate_private_key(_ec.SECP256R1()), "broken-unwrap")
    kms.blobs = {blob: b"not a PKCS#8 key" for blob in kms.blobs}
    entry = KeyEntry(record, record.expires_at.timestamp(), False)
    cache = KeyCache(kms)
    results = await _asyncio.wait_for(
        _asyncio.gather(*(cache.get(entry) for _ in range(5)), return_exceptions=True), timeout=5
    )
    assert kms.calls == 1
    assert all(isinstance(r, KeyRefused) for r in results)


# ----- found in review ---------------------------------------------------------------------


async def test_handler_raising_cancelled_error_is_a_failure_not_a_dead_consumer(rig: Rig, keys: Keys) -> None:
    """A handler may raise CancelledError itself (e.g. from a cancelled inner task): that is
    a failed attempt, and the consumers stay alive to handle everything else."""
    key = sealing(LIVE, keys.ec)
    bad = rig.put(seal_at(b"cancel me", key, time.time()), attrs(LIVE))
    good = [rig.put(seal_at(f"ok{i}".encode(), key, time.time()), attrs(LIVE)) for i in range(40)]
    calls: Counter[str] = Counter()

    async def handler(message: Message) -> None:
        calls[message.message_id] += 1
        if message.plaintext == b"cancel me":
            raise asyncio.CancelledError()

    worker = rig.worker(handler, max_attempts=2)
    async with running(worker):
        await until(lambda: all(calls[g] == 1 for g in good) and len(peek(rig.dlq)) == 1, what="all outcomes")
        assert worker.ready
    assert calls[bad] == 2
    assert dlq_reason(peek(rig.dlq)[0]) == Reason.HANDLER_ERROR.value
    assert not peek(rig.src)


async def test_rotation_survives_a_failed_keyset_read(
    rig: Rig, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-read that would find a freshly rotated key fails once (S3 hiccup): the message
    is retried, not dead-lettered as unknown-key, and handled once a read succeeds."""
    handler = Recorder()
    worker = rig.worker(handler, tuning=Tuning(unknown_kid_refresh_min_s=0.2))
    real_load = KeysetStore.load
    failures = {"left": 0}

    def flaky_load(store: KeysetStore) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            from sealq.keys.store import KeysetError

            raise KeysetError("simulated: S3 SlowDown")
        return real_load(store)

    monkeypatch.setattr(KeysetStore, "load", flaky_load)
    async with running(worker):
        rig.add(keys.ec2, NEW)
        rig.save()
        failures["left"] = 1
        message_id = rig.put(seal_at(b"rotated", sealing(NEW, keys.ec2), time.time()), attrs(NEW))
        await until(
            lambda: message_id in handler.handled_ids() or bool(peek(rig.dlq)), timeout=8, what="outcome"
        )
    assert not peek(rig.dlq), dlq_reason(peek(rig.dlq)[0])
    assert failures["left"] == 0


async def test_wrong_alg_for_the_key_costs_no_kms_call(rig: Rig, keys: Keys) -> None:
    """An RSA-OAEP token naming an EC kid is refused before the key is unwrapped."""
    token = seal_at(b"x", sealing(RSA_LIVE, keys.rsa), time.time()).decode()
    header, rest = token.split(".", 1)
    import base64
    import json as _json

    fields = _json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    fields["kid"] = LIVE
    forged = base64.urlsafe_b64encode(_json.dumps(fields).encode()).rstrip(b"=").decode() + "." + rest
    rig.put(forged, attrs(LIVE))
    worker = rig.worker(Recorder())
    async with running(worker):
        await until(lambda: len(peek(rig.dlq)) == 1, what="dead-lettered")
    assert dlq_reason(peek(rig.dlq)[0]) == Reason.UNSUPPORTED_ALGORITHM.value
    assert rig.kms.calls == 0


async def test_made_up_kids_cannot_grow_metric_labels_without_bound(rig: Rig, keys: Keys) -> None:
    max_foreign = Tuning().max_foreign_kids
    stray = sealing("p256-20200101-00000000", keys.ec2)
    for i in range(max_foreign + 20):
        kid = f"made-up-{i}"
        rig.put(seal_at(b"x", SealingKey(kid, stray.alg, stray.key), time.time()), attrs(kid))
    rig.put("x", attrs("../../etc/passwd"))
    worker = rig.worker(Recorder(), max_in_flight=200)
    async with running(worker):
        await until(
            lambda: worker.stats.dead_lettered_total == max_foreign + 21,
            timeout=15,
            what="all dead-lettered",
        )
    kids = {kid for _, kid in worker.stats.dead_lettered}
    assert len(kids) == max_foreign + 2  # the first 100, "other", "invalid"
    assert {"other", "invalid"} <= kids


# ----- settling: DLQ first, then delete -----------------------------------------------------


class RecordingSQS:
    """Records the order of SQS calls; the DLQ send fails when `dlq_up` is false."""

    def __init__(self, dlq_up: bool) -> None:
        self.dlq_up = dlq_up
        self.calls: list[str] = []

    async def send_message(self, **kw: Any) -> dict[str, Any]:
        self.calls.append("SendMessage")
        if not self.dlq_up:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "x"}}, "SendMessage")
        return {"MessageId": "dlq-1"}

    async def _batch(self, name: str, kw: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(name)
        return {"Successful": [{"Id": e["Id"]} for e in kw["Entries"]], "Failed": []}

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        return await self._batch("DeleteMessageBatch", kw)

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        return await self._batch("ChangeMessageVisibilityBatch", kw)


@pytest.mark.parametrize("dlq_up", [True, False])
async def test_dead_letter_goes_to_the_dlq_before_the_delete_and_a_failed_send_is_kept(dlq_up: bool) -> None:
    sqs, stats, finished = RecordingSQS(dlq_up), Stats(), []
    leases = Leases(on_finish=lambda: finished.append(True))
    raw = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "b", "MessageAttributes": attrs(LIVE)}
    item = in_flight(raw, 0, 30)
    leases.add([item])
    rules = Rules(max_attempts=3, backoff_base_s=0, backoff_max_s=0, kms_retry_s=15, rng=random.Random(1))
    labels = KidLabels(lambda kid: True, 10)
    settler = Settler(
        sqs, queue_url=SRC, dlq_url=DLQ, rules=rules, leases=leases, stats=stats, kid_label=labels
    )
    await settler.settle(item, DeadLetter(Reason.MALFORMED, "no"))
    await settler.close()
    if dlq_up:
        assert sqs.calls == ["SendMessage", "DeleteMessageBatch"]
        assert stats.dead_lettered == {(Reason.MALFORMED.value, LIVE): 1} and stats.retried == 0
    else:  # not in the DLQ, so never deleted: it comes back later
        assert sqs.calls == ["SendMessage", "ChangeMessageVisibilityBatch"]
        assert not stats.dead_lettered and stats.retried == 1
    assert finished == [True] and len(leases) == 0
