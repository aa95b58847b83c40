"""Counters the worker keeps about itself; the demo, the benchmark and /metrics read them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    received: int = 0
    handled: int = 0
    retried: int = 0
    released: int = 0
    ack_failures: int = 0
    dead_lettered: Counter[tuple[str, str]] = field(default_factory=Counter)
    handler_latency_sum_s: float = 0.0

    def dead_lettered_by_reason(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (reason, _), count in self.dead_lettered.items():
            out[reason] += count
        return dict(out)

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())
