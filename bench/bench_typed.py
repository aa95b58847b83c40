"""The per-message cost of a typed handler (pydantic validation of a small model), measured
against an untyped handler in the same run, interleaved rounds, medians.

- call_us: one adapted handler call on an opened message (what the worker awaits per
  message), typed vs untyped, the difference (the validation), and pydantic's validate_json
  alone in a tight loop as the reference for it; a ~100-byte order with two items.
- pool: the real Worker draining an in-memory queue of P-256 messages carrying that order,
  typed handler vs untyped handler (which does nothing with the bytes): messages/s, and CPU
  time per message (steadier than wall time on a shared machine), with their ratios; the
  untyped run repeated in each round (`noise_cpu_ratio`, ideally 1.0) shows the noise.
- adapters_built: TypeAdapter constructions over all typed pool runs: one per Worker, none
  per message.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import sealq.worker.typed as typed
from bench_common import drain, make_key, worker_settings
from sealq.producer.message import OutgoingMessage, build_entry
from sealq.testing import FakeKMS, MemoryQueue, MemorySQS, record_for, write_keyset
from sealq.worker import Message, Worker
from sealq.worker.loading import as_handler


class Item(BaseModel):
    sku: str
    qty: int


class Order(BaseModel):
    customer: str
    email: str
    items: list[Item]


ORDER = Order(
    customer="c-1042", email="someone@example.com", items=[Item(sku="A-17", qty=2), Item(sku="B-3", qty=1)]
)


async def untyped(message: Message) -> None:
    return None


async def typed_handler(order: Order) -> None:
    return None


def _call_us(handler: Any, message: Message, count: int) -> float:
    async def main() -> float:
        start = time.perf_counter()
        for _ in range(count):
            await handler(message)
        return (time.perf_counter() - start) / count * 1e6

    return asyncio.run(main())


def _pydantic_us(plaintext: bytes, count: int) -> float:
    """The reference: pydantic's own validate_json in a tight loop, no sealq around it."""
    validate_json = typed.TypeAdapter(Order).validate_json
    start = time.perf_counter()
    for _ in range(count):
        validate_json(plaintext)
    return (time.perf_counter() - start) / count * 1e6


def _pool_seconds(handler: Any, count: int, workdir: Path) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) to handle `count` messages: CPU time
    is what other processes on a shared machine disturb least."""

    async def main() -> tuple[float, float]:
        kms = FakeKMS()
        record = record_for(kms, make_key("P-256"), "bench-typed")
        store = write_keyset(workdir / f"typed-{os.getpid()}.json", record)
        queue = MemoryQueue("q")
        key = record.sealing_key()
        entries = [build_entry(i, OutgoingMessage(ORDER), key, time.time()) for i in range(64)]
        for i in range(count + 1):
            queue.put(entries[i & 63].body, entries[i & 63].attributes)
        sqs = MemorySQS(queue, MemoryQueue("dlq"))
        worker = Worker(worker_settings(), handler, sqs=sqs, kms=kms, keystore=store)
        cpu = time.process_time()
        wall = await drain(worker, count + 1)
        return wall, time.process_time() - cpu

    return asyncio.run(main())


def typed_cost(quick: bool, workdir: Path) -> dict[str, Any]:
    plaintext = ORDER.model_dump_json().encode()
    message = Message(plaintext=plaintext, kid="k", message_id="m", receive_count=1)
    built: list[object] = []
    real = typed.TypeAdapter

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args[0])
        return real(*args, **kwargs)

    typed.TypeAdapter = counting  # type: ignore[misc]
    try:
        handlers = {"untyped": as_handler(untyped), "typed": as_handler(typed_handler)}
        calls, count = (20000, 3) if quick else (100000, 5)
        call_us: dict[str, list[float]] = {name: [] for name in (*handlers, "pydantic_alone")}
        for _ in range(count):
            for name, handler in handlers.items():
                call_us[name].append(_call_us(handler, message, calls))
            call_us["pydantic_alone"].append(_pydantic_us(plaintext, calls))
        built.clear()  # from here: the pool runs, which adapt the handler themselves
        messages = 3000 if quick else 10000
        pool_s: dict[str, list[tuple[float, float]]] = {"untyped": [], "typed": [], "untyped_again": []}
        for i in range(count):  # ABBA order: drift on the machine hits both alike
            order = [("untyped", untyped), ("typed", typed_handler), ("untyped_again", untyped)]
            for name, handler in order if i % 2 == 0 else order[::-1]:
                pool_s[name].append(_pool_seconds(handler, messages, workdir))
    finally:
        typed.TypeAdapter = real  # type: ignore[misc]
    us = {name: statistics.median(values) for name, values in call_us.items()}
    rate = {name: messages / statistics.median(w for w, _ in values) for name, values in pool_s.items()}
    cpu_us = {
        name: statistics.median(c for _, c in values) / (messages + 1) * 1e6
        for name, values in pool_s.items()
    }
    return {
        "payload_bytes": len(plaintext),
        "rounds": count,
        "call_us": {
            "untyped": round(us["untyped"], 3),
            "typed": round(us["typed"], 3),
            "validation": round(us["typed"] - us["untyped"], 3),
            "pydantic_alone": round(us["pydantic_alone"], 3),
        },
        "pool": {
            "messages": messages,
            "untyped_per_s": round(rate["untyped"]),
            "typed_per_s": round(rate["typed"]),
            "ratio": round(rate["typed"] / rate["untyped"], 3),
            "untyped_cpu_us_per_message": round(cpu_us["untyped"], 1),
            "typed_cpu_us_per_message": round(cpu_us["typed"], 1),
            "cpu_ratio": round(cpu_us["typed"] / cpu_us["untyped"], 3),
            "noise_cpu_ratio": round(cpu_us["untyped_again"] / cpu_us["untyped"], 3),
        },
        "adapters_built": {"typed_workers": count, "messages": count * (messages + 1), "built": len(built)},
    }
