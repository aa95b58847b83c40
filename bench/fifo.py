"""FIFO ordering's cost: the real Worker draining an in-memory FIFO queue (sealq.testing's
MemoryFifoQueue, AWS's group lock) vs the same messages on a standard queue, same run.

    python bench/fifo.py            # ~1 minute on 2 cores
    python bench/fifo.py --quick

The handler awaits 1 ms (an I/O call). On a standard queue up to --concurrency handlers run
at once; on a FIFO queue one per group, so the rate with G groups is bounded by G handlers
at once (and by SQS's group lock, which hands out nothing of a group with one in flight).
Prints one JSON document: messages/s per queue kind and group count, medians of interleaved
rounds, and each FIFO rate as a ratio to the standard queue's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench_common import PAYLOAD, drain, make_key, worker_settings
from sealq.producer.message import OutgoingMessage, build_entry
from sealq.testing import FakeKMS, MemoryFifoQueue, MemoryQueue, MemorySQS, record_for, write_keyset
from sealq.worker import Message, Worker


async def io_handler(message: Message) -> None:
    await asyncio.sleep(0.001)


def rate(groups: int | None, count: int, workdir: Path) -> float:
    """Messages/s; `groups` None: a standard queue."""

    async def main() -> float:
        kms = FakeKMS()
        record = record_for(kms, make_key("P-256"), "bench-fifo")
        store = write_keyset(workdir / "fifo.json", record)
        key = record.sealing_key()
        entries = [build_entry(i, OutgoingMessage(PAYLOAD), key, time.time()) for i in range(64)]
        queue: MemoryQueue | MemoryFifoQueue
        if groups is None:
            queue, dlq, url = MemoryQueue("q"), MemoryQueue("dlq"), "q"
        else:
            queue, dlq, url = MemoryFifoQueue("q.fifo"), MemoryFifoQueue("dlq.fifo"), "q.fifo"
        for i in range(count + 1):
            e = entries[i & 63]
            if isinstance(queue, MemoryFifoQueue):
                queue.put(e.body, e.attributes, group_id=f"g{i % (groups or 1)}")
            else:
                queue.put(e.body, e.attributes)
        # Long polls, as in production: a poll finding every group locked waits for one to
        # unlock instead of returning empty (the short-poll pause would dominate).
        settings = worker_settings(queue_url=url, dlq_url=dlq.name, wait_time_s=1)
        worker = Worker(settings, io_handler, sqs=MemorySQS(queue, dlq), kms=kms, keystore=store)
        return count / await drain(worker, count + 1)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, rounds = (500, 1) if args.quick else (3000, 3)
    kinds: list[int | None] = [None, 1, 10, 100]
    seen: dict[str, list[float]] = {str(k): [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for k in kinds:
                seen[str(k)].append(rate(k, count, Path(tmp)))
    medians = {k: statistics.median(v) for k, v in seen.items()}
    standard = medians["None"]
    print(
        json.dumps(
            {
                "messages": count,
                "rounds": rounds,
                "handler": "await asyncio.sleep(0.001)",
                "concurrency": 16,
                "standard_per_s": round(standard),
                "fifo": {
                    f"{k}_groups": {"per_s": round(m), "ratio": round(m / standard, 2)}
                    for k in kinds
                    if k is not None and (m := medians[str(k)])
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
