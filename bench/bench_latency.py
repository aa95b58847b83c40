"""Latency hiding: what SQS's round trip costs a worker with default settings.

Run through bench/worker.py (`--only latency`, `--only latency_standin`).

- memory: end-to-end rate with 0, 20 and 50 ms added to every SQS call (MemorySQS.delay_s),
  each as a ratio to the 0 ms rate of the same round; interleaved rounds, medians.
- standin: the same through bench/delay_proxy.py in front of the stand-in (one proxy process
  per delay, 0 ms included, so the ratio isolates the added latency, not the proxy).
- idle: ReceiveMessage calls per minute on an empty queue (in memory, counted exactly).
- burst: the poller count over a burst arriving on an idle queue, then going idle again.

Every run uses WorkerSettings' defaults; only the queue, keyset and handler are given.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bench_common import PAYLOAD, fill, make_key, noop
from sealq.keys.keyset import KeyRecord
from sealq.keys.store import KeysetStore
from sealq.testing import FakeKMS, MemoryQueue, MemorySQS, record_for, write_keyset
from sealq.worker import Worker, WorkerSettings

DELAYS_MS = (0, 20, 50)
AIMS = {20: 0.8, 50: 0.7}
EXTRA = 300
"""Messages beyond the measured count, so no poll parks in a long poll before the count is
reached (a stop would wait for it) and the tail is measured at full speed."""


def default_settings(queue_url: str, dlq_url: str, keyset: str) -> WorkerSettings:
    return WorkerSettings(queue_url=queue_url, dlq_url=dlq_url, keyset=keyset, handler="bench:handle")


def pollers_now(worker: Worker) -> int:
    """Concurrent receives the worker runs now (a fixed count on a worker without adaptation)."""
    value = getattr(worker, "pollers", None)
    return int(value) if value is not None else worker.settings.pollers or 0


async def _timed_drain(worker: Worker, count: int) -> dict[str, Any]:
    """Run until `count` are handled; the rate from start (ramp-up included) and peak pollers."""
    start = time.perf_counter()
    task = asyncio.create_task(worker.run())
    peak = 0
    while worker.stats.handled < count and not task.done():
        peak = max(peak, pollers_now(worker))
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    worker.stop()
    await task
    return {"rate": count / elapsed, "peak_pollers": peak}


# ----- in memory ----------------------------------------------------------------------------


def memory_once(
    record: KeyRecord, kms: FakeKMS, store: KeysetStore, delay_ms: int, count: int
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        queue, dlq = MemoryQueue("q"), MemoryQueue("dlq")
        fill(queue, record, count + EXTRA)
        sqs = MemorySQS(queue, dlq, delay_s=delay_ms / 1000)
        worker = Worker(default_settings("q", "dlq", "unused"), noop, sqs=sqs, kms=kms, keystore=store)
        return await _timed_drain(worker, count)

    return asyncio.run(main())


def _ratios(runs: dict[int, list[dict[str, Any]]], count: int) -> dict[str, Any]:
    """Per-round ratios to that round's 0 ms rate, then medians."""
    out: dict[str, Any] = {"messages": count, "rounds": len(runs[0])}
    for delay in DELAYS_MS:
        rates = [r["rate"] for r in runs[delay]]
        out[f"{delay}ms_per_s"] = round(statistics.median(rates))
        out[f"{delay}ms_peak_pollers"] = max(r["peak_pollers"] for r in runs[delay])
        if delay:
            ratios = [r["rate"] / base["rate"] for r, base in zip(runs[delay], runs[0], strict=True)]
            out[f"{delay}ms_ratio"] = round(statistics.median(ratios), 3)
            out[f"{delay}ms_aim"] = AIMS[delay]
    return out


def latency_memory(quick: bool, workdir: Path) -> dict[str, Any]:
    kms = FakeKMS()
    record = record_for(kms, make_key("P-256"), "latency-p256")
    store = write_keyset(workdir / "latency.json", record)
    count = 3000 if quick else 10000
    runs: dict[int, list[dict[str, Any]]] = {d: [] for d in DELAYS_MS}
    for _ in range(1 if quick else 3):
        for delay in DELAYS_MS:
            runs[delay].append(memory_once(record, kms, store, delay, count))
    return {**_ratios(runs, count), "sqs": "in memory, delay added to every call", "alg": "P-256"}


# ----- idle and burst -----------------------------------------------------------------------


