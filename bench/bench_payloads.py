"""Worker figures for 5 MiB payloads sent through S3 (`python bench/worker.py --only payloads`).

In memory (MemorySQS + MemoryS3, no network), so the figure is the worker's own cost per
payload: GetObject's copy, the ASCII decode, parse, base64 and AES-GCM on a crypto thread,
the handler, the delete. Each setting of `--payload-fetches` runs in a fresh process, so its
peak RSS is its own; `baseline_rss_mb` is that process just before the worker starts (the
sealed token, held once by the fake S3 for every key, included). The memory bound the
README states is checked against the rise: peak - baseline vs fetches x token size.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import drain, make_key, worker_settings
from sealq.aws.payloads import S3Pointer, pointer_body, size_attribute
from sealq.envelope.attributes import ATTR_KEY_ID
from sealq.envelope.jwe import seal_at
from sealq.testing import FakeKMS, MemoryQueue, MemoryS3, MemorySQS, record_for, write_keyset
from sealq.worker import Message, Worker

MIB = 1024 * 1024
BUCKET = "bench-payloads"


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(count: int, fetches: int, workdir: str) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        kms = FakeKMS()
        record = record_for(kms, make_key("P-256"), "payload-p256")
        store = write_keyset(Path(workdir) / f"payloads-{fetches}.json", record)
        token = seal_at(os.urandom(5 * MIB), record.sealing_key(), time.time())
        s3 = MemoryS3(BUCKET)
        queue = MemoryQueue("q")
        attributes = {
            ATTR_KEY_ID: {"DataType": "String", "StringValue": record.kid},
            "ExtendedPayloadSize": size_attribute(len(token)),
        }
        for i in range(count):
            s3._buckets[BUCKET][f"k{i}"] = token  # one bytes object under every key
            queue.put(pointer_body(S3Pointer(BUCKET, f"k{i}")), attributes)
        lags: list[float] = []

        async def ticker() -> None:
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append(time.perf_counter() - before - 0.005)

        async def handle(message: Message) -> None:
            assert len(message.plaintext) == 5 * MIB

        settings = worker_settings(payload_buckets=BUCKET, payload_fetches=fetches, crypto_threads=2)
        sqs = MemorySQS(queue, MemoryQueue("dlq"))
        worker = Worker(settings, handle, sqs=sqs, kms=kms, keystore=store, s3=s3)
        baseline = _rss_mb()
        tick = asyncio.create_task(ticker())
        seconds = await drain(worker, count)
        tick.cancel()
        lags.sort()
        return {
            "payload_fetches": fetches,
            "messages": worker.stats.handled,
            "messages_per_s": round((worker.stats.handled - 1) / seconds, 1),
            "token_mb": round(len(token) / MIB, 2),
            "baseline_rss_mb": baseline,
            "peak_rss_mb": _rss_mb(),
            "rise_per_fetch_slot_mb": round((_rss_mb() - baseline) / fetches, 1),
            "loop_lag_p99_ms": round(lags[int(len(lags) * 0.99)] * 1000, 1),
            "dead_lettered": worker.stats.dead_lettered_total,
        }

    return asyncio.run(main())


def payloads(quick: bool, workdir: Path) -> dict[str, Any]:
    count = 20 if quick else 60
    runs = []
    for fetches in (1, 4, 8):
        result = subprocess.run(
            [sys.executable, __file__, str(count), str(fetches), str(workdir)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {"payload_mib": 5, "runs": runs}


if __name__ == "__main__":
    print(json.dumps(child(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])))
