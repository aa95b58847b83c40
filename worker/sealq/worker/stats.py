"""Counters the worker keeps about itself; the demo, the benchmark and /metrics read them.

Latency histograms are plain bucket counts updated with one bisect, cheaper on the
per-message path than a locked prometheus-client Histogram; /metrics exports them as one.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sealq.envelope.jwk import KID_PATTERN

HANDLER_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
POLL_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 20.0, 25.0)


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass
class Stats:
    received: int = 0
    handled: int = 0
    retried: int = 0
    released: int = 0
    ack_failures: int = 0
    dead_letter_unfit: int = 0  # deliveries whose DLQ copy could not fit SQS's size limit
    dead_lettered: Counter[tuple[str, str]] = field(default_factory=Counter)
    handler_seconds: Histogram = field(default_factory=lambda: Histogram(HANDLER_BUCKETS_S))
    poll_seconds: Histogram = field(default_factory=lambda: Histogram(POLL_BUCKETS_S))

    def dead_lettered_by_reason(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (reason, _), count in self.dead_lettered.items():
            out[reason] += count
        return dict(out)

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())


class KidLabels:
    """A kid as a metric label and log field. Senders choose kids, so only a well-formed one
    is used as is, and at most `max_foreign` distinct ones outside the keyset: made-up kids
    cannot grow the metrics without bound."""

    def __init__(self, known: Callable[[str], bool], max_foreign: int) -> None:
        self._known = known
        self._max_foreign = max_foreign
        self._foreign: set[str] = set()

    def __call__(self, kid: str) -> str:
        if KID_PATTERN.fullmatch(kid) is None:
            return "-" if not kid else "invalid"
        if self._known(kid) or kid in self._foreign:
            return kid
        if len(self._foreign) < self._max_foreign:
            self._foreign.add(kid)
            return kid
        return "other"
