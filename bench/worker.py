"""Worker benchmarks. Every figure comes with its reference, measured in the same run.

    python bench/worker.py            # everything, ~2-4 minutes on 2 cores
    python bench/worker.py --quick    # smaller counts, for a smoke run
    python bench/worker.py --quick --only kms_single_flight   # one part (repeatable)

Needs only an installed sealq[worker] (its test kit, sealq.testing, provides the in-memory
SQS and fake KMS), never the repository's tests/.

Prints one JSON document:
- pool_vs_limit: decrypt-and-dispatch through the real Worker (in-memory SQS, no network)
  vs the crypto limit on all cores (the same primitives in a tight loop, one process per
  core), for P-256 and RSA-4096, with one worker process and with one per core
  (`sealq run --processes`); interleaved rounds, medians.
- kms_single_flight: KMS Decrypt calls when 1,000 messages under one new kid arrive at once.
- loop_lag: event-loop lag p99 while RSA-4096 messages are opened and a new RSA-4096 key is
  unwrapped under that load.
- rss: peak RSS of a worker process draining 10,000 and 100,000 queued messages (the queue
  is synthetic: messages exist only once received, so the figure is the worker's own).
- end_to_end: messages/s through `sealq run`'s pool against the local stand-in, vs a bare
  receive(10) + delete-batch loop with the same concurrency against the same stand-in. Both
  short-poll (WaitTimeSeconds=0, the queue is full): ministack serialises concurrent long
  polls, which would slow the reference loop ~10x and flatter sealq.
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
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sealq.envelope.jwe import OAEP_SHA256, parse
from sealq.keys.keyset import KeyRecord
from sealq.producer.message import OutgoingMessage, build_entry
from sealq.testing import FakeKMS, MemoryQueue, MemorySQS, record_for, write_keyset
from sealq.worker import Message, Worker, WorkerSettings

PAYLOAD = os.urandom(512)
CORES = os.cpu_count() or 1


def _key(kind: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    return (
        ec.generate_private_key(ec.SECP256R1()) if kind == "P-256" else rsa.generate_private_key(65537, 4096)
    )


async def _open_clients(stack: AsyncExitStack) -> tuple[Any, Any]:
    """aiobotocore SQS and KMS clients configured as `sealq run` configures them."""
    from aiobotocore.session import get_session
    from sealq.aws.clients import aio_client_config

    session, config = get_session(), aio_client_config()
    sqs = await stack.enter_async_context(session.create_client("sqs", config=config))
    kms = await stack.enter_async_context(session.create_client("kms", config=config))
    return sqs, kms


# ----- crypto limit: the primitives in a tight loop, one process per core ----------------


def _primitive_rate(kind: str, seconds: float) -> float:
    private = _key(kind)
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
    while time.perf_counter() - start < seconds:
        one(count)
        count += 1
    return count / (time.perf_counter() - start)


def crypto_limit(kind: str, seconds: float) -> float:
    with ProcessPoolExecutor(CORES, mp_context=multiprocessing.get_context("fork")) as pool:
        return sum(pool.map(_primitive_rate, [kind] * CORES, [seconds] * CORES))


# ----- the real pool on an in-memory queue -------------------------------------------------


def _settings(**over: Any) -> WorkerSettings:
    base: dict[str, Any] = {
        "queue_url": "q",
        "dlq_url": "dlq",
        "keyset": "unused",
        "handler": "bench:handle",
        "wait_time_s": 0,
        "concurrency": 16,
        "max_in_flight": 200,
        "pollers": 2,
    }
    base.update(over)
    return WorkerSettings(**base)


async def _drain(worker: Worker, target: int, deadline_s: float = 300) -> float:
    """Seconds from the first message handled to `target` handled."""
    task = asyncio.create_task(worker.run())
    while worker.stats.handled == 0 and not task.done():
        await asyncio.sleep(0.0005)
    start = time.perf_counter()
    while worker.stats.handled < target and time.perf_counter() - start < deadline_s:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - start
    worker.stop()
    await task
    return elapsed


async def _noop(message: Message) -> None:
    return None


def _fill(queue: MemoryQueue, record: KeyRecord, count: int) -> None:
    key = record.sealing_key()
    entries = [build_entry(i, OutgoingMessage(PAYLOAD), key, time.time()) for i in range(64)]
    for i in range(count):
        queue.put(entries[i & 63].body, entries[i & 63].attributes)


def pool_seconds(kind: str, count: int, workdir: Path, barrier: Any = None) -> float:
    """Seconds the real Worker takes to handle `count` messages after its key is cached."""

    async def main() -> float:
        kms = FakeKMS()
        record = record_for(kms, _key(kind), "bench-" + kind.lower().replace("-", ""))
        store = write_keyset(workdir / f"pool-{kind}-{os.getpid()}.json", record)
        queue = MemoryQueue("q")
        _fill(queue, record, count + 1)
        worker = Worker(_settings(), _noop, sqs=MemorySQS(queue, MemoryQueue("dlq")), kms=kms, keystore=store)
        if barrier is not None:
            barrier.wait()  # every process starts draining at the same moment
        return await _drain(worker, count + 1)

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
        rates: dict[int, list[float]] = {1: [], CORES: []}
        for _ in range(1 if quick else 2):
            limits.append(crypto_limit(kind, 1.0 if quick else 2.0))
            for processes in rates:
                rates[processes].append(pool_rate(kind, count, workdir, processes))
        limit = statistics.median(limits)
        for processes, values in rates.items():
            rate = statistics.median(values)
            out.append(
                {
                    "alg": kind,
                    "processes": processes,
                    "messages": count,
                    "pool_per_s": round(rate),
                    "limit_per_s": round(limit),
                    "ratio": round(rate / limit, 3),
                    "aim": aim,
                    "cores": CORES,
                }
            )
    return out


# ----- single flight ------------------------------------------------------------------------


def kms_single_flight(workdir: Path) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        kms = FakeKMS()
        kms.delay_s = 0.05  # a realistic KMS round trip, so the messages really overlap
        record = record_for(kms, _key("P-256"), "flight-p256")
        store = write_keyset(workdir / "flight.json", record)
        queue = MemoryQueue("q")
        _fill(queue, record, 1000)
        worker = Worker(
            _settings(max_in_flight=1000, concurrency=200, pollers=10),
            _noop,
            sqs=MemorySQS(queue, MemoryQueue("dlq")),
            kms=kms,
            keystore=store,
        )
        await _drain(worker, 1000)
        return {"messages": 1000, "kms_decrypt_calls": kms.calls, "aim": 1, "handled": worker.stats.handled}

    return asyncio.run(main())


# ----- loop lag ---------------------------------------------------------------------------


def loop_lag(quick: bool, workdir: Path) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        kms = FakeKMS()
        first = record_for(kms, _key("RSA-4096"), "lag-rsa-a")
        second = record_for(kms, _key("RSA-4096"), "lag-rsa-b")
        store = write_keyset(workdir / "lag.json", first, second)
        queue = MemoryQueue("q")
        count = 300 if quick else 1200
        _fill(queue, first, count)
        worker = Worker(_settings(), _noop, sqs=MemorySQS(queue, MemoryQueue("dlq")), kms=kms, keystore=store)
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
        _fill(queue, second, count // 3)  # a new kid under load: unwrap + key parse
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
        record = record_for(kms, _key("P-256"), "rss-p256")
        store = write_keyset(Path(workdir) / f"rss-{depth}.json", record)
        queue = SyntheticQueue(depth, record)
        worker = Worker(_settings(), _noop, sqs=MemorySQS(queue, MemoryQueue("dlq")), kms=kms, keystore=store)
        await _drain(worker, depth)
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


# ----- against the stand-in -----------------------------------------------------------------


def _standin_setup(workdir: Path) -> dict[str, Any]:
    from sealq.aws.clients import client
    from sealq.keys.keyset import Keyset, KeySpec
    from sealq.keys.kms import create_key
    from sealq.keys.store import KeysetStore

    kms, sqs = client("kms"), client("sqs")
    cmk = kms.create_key()["KeyMetadata"]["Arn"]
    now = datetime.now(UTC).replace(microsecond=0)
    record = create_key(kms, cmk=cmk, spec=KeySpec.ECC_NIST_P256, lifetime=timedelta(days=1), now=now)
    store = KeysetStore(workdir / "standin-keyset.json")
    store.save(Keyset().with_record(record))
    queue = sqs.create_queue(QueueName="bench-e2e")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="bench-e2e-dlq")["QueueUrl"]
    return {"sqs": sqs, "record": record, "store": store, "queue": queue, "dlq": dlq}


def _send(setup: dict[str, Any], count: int) -> None:
    from sealq.producer.sync_producer import Producer

    producer = Producer(setup["queue"], {"keys": [setup["record"].jwk()]}, sqs_client=setup["sqs"])
    result = producer.send_batch(PAYLOAD for _ in range(count))
    assert result.ok, result.failed[:1]


async def _bare_loop(queue: str, count: int, concurrency: int) -> float:

    async with AsyncExitStack() as stack:
        sqs, _ = await _open_clients(stack)
        got = 0
        start = time.perf_counter()
        finished = 0.0

        async def loop() -> None:
            nonlocal got, finished
            while got < count:
                response = await sqs.receive_message(
                    QueueUrl=queue,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
                messages = response.get("Messages", [])
                if messages:
                    got += len(messages)
                    await sqs.delete_message_batch(
                        QueueUrl=queue,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )

        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)


async def _sealq_loop(
    setup: dict[str, Any], count: int, pollers: int, handled: Any = None, go: Any = None
) -> float:
    """One worker process on the stand-in queue until `count` are handled in total (across
    processes when `handled` is a shared counter)."""

    async with AsyncExitStack() as stack:
        sqs, kms = await _open_clients(stack)
        settings = _settings(queue_url=setup["queue"], dlq_url=setup["dlq"], pollers=pollers, wait_time_s=0)

        async def count_it(message: Message) -> None:
            if handled is not None:
                with handled.get_lock():
                    handled.value += 1

        worker = Worker(settings, count_it, sqs=sqs, kms=kms, keystore=setup["store"])
        if go is not None:
            go.wait()
        start = time.perf_counter()
        task = asyncio.create_task(worker.run())

        def total() -> int:
            return handled.value if handled is not None else worker.stats.handled

        while total() < count and not task.done():
            await asyncio.sleep(0.005)
        rate = count / (time.perf_counter() - start)
        worker.stop()
        await task
        return rate


def _sealq_child(setup: dict[str, Any], count: int, pollers: int, handled: Any, go: Any, out: Any) -> None:
    out.put(asyncio.run(_sealq_loop(setup, count, pollers, handled, go)))


def sealq_rate(setup: dict[str, Any], count: int, pollers: int, processes: int) -> float:
    """`sealq run --processes N` on the stand-in queue: N workers sharing it."""
    if processes == 1:
        return asyncio.run(_sealq_loop(setup, count, pollers))
    ctx = multiprocessing.get_context("fork")
    handled, go, out = ctx.Value("i", 0), ctx.Barrier(processes), ctx.Queue()
    children = [
        ctx.Process(target=_sealq_child, args=(setup, count, pollers, handled, go, out))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    rates: list[float] = [out.get(timeout=600) for _ in children]
    for child in children:
        child.join()
    return min(rates)  # the slowest view of the shared drain


async def _naive_loop(setup: dict[str, Any], queue: MemoryQueue, count: int, concurrency: int) -> float:
    from sealq.envelope.jwe import decrypt
    from sealq.keys.kms import decrypt_request, load_private_key

    async with AsyncExitStack() as stack:
        _, kms = await _open_clients(stack)
        record = setup["record"]
        done = 0
        start = time.perf_counter()

        async def loop() -> None:
            nonlocal done
            while done < count:
                response = await queue.receive_message(MaxNumberOfMessages=1, WaitTimeSeconds=0)
                if not response:
                    await asyncio.sleep(0.001)  # all in flight elsewhere: let the others run
                for m in response.get("Messages", []):
                    plain = (await kms.decrypt(**decrypt_request(record)))["Plaintext"]
                    decrypt(parse(m["Body"]), load_private_key(record, plain))
                    await queue.delete_message_batch(
                        Entries=[{"Id": "0", "ReceiptHandle": m["ReceiptHandle"]}]
                    )
                    done += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)


def against_standin(quick: bool, workdir: Path) -> dict[str, Any]:
    from sealq.demo.standin import StandIn

    count = 600 if quick else 3000
    with StandIn() as standin:
        os.environ.update(standin.env())
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_KMS"):
            os.environ.pop(name, None)
        setup = _standin_setup(workdir)
        rates: dict[str, list[float]] = {"sealq_1_process": [], f"sealq_{CORES}_processes": [], "bare": []}
        for _ in range(1 if quick else 2):
            _send(setup, count)
            rates["sealq_1_process"].append(sealq_rate(setup, count, 2, 1))
            _send(setup, count)
            rates[f"sealq_{CORES}_processes"].append(sealq_rate(setup, count, 2, CORES))
            _send(setup, count)
            rates["bare"].append(asyncio.run(_bare_loop(setup["queue"], count, concurrency=4)))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        bare = medians.pop("bare")
        e2e = {
            "messages": count,
            "bare_receive_delete_per_s": round(bare),
            "bare_loops": 4,
            "sealq_pollers_per_process": 2,
            "aim": 0.8,
        }
        for name, value in medians.items():
            e2e[f"{name}_per_s"] = round(value)
            e2e[f"{name}_ratio"] = round(value / bare, 3)

        naive_count = 200 if quick else 600
        naive_queue = MemoryQueue("q")
        _fill(naive_queue, setup["record"], naive_count)
        naive_rate = asyncio.run(_naive_loop(setup, naive_queue, naive_count, concurrency=16))
        pool_queue = MemoryQueue("q")
        _fill(pool_queue, setup["record"], naive_count * 10)

        async def pooled() -> float:

            async with AsyncExitStack() as stack:
                _, kms = await _open_clients(stack)
                worker = Worker(
                    _settings(),
                    _noop,
                    sqs=MemorySQS(pool_queue, MemoryQueue("dlq")),
                    kms=kms,
                    keystore=setup["store"],
                )
                start = time.perf_counter()
                task = asyncio.create_task(worker.run())
                while worker.stats.handled < naive_count * 10 and not task.done():
                    await asyncio.sleep(0.002)
                rate = naive_count * 10 / (time.perf_counter() - start)
                worker.stop()
                await task
                return rate

        sealq_rate_kms = asyncio.run(pooled())
        naive = {
            "naive_per_s": round(naive_rate, 1),
            "sealq_per_s": round(sealq_rate_kms),
            "speedup": round(sealq_rate_kms / naive_rate, 1),
            "alg": "P-256",
            "kms": "stand-in over HTTP",
        }
    return {"end_to_end": e2e, "naive": naive}


PARTS = ("pool_vs_limit", "kms_single_flight", "loop_lag", "rss", "standin")
"""`standin` gives the end_to_end and naive figures."""


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
    parts = set(args.only or PARTS) - ({"standin"} if args.skip_standin else set())
    if "pool_vs_limit" in parts:
        result["pool_vs_limit"] = pool_vs_limit(args.quick, workdir)
    if "kms_single_flight" in parts:
        result["kms_single_flight"] = kms_single_flight(workdir)
    if "loop_lag" in parts:
        result["loop_lag"] = loop_lag(args.quick, workdir)
    if "rss" in parts:
        result["rss"] = rss(args.quick, workdir)
    if "standin" in parts:
        result.update(against_standin(args.quick, workdir))
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
