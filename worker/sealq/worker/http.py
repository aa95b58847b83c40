"""The worker's one HTTP port: /healthz, /readyz and /metrics (Prometheus text format).

A few lines on asyncio.start_server rather than a web framework: three GET routes, no
request bodies, served from the worker's own loop, so /healthz answering at all proves the
loop is alive. Metrics are rendered by prometheus-client from the worker's counters at
scrape time; nothing is added to the per-message path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sealq.worker.logs import event

if TYPE_CHECKING:
    from sealq.worker.pool import Worker

STARTUP_S = 60.0
"""/healthz stays green this long before the first poll has to have completed."""


_REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
log = logging.getLogger("sealq.worker")


class WorkerCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        w, s = self.worker, self.worker.stats
        for name, doc, value in (
            ("sealq_received", "Messages received from SQS", s.received),
            ("sealq_handled", "Messages the handler finished (then deleted)", s.handled),
            ("sealq_retries", "Messages left for redelivery with a visibility backoff", s.retried),
            ("sealq_released", "Messages handed back unstarted at shutdown", s.released),
            ("sealq_ack_failures", "Deletes SQS refused (the message will come again)", s.ack_failures),
            (
                "sealq_dead_letter_unfit",
                "Deliveries too large for any DLQ copy with a reason (left to the redrive policy)",
                s.dead_letter_unfit,
            ),
            ("sealq_kms_decrypt_calls", "KMS Decrypt calls to unwrap private keys", w.keys.decrypt_calls),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        dead = CounterMetricFamily(
            "sealq_dead_lettered", "Messages sent to the DLQ", labels=["reason", "kid"]
        )
        for (reason, kid), count in sorted(s.dead_lettered.items()):
            dead.add_metric([reason, kid], count)
        yield dead
        kms = CounterMetricFamily(
            "sealq_kms_errors", "Failed KMS Decrypt calls by error code", labels=["code"]
        )
        for code, count in sorted(w.keys.kms_errors.items()):
            kms.add_metric([code], count)
        yield kms
        yield GaugeMetricFamily("sealq_key_cache_entries", "Unwrapped keys held", value=len(w.keys))
        yield GaugeMetricFamily("sealq_in_flight", "Received, not yet finished", value=w.in_flight)
        yield GaugeMetricFamily(
            "sealq_pollers", "Concurrent ReceiveMessage loops now (adaptive receiving)", value=w.pollers
        )
        yield GaugeMetricFamily("sealq_ready", "1 while ready for work", value=1 if w.ready else 0)
        for name, doc, hist in (
            ("sealq_handler_seconds", "Handler call duration", s.handler_seconds),
            ("sealq_poll_seconds", "ReceiveMessage call duration", s.poll_seconds),
        ):
            yield HistogramMetricFamily(name, doc, buckets=hist.cumulative(), sum_value=hist.total)


class HealthServer:
    def __init__(self, worker: Worker, host: str, port: int) -> None:
        self.worker = worker
        self.host, self.port = host, port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WorkerCollector(worker))
        self._server: asyncio.Server | None = None
        self._started = time.monotonic()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def healthy(self) -> tuple[bool, str]:
        last = self.worker.last_poll_at
        limit = self.worker.settings.wait_time_s + 30.0
        now = time.monotonic()
        if last is None:
            ok = now - self._started < STARTUP_S
            return ok, "starting" if ok else "no poll has completed"
        if now - last > limit and not self.worker.draining:
            return False, f"no poll completed for {now - last:.0f}s"
        return True, "ok"

    def route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            ok, why = self.healthy()
            return (200 if ok else 503), "text/plain", why.encode() + b"\n"
        if path == "/readyz":
            if self.worker.ready:
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", (b"draining\n" if self.worker.draining else b"keyset not loaded\n")
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.registry)
        return 404, "text/plain", b"not found: try /healthz, /readyz or /metrics\n"

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[int, list[str]]:
        """(0, request line words), or an error status for a line over the reader's limit
        (64 KiB): 414 for the request line, 431 for a header."""
        try:
            request = await reader.readline()
        except ValueError:  # asyncio's LimitOverrunError, as readline reports it
            return 414, []
        try:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
        except ValueError:
            return 431, []
        return 0, request.decode("latin-1").split()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                refused, parts = await self._read_request(reader)
            if refused:
                event(log, logging.WARNING, "http request refused", status=refused, why=_REASONS[refused])
                status, ctype, body = refused, "text/plain", _REASONS[refused].lower().encode() + b"\n"
            elif len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"only GET\n"
            else:
                status, ctype, body = self.route(parts[1].split("?", 1)[0])
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (body if parts[:1] != ["HEAD"] else b""))
            await writer.drain()
            if refused:
                await _discard(reader, writer)
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()


async def _discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After refusing a request whose rest is still arriving: end our side, then read and
    drop what the client still sends (bounded), so closing does not reset the connection
    before the client has read the answer."""
    writer.write_eof()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(1):
            for _ in range(64):
                if not await reader.read(65536):
                    break


def probe(url: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """GET `url` (for `sealq health`, a container HEALTHCHECK that needs no curl)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback probe
            return True, response.read().decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read().decode('utf-8', 'replace').strip()}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"cannot reach {url}: {getattr(exc, 'reason', exc)}"
