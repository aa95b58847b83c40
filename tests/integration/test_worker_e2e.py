"""The worker end to end against the local AWS stand-in over HTTP: `sealq run` as a real
process (SIGTERM, SIGKILL), a KMS outage through a loopback proxy, and what reaches the logs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.aws.clients import client
from sealq.demo.standin import HOME_ENV, StandIn
from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_KEY_ID
from sealq.envelope.jwe import seal_at
from sealq.keys.keyset import KeyRecord, Keyset, KeySpec
from sealq.keys.kms import create_key, decrypt_request, load_private_key
from sealq.keys.store import KeysetStore
from sealq.worker.app import open_clients
from sealq.worker.handler import Message
from sealq.worker.pool import Tuning, Worker
from sealq.worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]

HANDLER_SOURCE = """
import asyncio, os
from sealq.worker.handler import HandlerRejected

OUT = os.environ["E2E_HANDLED"]
DELAY = float(os.environ.get("E2E_DELAY", "0"))

async def handle(message):
    text = message.plaintext.decode()
    if text.startswith("reject"):
        raise HandlerRejected("rejected by the test handler")
    await asyncio.sleep(DELAY)
    with open(OUT, "a") as f:
        f.write(text.split("|")[0] + "\\n")
"""


@dataclass
class Setup:
    sqs: Any
    kms: Any
    queue_url: str
    dlq_url: str
    record: KeyRecord
    keyset: Path
    handled: Path
    tmp: Path

    def send(self, texts: list[str]) -> list[str]:
        """Seal each text under our key and send it; returns the bodies."""
        key = self.record.sealing_key()
        bodies = [seal_at(t.encode(), key, time.time()).decode() for t in texts]
        self.send_bodies(bodies, self.record.kid)
        return bodies

    def send_bodies(self, bodies: list[str], kid: str) -> None:
        attrs = {
            ATTR_KEY_ID: {"DataType": "String", "StringValue": kid},
            ATTR_CLIENT_ID: {"DataType": "String", "StringValue": "e2e"},
        }
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            response = self.sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": b, "MessageAttributes": attrs} for i, b in enumerate(chunk)
                ],
            )
            assert not response.get("Failed"), response["Failed"]

    def handled_ids(self) -> list[str]:
        if not self.handled.exists():
            return []
        return [line for line in self.handled.read_text().splitlines() if line]

    def depth(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def visible(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]
        return int(attrs["ApproximateNumberOfMessages"])

    def receive_each(self, url: str, expected: int, rounds: int, **request: Any) -> dict[str, dict[str, Any]]:
        """Receive until `expected` distinct messages were seen (at most `rounds` calls), hiding
        them for the request's VisibilityTimeout; message id -> the newest copy received."""
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(rounds):
            if len(seen) >= expected:
                break
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **request)
            seen.update((m["MessageId"], m) for m in got.get("Messages", []))
        return seen

    def in_process_settings(self) -> WorkerSettings:
        """Settings for a Worker run inside the test (its handler is passed directly)."""
        return WorkerSettings(
            queue_url=self.queue_url,
            dlq_url=self.dlq_url,
            keyset=str(self.keyset),
            handler="unused:handle",
            concurrency=4,
            wait_time_s=1,
            visibility_timeout_s=30,
            heartbeat_s=5,
            shutdown_grace_s=5,
        )

    def run_args(self, **flags: object) -> list[str]:
        values: dict[str, object] = {
            "queue-url": self.queue_url,
            "dlq-url": self.dlq_url,
            "keyset": self.keyset,
            "handler": "e2e_handler:handle",
            "concurrency": 4,
            "wait-time-s": 1,
            "visibility-timeout-s": 30,
            "heartbeat-s": 5,
            "shutdown-grace-s": 10,
            "log-format": "json",
            **flags,
        }
        args = [sys.executable, "-m", "sealq.cli", "run"]
        for name, value in values.items():
            args += [f"--{name}", str(value)]
        return args


