"""A model-based test of the worker over MemorySQS with injected faults (hypothesis).

Each example is a generated schedule of steps run inside one `asyncio.run`: messages good
(plain, transiently failing, rejected, slow) and bad (tampered, unknown kid, wrong key-id
attribute) arrive; receive / delete / change-visibility / DLQ-send / KMS calls start and
stop failing; the worker is stopped and a new one started over the same queues (a restart)
at any point. Then every fault clears, time passes (every lease expires) and one worker
drains the queue. Invariants: nothing is lost (every message was handled or is in the DLQ
with a `sealq-reason`, and the source queue is empty), the handler never sees a message
that failed to open, sees each message's own plaintext, and a handler-rejected copy in the
DLQ was seen by the handler.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealq.envelope.attributes import ATTR_KEY_ID, ATTR_REASON
from sealq.errors import Reason
from sealq.keys.store import KeysetStore
from sealq.testing.keys import TestKey
from sealq.testing.kms import FakeKMS, write_keyset
from sealq.testing.sqs import MemoryQueue, MemorySQS
from sealq.worker.handler import HandlerRejected, Message
from sealq.worker.pool import Tuning, Worker
from sealq.worker.settings import WorkerSettings

SRC, DLQ = "src", "dlq"
LIVE, OTHER, GONE = TestKey(kid="live"), TestKey(kid="other"), TestKey(kid="gone")
GOOD = ("ok", "flaky", "reject", "slow")
BAD = {"tampered": Reason.DECRYPT_FAILED, "unknown-kid": Reason.UNKNOWN_KEY, "wrong-kid": Reason.KID_MISMATCH}
FAULTS = ("receive", "delete", "visibility", "dlq-send", "kms")
SLOW_S = 0.4


class FaultySQS(MemorySQS):
    """MemorySQS whose calls fail while their fault is on; long polls last at most 0.1 s."""

    def __init__(self, *queues: MemoryQueue) -> None:
        super().__init__(*queues)
        self.faults: set[str] = set()

    def _check(self, fault: str, operation: str) -> None:
        if fault not in self.faults:
            return
        if fault == "delete":
            raise EndpointConnectionError(endpoint_url="https://sqs.memory")
        raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, operation)

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        self._check("receive", "ReceiveMessage")
        return await super().receive_message(**{**kw, "WaitTimeSeconds": min(kw["WaitTimeSeconds"], 0.1)})

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        self._check("delete", "DeleteMessageBatch")
        return await super().delete_message_batch(**kw)

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        self._check("visibility", "ChangeMessageVisibilityBatch")
        return await super().change_message_visibility_batch(**kw)

    async def send_message(self, **kw: Any) -> dict[str, Any]:
        if kw["QueueUrl"] == DLQ:
            self._check("dlq-send", "SendMessage")
        return await super().send_message(**kw)


@dataclass
class Handler:
    """Records what it sees; `flaky` fails its first call, `reject` is rejected, `slow` sleeps."""

    seen: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    handled: set[str] = field(default_factory=set)

    async def __call__(self, message: Message) -> None:
        calls = self.seen[message.message_id]
        calls.append(message.plaintext)
        kind = message.plaintext.split(b"-")[0]
        if kind == b"slow":
            await asyncio.sleep(SLOW_S)
        if kind == b"reject":
            raise HandlerRejected("order failed validation")
        if kind == b"flaky" and len(calls) == 1:
            raise RuntimeError("downstream unavailable")
        self.handled.add(message.message_id)


@dataclass
class Model:
    path: Path
    kms: FakeKMS = field(default_factory=FakeKMS)
    src: MemoryQueue = field(default_factory=lambda: MemoryQueue(SRC))
    dlq: MemoryQueue = field(default_factory=lambda: MemoryQueue(DLQ))
    handler: Handler = field(default_factory=Handler)
    good: dict[str, bytes] = field(default_factory=dict)  # message id -> plaintext
    bad: dict[str, str] = field(default_factory=dict)  # message id -> kind
    bodies: dict[str, str] = field(default_factory=dict)  # body -> message id
    sqs: FaultySQS = field(init=False)
    worker: Worker | None = None
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.sqs = FaultySQS(self.src, self.dlq)
        write_keyset(self.path, LIVE.record(self.kms), OTHER.record(self.kms))

    def _put(self, body: str, attributes: dict[str, dict[str, str]]) -> str:
        message_id = self.src.put(body, attributes)
        self.bodies[body] = message_id
        return message_id

    def send_good(self, kind: str) -> None:
        payload = f"{kind}-{len(self.bodies)}".encode()
        entry = LIVE.seal(payload)
        self.good[self._put(entry.body, entry.attributes)] = payload

    def send_bad(self, kind: str) -> None:
        payload = f"bad-{len(self.bodies)}".encode()
        if kind == "unknown-kid":
            entry = GONE.seal(payload)
            body, attributes = entry.body, entry.attributes
        elif kind == "wrong-kid":
            entry = LIVE.seal(payload)
            body = entry.body
            attributes = {**entry.attributes, ATTR_KEY_ID: {"DataType": "String", "StringValue": OTHER.kid}}
        else:
            entry = LIVE.seal(payload)
            token = bytearray(entry.body.encode())
            cut = token.rindex(b".") - 3  # inside the ciphertext
            token[cut] = ord("A") if token[cut] != ord("A") else ord("B")
            body, attributes = token.decode(), entry.attributes
        self.bad[self._put(body, attributes)] = kind

    def fault(self, name: str, on: bool) -> None:
        if name == "kms":
            self.kms.failing = "KMSInternalException" if on else None
        elif on:
            self.sqs.faults.add(name)
        else:
            self.sqs.faults.discard(name)

    def clear_faults(self) -> None:
        for name in FAULTS:
            self.fault(name, False)

    async def start(self) -> None:
        settings_ = WorkerSettings(
            queue_url=SRC,
            dlq_url=DLQ,
            keyset=str(self.path),
            handler="tests.component.test_model:unused",
            concurrency=4,
            max_in_flight=20,  # adaptive receiving (the default): one or two pollers
            wait_time_s=1,
            visibility_timeout_s=2,
            heartbeat_s=0.5,
            handler_timeout_s=2.0,
            max_attempts=3,
            backoff_base_s=0,
            backoff_max_s=0,
            shutdown_grace_s=0.2,
            keyset_refresh_s=60,
            crypto_threads=1,
        )
        tuning = Tuning(unknown_kid_refresh_min_s=0.0, kms_retry_s=0, empty_poll_pause_s=0.02)
        self.worker = Worker(
            settings_,
            self.handler,
            sqs=self.sqs,
            kms=self.kms,
            keystore=KeysetStore(self.path),
            tuning=tuning,
        )
        self.task = asyncio.create_task(self.worker.run())
        await asyncio.sleep(0)

    async def stop(self) -> None:
        if self.worker is None or self.task is None:
            return
        self.worker.stop()
        await asyncio.wait_for(self.task, 20)  # re-raises whatever the worker died of
        self.worker = self.task = None

    def time_passes(self) -> None:
        """Every lease of a stopped worker expires (instead of waiting out the timeout)."""
        for stored in self.src._invisible.values():
            stored.visible_at = 0.0
        self.src._expire_visibility(time.monotonic())

    async def drain(self) -> None:
        self.clear_faults()
        await self.stop()
        self.time_passes()
        await self.start()
        assert self.worker is not None
        deadline = time.monotonic() + 20
        while len(self.src) or self.worker.in_flight:
            assert time.monotonic() < deadline, f"not drained: {self.src.messages()}"
            assert self.task is not None and not self.task.done(), self.task
            await asyncio.sleep(0.02)
        await self.stop()

    def check(self) -> None:
        assert len(self.src) == 0, "the source queue must end empty"
        reasons: dict[str, set[str]] = defaultdict(set)
        for copy in self.dlq.messages():
            assert copy.body in self.bodies, "a DLQ copy of something never sent"
            reason = copy.attribute(ATTR_REASON)
            assert reason, "a DLQ copy without a sealq-reason"
            reasons[self.bodies[copy.body]].add(reason)
        seen = self.handler.seen
        for message_id, payload in self.good.items():
            assert set(seen.get(message_id, [payload])) == {payload}, "handler saw another plaintext"
            assert message_id in self.handler.handled or reasons[message_id], f"{payload!r} was lost"
            if payload.startswith(b"reject"):
                assert reasons[message_id] == {Reason.HANDLER_REJECTED.value}
        for message_id, kind in self.bad.items():
            assert message_id not in seen, f"the handler saw a {kind} message that cannot open"
            assert reasons[message_id] == {BAD[kind].value}, (kind, reasons[message_id])
        for message_id, found in reasons.items():
            if Reason.HANDLER_REJECTED.value in found:
                assert message_id in seen, "dead-lettered as handler-rejected unseen by the handler"


Step = tuple[Any, ...]
steps = st.one_of(
    st.tuples(st.just("good"), st.sampled_from(GOOD), st.integers(1, 3)),
    st.tuples(st.just("bad"), st.sampled_from(sorted(BAD))),
    st.tuples(st.just("fault"), st.sampled_from(FAULTS), st.booleans()),
    st.tuples(st.just("restart")),
    st.tuples(st.just("wait"), st.sampled_from([0.01, 0.05, 0.2])),
)


async def scenario(faults: set[str], schedule: list[Step], path: Path) -> None:
    model = Model(path)
    for name in sorted(faults):
        model.fault(name, True)
    await model.start()
    try:
        for step in schedule:
            match step:
                case ("good", kind, count):
                    for _ in range(count):
                        model.send_good(kind)
                case ("bad", kind):
                    model.send_bad(kind)
                case ("fault", name, on):
                    model.fault(name, on)
                case ("restart",):
                    await model.stop()
                    await model.start()
                case ("wait", seconds):
                    await asyncio.sleep(seconds)
            await asyncio.sleep(0.01)  # let the worker move between steps
        await model.drain()
    finally:
        model.clear_faults()
        await model.stop()
    model.check()


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,  # the same examples on every run and machine: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.sets(st.sampled_from(FAULTS)), st.lists(steps, min_size=3, max_size=14))
def test_nothing_lost_and_no_unopened_message_reaches_the_handler(
    faults: set[str], schedule: list[Step]
) -> None:
    """`faults`: what fails from the start; `schedule`: what happens next, in order."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(faults, schedule, Path(tmp) / "keyset.json"))
