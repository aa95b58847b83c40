"""CPU per message through the real Worker on the in-memory SQS (P-256, no-op handler).

    python bench/per_message.py 2000                      # wall rate, one process
    python bench/per_message.py 5000 --profile            # pyinstrument's top frames (pip install it)
    python bench/per_message.py --callgrind 300 1300      # instructions per message
    python bench/per_message.py --callgrind 300 1300 --primitive   # the crypto limit's loop, same way

`--callgrind A B` runs this script under `valgrind --tool=callgrind` with A and then B
messages and reports (instructions(B) - instructions(A)) / (B - A): start-up, imports and
the queue fill cancel out, so the figure is repeatable on a noisy shared machine. The run
stops on a message count (the handler counts), never on a timer, for the same reason.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import fill, make_key, worker_settings
from sealq.testing import FakeKMS, MemoryQueue, MemorySQS, record_for, write_keyset
from sealq.worker import Message, Worker


async def run(count: int, workdir: Path) -> tuple[float, float]:
    """Wall and CPU seconds from the first message handled to the `count`-th."""
    kms = FakeKMS()
    record = record_for(kms, make_key("P-256"), "per-message-p256")
    store = write_keyset(workdir / "keyset.json", record)
    queue = MemoryQueue("q")
    fill(queue, record, count)
    done = asyncio.Event()
    seen = 0
    started = cpu = 0.0

    async def handle(message: Message) -> None:
        nonlocal seen, started, cpu
        seen += 1
        if seen == 1:
            started, cpu = time.perf_counter(), time.process_time()
        if seen == count:
            done.set()

    worker = Worker(
        worker_settings(), handle, sqs=MemorySQS(queue, MemoryQueue("dlq")), kms=kms, keystore=store
    )
    task = asyncio.create_task(worker.run())
    await done.wait()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    worker.stop()
    await task
    assert worker.stats.handled == count, worker.stats
    return elapsed, cpu


def primitive(count: int) -> None:
    """The crypto limit's loop body (bench/worker.py `_primitive_rate`), `count` times."""
    from worker import _primitive_rate

    _primitive_rate("P-256", 0.0, count)


def callgrind(low: int, high: int, extra: list[str]) -> dict[str, float]:
    totals = {}
    for count in (low, high):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    __file__,
                    str(count),
                    *extra,
                ],
                check=True,
                capture_output=True,
            )
            summary = re.search(r"^summary: (\d+)", out.read_text(), re.M)
            assert summary is not None
            totals[count] = int(summary.group(1))
    return {
        "messages": [low, high],
        "instructions": [totals[low], totals[high]],
        "instructions_per_message": round((totals[high] - totals[low]) / (high - low)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="print pyinstrument's top frames")
    parser.add_argument("--callgrind", nargs=2, type=int, metavar=("A", "B"))
    parser.add_argument(
        "--primitive", action="store_true", help="the crypto limit's loop instead of the worker"
    )
    args = parser.parse_args()
    if args.callgrind:
        print(callgrind(*args.callgrind, ["--primitive"] if args.primitive else []))
        return
    if args.primitive:
        primitive(args.count)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
            seconds, cpu = asyncio.run(run(args.count, Path(tmp)))
            profiler.stop()
            from pyinstrument.renderers import ConsoleRenderer

            flat = ConsoleRenderer(
                unicode=False, color=False, flat=True, show_all=True, time="percent_of_total"
            )
            # "[self] <file>" rows are time pyinstrument could not place in a frame (wall
            # clock, on a shared machine): left out, the rest are the per-message frames.
            rows = [row for row in profiler.output(flat).splitlines() if "[self]" not in row]
            print("\n".join(rows[:30]))
        else:
            seconds, cpu = asyncio.run(run(args.count, Path(tmp)))
    print(
        {"messages": args.count, "per_s": round(args.count / seconds), "cpu_per_s": round(args.count / cpu)}
    )


if __name__ == "__main__":
    main()
