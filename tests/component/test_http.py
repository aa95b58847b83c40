"""/healthz, /readyz and /metrics of a running worker, read over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.producer.message import OutgoingMessage, build_entry
from sealq.testing.kms import FakeKMS, record_for, write_keyset
from sealq.testing.sqs import MemoryQueue, MemorySQS
from sealq.worker.handler import HandlerRejected, Message
from sealq.worker.http import HealthServer
from sealq.worker.pool import Worker
from sealq.worker.settings import WorkerSettings


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def _fetch(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(_get, port, path)


def _metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in metrics")


async def test_endpoints_answer_and_metrics_match_what_happened(tmp_path: Path) -> None:
    kms = FakeKMS()
    record = record_for(kms, ec.generate_private_key(ec.SECP256R1()), "http-p256")
    store = write_keyset(tmp_path / "keyset.json", record)
    queue, dlq = MemoryQueue("q"), MemoryQueue("dlq")
    for i in range(25):
        entry = build_entry(
            i, OutgoingMessage(b"reject" if i < 3 else b"ok"), record.sealing_key(), time.time()
        )
        queue.put(entry.body, entry.attributes)
    queue.put("garbage", {"key-id": {"DataType": "String", "StringValue": "http-p256"}})
    release = asyncio.Event()

    async def handle(message: Message) -> None:
        if message.plaintext == b"reject":
            raise HandlerRejected("no")
        await release.wait()

    settings = WorkerSettings(
        queue_url="q",
        dlq_url="dlq",
        keyset=str(tmp_path / "keyset.json"),
        handler="x:y",
        wait_time_s=1,
        shutdown_grace_s=5,
    )
    worker = Worker(settings, handle, sqs=MemorySQS(queue, dlq), kms=kms, keystore=store)
    server = HealthServer(worker, "127.0.0.1", 0)
    port = await server.start()
    try:
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 10
        while (worker.stats.dead_lettered_total < 4 or worker.in_flight > 22) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert await _fetch(port, "/healthz") == (200, "ok\n")
        assert await _fetch(port, "/readyz") == (200, "ready\n")
        status, text = await _fetch(port, "/metrics")
        assert status == 200
        assert _metric(text, 'sealq_dead_lettered_total{kid="http-p256",reason="handler-rejected"}') == 3
        assert _metric(text, 'sealq_dead_lettered_total{kid="http-p256",reason="malformed"}') == 1
        assert _metric(text, "sealq_kms_decrypt_calls_total") == 1
        assert _metric(text, "sealq_key_cache_entries") == 1
        assert _metric(text, "sealq_in_flight") == 22  # handlers held open by `release`
        assert _metric(text, "sealq_pollers") == worker.pollers >= 1  # the Grafana panel's name
        release.set()
        while worker.stats.handled < 22 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        status, text = await _fetch(port, "/metrics")
        assert _metric(text, "sealq_handled_total") == 22
        assert _metric(text, "sealq_received_total") == 26
        assert _metric(text, "sealq_handler_seconds_count") == 25
        worker.stop()
        # While draining, readiness turns off at once.
        assert (await _fetch(port, "/readyz"))[0] == 503
        await task
        assert (await _fetch(port, "/nope"))[0] == 404
    finally:
        await server.stop()


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    return answer


async def test_an_over_long_request_is_answered_and_logged_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kms = FakeKMS()
    store = write_keyset(
        tmp_path / "keyset.json", record_for(kms, ec.generate_private_key(ec.SECP256R1()), "k")
    )
    settings = WorkerSettings(
        queue_url="q", dlq_url="dlq", keyset=str(tmp_path / "keyset.json"), handler="x:y"
    )
    worker = Worker(
        settings,
        lambda m: asyncio.sleep(0),
        sqs=MemorySQS(MemoryQueue("q"), MemoryQueue("dlq")),
        kms=kms,
        keystore=store,
    )
    server = HealthServer(worker, "127.0.0.1", 0)
    port = await server.start()
    caplog.set_level(logging.DEBUG)
    try:
        long_line = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert (await _raw(port, long_line)).startswith(b"HTTP/1.1 414 URI Too Long\r\n")
        long_header = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n"
        assert (await _raw(port, long_header)).startswith(b"HTTP/1.1 431 ")
        assert (await _fetch(port, "/healthz"))[0] == 200  # still serving
    finally:
        await server.stop()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    refused = [r for r in caplog.records if r.getMessage() == "http request refused"]
    assert [r.sealq["status"] for r in refused] == [414, 431]  # type: ignore[attr-defined]
    assert "Traceback" not in caplog.text