def idle_and_burst(quick: bool, workdir: Path) -> dict[str, Any]:
    """A worker on an idle queue (20 ms SQS): calls per minute; then a burst arrives: the
    poller count over time, and the calls per minute once it is idle again."""

    async def main() -> dict[str, Any]:
        kms = FakeKMS()
        record = record_for(kms, make_key("P-256"), "burst-p256")
        store = write_keyset(workdir / "burst.json", record)
        queue, dlq = MemoryQueue("q"), MemoryQueue("dlq")
        sqs = MemorySQS(queue, dlq, delay_s=0.02)
        worker = Worker(default_settings("q", "dlq", "unused"), noop, sqs=sqs, kms=kms, keystore=store)
        idle_s = 40.0 if quick else 60.0
        burst = 3000 if quick else 10000
        calls = lambda: queue.calls.get("ReceiveMessage", 0)  # noqa: E731
        task = asyncio.create_task(worker.run())
        start = time.perf_counter()
        await asyncio.sleep(idle_s)
        idle_calls = calls()
        table: list[dict[str, Any]] = []

        def sample(at: float) -> None:
            table.append(
                {
                    "t_s": round(at - start, 2),
                    "pollers": pollers_now(worker),
                    "handled": worker.stats.handled,
                    "in_queue": len(queue._ready),
                }
            )

        fill(queue, record, burst)
        burst_at = time.perf_counter()
        while worker.stats.handled < burst:
            sample(time.perf_counter())
            await asyncio.sleep(0.05)
        drained_at = time.perf_counter()
        sample(drained_at)
        after_calls = calls()
        for _ in range(int(idle_s // 5)):
            await asyncio.sleep(5)
            sample(time.perf_counter())
        after_idle = calls() - after_calls
        worker.stop()
        await task
        return {
            "sqs": "in memory, 20 ms per call",
            "idle_window_s": idle_s,
            "idle_receive_calls": idle_calls,
            "idle_requests_per_minute": round(idle_calls * 60 / idle_s, 1),
            "after_burst_window_s": idle_s,
            "after_burst_receive_calls": after_idle,
            "after_burst_requests_per_minute": round(after_idle * 60 / idle_s, 1),
            "burst_messages": burst,
            "burst_drain_s": round(drained_at - burst_at, 2),
            "burst_per_s": round(burst / (drained_at - burst_at)),
            "table": _thin(table),
        }

    return asyncio.run(main())


def _thin(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows where the poller count changed, plus first and last: a small table."""
    out = [table[0]]
    for row in table[1:-1]:
        if row["pollers"] != out[-1]["pollers"]:
            out.append(row)
    return [*out, table[-1]] if table[-1] is not out[-1] else out


# ----- the stand-in behind a delaying proxy -------------------------------------------------


def _proxy(upstream: int, delay_ms: int) -> tuple[subprocess.Popen[str], int]:
    here = Path(__file__).resolve().parent
    command = [sys.executable, str(here / "delay_proxy.py"), "--upstream", str(upstream)]
    proc = subprocess.Popen(
        [*command, "--delay-ms", str(delay_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # killed at the end: asyncio's complaints about it are noise
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(json.loads(proc.stdout.readline())["port"])


def _standin_once(
    setup: dict[str, Any], port: int, count: int, name: str, **over: Any
) -> dict[str, Any]:
    from sealq.producer.sync_producer import Producer

    sqs = setup["sqs"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    producer = Producer(queue, {"keys": [setup["record"].jwk()]}, sqs_client=sqs)
    sent = producer.send_batch(PAYLOAD for _ in range(count + EXTRA))
    assert sent.ok, sent.failed[:1]

    async def main() -> dict[str, Any]:
        os.environ["AWS_ENDPOINT_URL_SQS"] = f"http://127.0.0.1:{port}"
        try:
            from sealq.worker.app import open_clients

            async with AsyncExitStack() as stack:
                settings = default_settings(queue, setup["dlq"], "unused")
                if over:
                    settings = settings.model_copy(update=over)
                try:
                    client, kms = await open_clients(stack, settings)  # as `sealq run` makes them
                except TypeError:  # a worker from before adaptive receiving: one signature
                    client, kms = await open_clients(stack)  # type: ignore[call-arg, unused-ignore]
                worker = Worker(settings, noop, sqs=client, kms=kms, keystore=setup["store"])
                return await _timed_drain(worker, count)
        finally:
            os.environ.pop("AWS_ENDPOINT_URL_SQS", None)

    try:
        return asyncio.run(main())
    finally:
        sqs.delete_queue(QueueUrl=queue)


def latency_standin(quick: bool, workdir: Path) -> dict[str, Any]:
    from bench_standin import _standin_setup
    from sealq.demo.standin import StandIn

    count = 1000 if quick else 3000
    with StandIn() as standin:
        os.environ.update(standin.env())
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_KMS"):
            os.environ.pop(name, None)
        setup = _standin_setup(workdir)
        proxies = {d: _proxy(standin.port, d) for d in DELAYS_MS}
        try:
            runs: dict[int, list[dict[str, Any]]] = {d: [] for d in DELAYS_MS}
            direct: list[float] = []
            fixed_two: list[float] = []  # the old default, --pollers 2, at 0 ms
            for round_ in range(1 if quick else 3):
                for delay in DELAYS_MS:
                    port = proxies[delay][1]
                    runs[delay].append(_standin_once(setup, port, count, f"lat-{round_}-{delay}"))
                direct.append(_standin_once(setup, standin.port, count, f"lat-{round_}-direct")["rate"])
                two = _standin_once(setup, proxies[0][1], count, f"lat-{round_}-two", pollers=2)
                fixed_two.append(two["rate"])
        finally:
            for proc, _ in proxies.values():
                proc.kill()
                proc.wait()
    return {
        **_ratios(runs, count),
        "no_proxy_per_s": round(statistics.median(direct)),
        "pollers_2_0ms_per_s": round(statistics.median(fixed_two)),
        "20ms_vs_best_0ms": round(
            statistics.median(r["rate"] for r in runs[20])
            / max(statistics.median(r["rate"] for r in runs[0]), statistics.median(fixed_two)),
            3,
        ),
        "sqs": "ministack behind bench/delay_proxy.py (no_proxy: the same without the proxy)",
        "alg": "P-256",
    }