@pytest.fixture
def setup(aws_env: str, tmp_path: Path) -> Setup:
    sqs, kms = client("sqs"), client("kms")
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    queue_url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    cmk = kms.create_key(Description="sealq e2e")["KeyMetadata"]["Arn"]
    now = datetime.now(UTC)
    record = create_key(kms, cmk=cmk, spec=KeySpec.ECC_NIST_P256, lifetime=timedelta(days=1), now=now)
    keyset = tmp_path / "keyset.json"
    KeysetStore(keyset).save(Keyset().with_record(record))
    (tmp_path / "e2e_handler.py").write_text(HANDLER_SOURCE)
    return Setup(sqs, kms, queue_url, dlq_url, record, keyset, tmp_path / "handled.txt", tmp_path)


def child_env(s: Setup, delay: float = 0.0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALQ_")}
    env["PYTHONPATH"] = os.pathsep.join([str(s.tmp), str(REPO)])
    env["E2E_HANDLED"] = str(s.handled)
    env["E2E_DELAY"] = str(delay)
    return env


class Run:
    """A `sealq run` process whose output goes to files (a full pipe would block it)."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.proc = proc
        self._out, self._err = out, err

    @property
    def stdout(self) -> str:
        return self._out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self._err.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


@contextlib.contextmanager
def worker_process(s: Setup, *, delay: float = 0.0, **flags: object) -> Iterator[Run]:
    tag = uuid.uuid4().hex[:6]
    out, err = s.tmp / f"run-{tag}.out", s.tmp / f"run-{tag}.err"
    with out.open("wb") as out_file, err.open("wb") as err_file:
        proc = subprocess.Popen(
            s.run_args(**flags), env=child_env(s, delay), cwd=s.tmp, stdout=out_file, stderr=err_file
        )
    run = Run(proc, out, err)
    try:
        yield run
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def wait_for(cond: Callable[[], bool], timeout: float, what: str, run: Run | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if run is not None and run.proc.poll() is not None:
            raise AssertionError(
                f"worker exited {run.proc.returncode} while waiting for {what}:\n{run.stderr[-3000:]}"
            )
        if time.monotonic() > deadline:
            tail = f"; worker log:\n{run.stderr[-4000:]}" if run is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(0.05)


# ----- B1: SIGTERM mid-stream ------------------------------------------------------------


def test_sigterm_finishes_running_handlers_and_releases_the_rest(setup: Setup) -> None:
    s = setup
    ids = [f"t{i}" for i in range(60)]
    s.send(ids)
    with worker_process(s, delay=0.4, concurrency=6) as first:
        wait_for(lambda: len(s.handled_ids()) >= 8, 30, "first handled messages", first)
        stopped = time.monotonic()
        code = first.stop(timeout=10 + 5)
        took = time.monotonic() - stopped
        err = first.stderr
    assert code == 0, err[-3000:]
    assert took < 10 + 3
    before = Counter(s.handled_ids())
    assert len(before) < 60 and set(before.values()) == {1}
    stop_event = [json.loads(line) for line in err.splitlines() if '"worker stopped"' in line]
    assert stop_event and stop_event[0]["unfinished_handlers"] == 0
    assert stop_event[0]["released"] > 0
    # Released messages are visible again at once (visibility timeout is 30 s): a second
    # worker finishes the rest long before any of them could have reappeared by timeout.
    with worker_process(s, delay=0.0) as second:
        wait_for(lambda: len(s.handled_ids()) >= 60, 20, "the rest handled", second)
        wait_for(lambda: s.depth(s.queue_url) == 0, 10, "queue drained", second)
        assert second.stop() == 0
    after = Counter(s.handled_ids())
    assert set(after) == set(ids)  # nothing lost
    assert set(after.values()) == {1}  # nothing handled twice
    assert s.depth(s.dlq_url) == 0


# ----- B2: SIGKILL mid-stream ------------------------------------------------------------


def test_sigkill_then_restart_loses_nothing(setup: Setup) -> None:
    s = setup
    ids = [f"k{i}" for i in range(40)]
    s.send(ids)
    flags: dict[str, object] = {"visibility-timeout-s": 3, "heartbeat-s": 1, "concurrency": 4}
    with worker_process(s, delay=0.3, **flags) as first:
        wait_for(lambda: len(s.handled_ids()) >= 5, 30, "first handled messages", first)
        first.stop(signal.SIGKILL, timeout=5)
    assert len(set(s.handled_ids())) < 40
    with worker_process(s, delay=0.0, **flags) as second:
        wait_for(lambda: set(s.handled_ids()) == set(ids), 25, "every message handled", second)
        wait_for(lambda: s.depth(s.queue_url) == 0, 10, "queue drained", second)
        assert second.stop() == 0
    assert s.depth(s.dlq_url) == 0  # a crash is never a reason to dead-letter


# ----- B3: KMS unreachable for a while -------------------------------------------------------


class Proxy:
    """A loopback TCP forwarder that can be taken down (port closed) and brought back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._conns):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._conns.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._conns.difference_update((writer, up_writer))


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)


