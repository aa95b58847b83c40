"""Worker figures against the local AWS stand-in: end to end (sealq's pool vs a bare
receive + delete loop on the same queue) and naive (KMS Decrypt per message vs sealq).
Run through bench/worker.py (`--only standin`)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_common import CORES, PAYLOAD, fill, noop, open_clients, worker_settings
from sealq.envelope.jwe import parse
from sealq.testing import MemoryQueue, MemorySQS
from sealq.worker import Message, Worker


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
        sqs, _ = await open_clients(stack)
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
        sqs, kms = await open_clients(stack)
        settings = worker_settings(
            queue_url=setup["queue"], dlq_url=setup["dlq"], pollers=pollers, wait_time_s=0
        )

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
        _, kms = await open_clients(stack)
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
        fill(naive_queue, setup["record"], naive_count)
        naive_rate = asyncio.run(_naive_loop(setup, naive_queue, naive_count, concurrency=16))
        pool_queue = MemoryQueue("q")
        fill(pool_queue, setup["record"], naive_count * 10)

        async def pooled() -> float:
            async with AsyncExitStack() as stack:
                _, kms = await open_clients(stack)
                worker = Worker(
                    worker_settings(),
                    noop,
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
