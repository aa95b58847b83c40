"""Worker benchmarks. Every figure comes with its reference, measured in the same run.

    python bench/worker.py            # everything, ~2-4 minutes on 2 cores
    python bench/worker.py --quick    # smaller counts, for a smoke run
    python bench/worker.py --quick --only kms_single_flight   # one part (repeatable)

Needs only an installed sealq[worker] (its test kit, sealq.testing, provides the in-memory
SQS and fake KMS), never the repository's tests/. bench_common.py holds what the parts share,
bench_standin.py the figures against the stand-in.

Prints one JSON document:
- pool_vs_limit: decrypt-and-dispatch through the real Worker (in-memory SQS, no network)
  vs the crypto limit on all cores (the same primitives in a tight loop, one process per
  core), for P-256 and RSA-4096, with one worker process and with one per core
  (`sealq run --processes`); interleaved rounds, medians. The one-process rows also give
  `one_core_ratio`: against the loop in one process, run right after each pool run.
- kms_single_flight: KMS Decrypt calls when 1,000 messages under one new kid arrive at once.
- loop_lag: event-loop lag p99 while RSA-4096 messages are opened and a new RSA-4096 key is
  unwrapped under that load.
- rss: peak RSS of a worker process draining 10,000 and 100,000 queued messages (the queue
  is synthetic: messages exist only once received, so the figure is the worker's own).
- payloads: 5 MiB payloads sent through S3 (in memory): messages/s, peak RSS and loop lag
  for --payload-fetches 1, 4 and 8 (bench_payloads.py).
- end_to_end: messages/s through `sealq run`'s pool against the local stand-in, vs a bare
  receive(10) + delete-batch loop with the same concurrency against the same stand-in. Both
  short-poll (WaitTimeSeconds=0, the queue is full): ministack serialises concurrent long
  polls, which would slow the reference loop ~10x and flatter sealq.
- typed: the per-message cost of a typed handler (pydantic validation of a small model) vs an
  untyped one, per call and through the pool, and that the adapter is built once (bench_typed.py).
- latency_memory, latency_standin, idle_and_burst: default settings with 0, 20 and 50 ms
  added to every SQS call, idle-queue requests per minute, the poller count over a burst
  (bench_latency.py; the stand-in through bench/delay_proxy.py).
- naive: a consumer that calls KMS Decrypt for the private key on every message (stand-in
  KMS over HTTP), vs sealq's pool on the same messages and KMS; the speed-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench_common import CORES, PAYLOAD, drain, fill, make_key, noop, worker_settings
from sealq.envelope.jwe import OAEP_SHA256
from sealq.keys.keyset import KeyRecord
from sealq.producer.message import OutgoingMessage, build_entry
from sealq.testing import FakeKMS, MemoryQueue, MemorySQS, record_for, write_keyset
from sealq.worker import Worker

# ----- crypto limit: the primitives in a tight loop, one process per core ----------------


def _primitive_rate(kind: str, seconds: float, at_least: int = 0) -> float:
    private = make_key(kind)
    aad = b"x" * 200
    cek, iv = os.urandom(32), os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, PAYLOAD, aad)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        curve, ecdh = private.curve, ec.ECDH()
        points = [
            ec.generate_private_key(curve)
            .public_key()
            .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
            for _ in range(64)
        ]

        def one(i: int) -> None:
            private.exchange(ecdh, ec.EllipticCurvePublicKey.from_encoded_point(curve, points[i & 63]))
            AESGCM(cek).decrypt(iv, sealed, aad)
    else:
        wrapped = [private.public_key().encrypt(os.urandom(32), OAEP_SHA256) for _ in range(8)]

        def one(i: int) -> None:
            private.decrypt(wrapped[i & 7], OAEP_SHA256)
            AESGCM(cek).decrypt(iv, sealed, aad)

    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < at_least:
        one(count)
        count += 1
    return count / (time.perf_counter() - start)


def crypto_limit(kind: str, seconds: float) -> float:
    with ProcessPoolExecutor(CORES, mp_context=multiprocessing.get_context("fork")) as pool:
        return sum(pool.map(_primitive_rate, [kind] * CORES, [seconds] * CORES))


# ----- the real pool on an in-memory queue -------------------------------------------------


def pool_seconds(kind: str, count: int, workdir: Path, barrier: Any = None) -> float:
    """Seconds the real Worker takes to handle `count` messages after its key is cached."""

    async def main() -> float:
        kms = FakeKMS()
        record = record_for(kms, make_key(kind), "bench-" + kind.lower().replace("-", ""))
        store = write_keyset(workdir / f"pool-{kind}-{os.getpid()}.json", record)
        queue = MemoryQueue("q")
        fill(queue, record, count + 1)
        worker = Worker(
            worker_settings(), noop, sqs=MemorySQS(queue, MemoryQueue("dlq")), kms=kms, keystore=store
        )
        if barrier is not None:
            barrier.wait()  # every process starts draining at the same moment
        return await drain(worker, count + 1)

    return asyncio.run(main())


def _pool_child(kind: str, count: int, workdir: Path, barrier: Any, results: Any) -> None:
    results.put(pool_seconds(kind, count, workdir, barrier))


def pool_rate(kind: str, count: int, workdir: Path, processes: int) -> float:
    """Messages/s of `processes` worker processes (`sealq run --processes`), each draining its
    own in-memory queue of count/processes messages."""
    if processes == 1:
        return count / pool_seconds(kind, count, workdir)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    share = count // processes
    children = [
        ctx.Process(target=_pool_child, args=(kind, share, workdir, barrier, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    seconds: list[float] = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join()
    return share * processes / max(seconds)


def pool_vs_limit(quick: bool, workdir: Path) -> list[dict[str, Any]]:
    out = []
    for kind, count, aim in (
        ("P-256", 6000 if quick else 20000, 0.5),
        ("RSA-4096", 400 if quick else 2000, 0.85),
    ):
        limits: list[float] = []
        one_core: list[float] = []  # the loop in this one process, right after its pool run
        rates: dict[int, list[float]] = {1: [], CORES: []}
        for _ in range(1 if quick else 2):
            limits.append(crypto_limit(kind, 1.0 if quick else 2.0))
            for processes in rates:
                rates[processes].append(pool_rate(kind, count, workdir, processes))
                if processes == 1:
                    one_core.append(_primitive_rate(kind, 1.0 if quick else 2.0))
        limit = statistics.median(limits)
        for processes, values in rates.items():
            rate = statistics.median(values)
            row = {
                "alg": kind,
                "processes": processes,
                "messages": count,
                "pool_per_s": round(rate),
                "limit_per_s": round(limit),
                "ratio": round(rate / limit, 3),
                "aim": aim,
                "cores": CORES,
            }
            if processes == 1:
                # One process uses one core: its own bound is the loop on one core.
                row["one_core_limit_per_s"] = round(statistics.median(one_core))
                row["one_core_ratio"] = round(rate / statistics.median(one_core), 3)
            out.append(row)
    return out


# ----- single flight ------------------------------------------------------------------------


def kms_single_flight(workdir: Path) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        kms = FakeKMS()
        kms.delay_s = 0.05  # a realistic KMS round trip, so the messages really overlap
        record = record_for(kms, make_key("P-256"), "flight-p256")
        store = write_keyset(workdir / "flight.json", record)
        queue = MemoryQueue("q")
        fill(queue, record, 1000)
        worker = Worker(
            worker_settings(max_in_flight=1000, concurrency=200, pollers=10),
            noop,
            sqs=MemorySQS(queue, MemoryQueue("dlq")),
            kms=kms,
            keystore=store,
        )
        await drain(worker, 1000)
        return {"messages": 1000, "kms_decrypt_calls": kms.calls, "aim": 1, "handled": worker.stats.handled}

    return asyncio.run(main())


# ----- loop lag ---------------------------------------------------------------------------


def loop_lag(quick: bool, workdir: Path) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        kms = FakeKMS()
        first = record_for(kms, make_key("RSA-4096"), "lag-rsa-a")
        second = record_for(kms, make_key("RSA-4096"), "lag-rsa-b")
        store = write_keyset(workdir / "lag.json", first, second)
        queue = MemoryQueue("q")
        count = 300 if quick else 1200
        fill(queue, first, count)
        worker = Worker(
            worker_settings(), noop, sqs=MemorySQS(queue, MemoryQueue("dlq")), kms=kms, keystore=store
        )
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append(time.perf_counter() - before - 0.005)

        tick = asyncio.create_task(ticker())
        task = asyncio.create_task(worker.run())
        while worker.stats.handled < count // 3:
            await asyncio.sleep(0.01)
        fill(queue, second, count // 3)  # a new kid under load: unwrap + key parse
        while worker.stats.handled < count + count // 3:
            await asyncio.sleep(0.01)
        stop.set()
        worker.stop()
        await task
        await tick
        lags.sort()
        return {
            "samples": len(lags),
            "p50_ms": round(lags[len(lags) // 2] * 1000, 2),
            "p99_ms": round(lags[int(len(lags) * 0.99)] * 1000, 2),
            "max_ms": round(lags[-1] * 1000, 2),
            "aim_p99_ms": 20,
            "kms_decrypt_calls": kms.calls,
        }

    return asyncio.run(main())


# ----- RSS with a deep queue --------------------------------------------------------------


class SyntheticQueue(MemoryQueue):
    """A queue of `depth` messages that exist only once received (as in real SQS, where the
    backlog lives in the service, not in the worker)."""

    def __init__(self, depth: int, record: KeyRecord) -> None:
        super().__init__("q")
        self._left = depth
        key = record.sealing_key()
        self._templates = [build_entry(i, OutgoingMessage(PAYLOAD), key, time.time()) for i in range(64)]

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        while self._left and len(self._ready) < 10:
            entry = self._templates[self._left & 63]
            self.put(entry.body, entry.attributes)
            self._left -= 1
        return await super().receive_message(**kw)


def _rss_child(depth: int, workdir: str) -> None:
    async def main() -> None:
        kms = FakeKMS()
        record = record_for(kms, make_key("P-256"), "rss-p256")
        store = write_keyset(Path(workdir) / f"rss-{depth}.json", record)
        queue = SyntheticQueue(depth, record)
        worker = Worker(
            worker_settings(), noop, sqs=MemorySQS(queue, MemoryQueue("dlq")), kms=kms, keystore=store
        )
        await drain(worker, depth)
        print(
            json.dumps(
                {
                    "handled": worker.stats.handled,
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                }
            )
        )

    asyncio.run(main())


def rss(quick: bool, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"aim": "flat, under 200 MB"}
    for depth in (2000, 20000) if quick else (10000, 100000):
        result = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(depth), str(workdir)],
            capture_output=True,
            text=True,
            check=True,
        )
        out[str(depth)] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


PARTS = (
    "pool_vs_limit",
    "kms_single_flight",
    "loop_lag",
    "rss",
    "typed",
    "payloads",
    "latency",
    "standin",
    "latency_standin",
)
"""`standin` gives the end_to_end and naive figures; `latency` the in-memory latency, idle and
burst figures, `latency_standin` the stand-in behind a delaying proxy (bench_latency.py)."""
STANDIN_PARTS = {"standin", "latency_standin"}


def main() -> None:
    parser = argparse.ArgumentParser(description="sealq worker benchmarks (JSON on stdout)")
    parser.add_argument("--quick", action="store_true", help="smaller counts for a smoke run")
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--skip-standin", action="store_true", help="skip the stand-in figures")
    parser.add_argument(
        "--only", action="append", choices=PARTS, help="run only this part (repeatable; default: all)"
    )
    args = parser.parse_args()
    if args.rss_child:
        _rss_child(int(args.rss_child[0]), args.rss_child[1])
        return
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="sealq-bench-"))
    result: dict[str, Any] = {
        "bench": "worker",
        "python": platform.python_version(),
        "cores": CORES,
        "quick": args.quick,
    }
    parts = set(args.only or PARTS) - (STANDIN_PARTS if args.skip_standin else set())
    if "pool_vs_limit" in parts:
        result["pool_vs_limit"] = pool_vs_limit(args.quick, workdir)
    if "kms_single_flight" in parts:
        result["kms_single_flight"] = kms_single_flight(workdir)
    if "loop_lag" in parts:
        result["loop_lag"] = loop_lag(args.quick, workdir)
    if "rss" in parts:
        result["rss"] = rss(args.quick, workdir)
    if "typed" in parts:
        from bench_typed import typed_cost

        result["typed"] = typed_cost(args.quick, workdir)
    if "payloads" in parts:
        from bench_payloads import payloads

        result["payloads"] = payloads(args.quick, workdir)
    if "latency" in parts:
        from bench_latency import idle_and_burst, latency_memory

        result["latency_memory"] = latency_memory(args.quick, workdir)
        result["idle_and_burst"] = idle_and_burst(args.quick, workdir)
    if "standin" in parts:
        from bench_standin import against_standin

        result.update(against_standin(args.quick, workdir))
    if "latency_standin" in parts:
        from bench_latency import latency_standin

        result["latency_standin"] = latency_standin(args.quick, workdir)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