async def test_kms_outage_keeps_messages_until_kms_is_back(
    setup: Setup, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup
    proxy = Proxy(standin.port)
    await proxy.up()
    await proxy.down()  # KMS unreachable from the start: the port refuses connections
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", f"http://127.0.0.1:{proxy.port}")
    ids = [f"o{i}" for i in range(20)]
    s.send(ids)
    seen: list[str] = []

    async def handle(message: Message) -> None:
        seen.append(message.plaintext.decode())

    settings = s.in_process_settings()
    async with AsyncExitStack() as stack:
        sqs, kms = await open_clients(stack)
        worker = Worker(
            settings, handle, sqs=sqs, kms=kms, keystore=KeysetStore(s.keyset), tuning=Tuning(kms_retry_s=1)
        )
        async with running(worker):
            deadline = time.monotonic() + 20
            while worker.stats.retried < 40:  # every message bounced off KMS twice
                assert time.monotonic() < deadline, f"only {worker.stats.retried} retries"
                await asyncio.sleep(0.1)
            assert not seen
            assert await asyncio.to_thread(s.depth, s.dlq_url) == 0
            assert await asyncio.to_thread(s.depth, s.queue_url) == 20
            await proxy.up()
            deadline = time.monotonic() + 20
            while len(seen) < 20:
                assert time.monotonic() < deadline, f"{len(seen)} handled after KMS came back"
                await asyncio.sleep(0.1)
    await proxy.down()
    assert sorted(seen) == sorted(ids)
    assert worker.stats.dead_lettered_total == 0
    assert s.depth(s.dlq_url) == 0 and s.depth(s.queue_url) == 0


# ----- B4: nothing secret in the logs ----------------------------------------------------------


def _secrets_in(text: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n in text]


FORBIDDEN = ["PRIVATE KEY", "BEGIN", "MII", "MIG", "MIH"]
"""PEM markers, and how base64 of a PKCS#8 private key starts: MII (RSA), MIG (P-256), MIH (P-384)."""


def _encodings(raw: bytes) -> list[str]:
    """How `raw` could reach a log line: base64 (standard and url-safe), hex, the Python
    repr a `%s` of a boto3 response shows (also as a JSON log line escapes it): each whole
    and as two 32-character windows, so a truncated or re-wrapped copy is still found."""
    forms = [
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
        raw.hex().upper(),
        repr(raw)[2:-1],
    ]
    windows = [f for form in forms for f in (form, form[8:40], form[len(form) // 2 : len(form) // 2 + 32])]
    return sorted({w for f in windows for w in (f, json.dumps(f)[1:-1])})


def _key_material(s: Setup) -> list[str]:
    """This run's private key in every form the worker handles it: the wrapped blob from the
    keyset, the DER KMS Decrypt returns (what the worker unwraps), its PKCS#8 re-encoding
    and the private scalar."""
    wrapped = s.record.wrapped_private_key
    assert wrapped is not None
    der = s.kms.decrypt(**decrypt_request(s.record))["Plaintext"]
    key = load_private_key(s.record, der).private_key
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value
    needles = [wrapped, *_encodings(base64.b64decode(wrapped)), *_encodings(der), *_encodings(pkcs8)]
    needles += [*_encodings(scalar.to_bytes(32, "big")), str(scalar)[10:40]]
    return needles


def test_run_logs_carry_no_plaintext_keys_or_bodies(setup: Setup) -> None:
    s = setup
    secret = uuid.uuid4().hex
    texts = [f"p{i}|card {secret}-{i}" for i in range(8)] + [f"reject|{secret}-r"]
    bodies = s.send(texts)
    plain_body = f"plaintext sent by mistake {secret}"
    tampered = bodies[0][:-30] + ("A" if bodies[0][-30] != "A" else "B") + bodies[0][-29:]
    s.send_bodies([plain_body, tampered], s.record.kid)
    with worker_process(s, **{"log-level": "debug"}) as proc:
        wait_for(lambda: len(s.handled_ids()) >= 8 and s.depth(s.dlq_url) == 3, 20, "all outcomes", proc)
        assert proc.stop() == 0
        logs = proc.stdout + proc.stderr
    assert '"handled"' in logs and '"dead-lettered"' in logs  # debug logging really was on
    needles = [secret, plain_body, tampered, *bodies, *FORBIDDEN, s.record.public_key[:40]]
    needles += [part for b in bodies for part in b.split(".") if len(part) >= 20]
    needles += _key_material(s)
    assert _secrets_in(logs, needles) == []


def test_demo_succeeds_and_its_logs_carry_no_secrets(standin: StandIn, tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEALQ_", "AWS_"))}
    env[HOME_ENV] = str(standin.home)  # reuse the installed stand-in
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "sealq.cli", "demo", "--report", str(report_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] is True, report["problems"]
    log_text = Path(report["worker_log"]).read_text()
    assert '"dead-lettered"' in log_text  # the log is the real one, with events in it
    everything = log_text + proc.stdout + proc.stderr
    # The demo's plaintexts are JSON orders with SKUs; none may appear anywhere.
    assert _secrets_in(everything, [*FORBIDDEN, "SKU-", '"sku"', '"qty"', '"via"']) == []


def _free_port_pair() -> int:
    """A loopback port p with p + 1 free too: process i of `--processes` serves p + i."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two adjacent free loopback ports")


def test_processes_share_the_queue_and_stop_together(setup: Setup) -> None:
    """`sealq run --processes 2`: both children consume (one KMS Decrypt each), every message
    is handled once, and one SIGTERM to the supervisor stops both children with exit 0."""
    texts = [f"multi-{i}" for i in range(60)]
    setup.send(texts)
    port = _free_port_pair()
    flags = {"log-level": "info", "metrics-port": port}
    with worker_process(setup, delay=0.05, processes=2, **flags) as run:
        wait_for(lambda: len(setup.handled_ids()) == len(texts), 60, "both processes to drain", run)
        for child_port in (port, port + 1):  # process i serves metrics on port + i
            health = subprocess.run(
                [sys.executable, "-m", "sealq.cli", "health", "--port", str(child_port)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert health.returncode == 0, health.stderr
        assert run.stop(timeout=30) == 0
    assert Counter(setup.handled_ids()) == Counter(texts)
    started = [json.loads(line) for line in run.stderr.splitlines() if '"worker started"' in line]
    stopped = [json.loads(line) for line in run.stderr.splitlines() if '"worker stopped"' in line]
    assert len(started) == 2 and len(stopped) == 2
    assert setup.depth(setup.dlq_url) == 0
