"""What the DLQ operations return: plain values, each with a `view()` (the JSON-ready form
`--json` prints), so a caller can test, render or ship them without redoing any SQS work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealq.dlq.records import Breach, DlqRecord, Stats, Threshold


@dataclass(frozen=True, slots=True)
class StatsResult:
    dlq_url: str
    stats: Stats
    truncated: bool
    """The scan stopped at its limit: there may be more messages."""
    in_flight_before_scan: int | None
    """Messages hidden (being received) before the scan, which it could not count."""

    def view(self) -> dict[str, Any]:
        return {
            **self.stats.view(),
            "dlq_url": self.dlq_url,
            "truncated": self.truncated,
            "in_flight_before_scan": self.in_flight_before_scan,
        }


@dataclass(frozen=True, slots=True)
class PeekResult:
    records: list[DlqRecord]

    def view(self) -> dict[str, Any]:
        return {"count": len(self.records), "messages": [r.view(with_attributes=True) for r in self.records]}


@dataclass(slots=True)
class Tally:
    """What a redrive or purge found and did; `done` left the DLQ."""

    matched: int = 0
    done: int = 0
    failed: int = 0
    scanned: int = 0
    truncated: bool = False
    duplicated: int = 0
    """Redriven but not deleted from the DLQ (counted in `failed` too): now in both queues."""

    def view(self, verb: str, *, dry_run: bool) -> dict[str, Any]:
        return {
            verb: 0 if dry_run else self.done,
            "dry_run": dry_run,
            "matched": self.matched,
            "failed": self.failed,
            "scanned": self.scanned,
            "truncated": self.truncated,
        }


@dataclass(frozen=True, slots=True)
class MoveTask:
    """SQS's own redrive was started; it moves every message server-side, on its own time."""

    task_handle: str | None
    approximate_messages: int | None


@dataclass(frozen=True, slots=True)
class RedriveResult:
    dry_run: bool
    tally: Tally = field(default_factory=Tally)
    """All zeros when a move task does the work."""
    move_task: MoveTask | None = None
    move_task_unavailable: str | None = None
    """Everything was asked for, but StartMessageMoveTask failed with this error code, so
    the messages were moved one by one."""
    move_task_why: str | None = None
    """That failure in words, with what to do about it (`operations.move_task_refusal`)."""

    @property
    def method(self) -> str:
        return "move-task" if self.move_task is not None else "manual"

    def view(self) -> dict[str, Any]:
        if self.move_task is not None:
            return {
                "redriven": None,
                "method": self.method,
                "task_handle": self.move_task.task_handle,
                "approximate_messages": self.move_task.approximate_messages,
                "dry_run": False,
            }
        out = {**self.tally.view("redriven", dry_run=self.dry_run), "method": self.method}
        if self.move_task_unavailable is not None:
            out["move_task_unavailable"] = self.move_task_unavailable
            out["move_task_why"] = self.move_task_why
        return out


@dataclass(frozen=True, slots=True)
class PurgeResult:
    dry_run: bool
    tally: Tally

    def view(self) -> dict[str, Any]:
        return self.tally.view("purged", dry_run=self.dry_run)


@dataclass(frozen=True, slots=True)
class WatchCheck:
    checked_at: float
    """Unix time the scan ended."""
    total: int
    truncated: bool
    thresholds: tuple[Threshold, ...]
    breaches: list[Breach]

    def view(self) -> dict[str, Any]:
        return {
            "time": round(self.checked_at, 3),
            "total": self.total,
            "truncated": self.truncated,
            "breaches": [b.view() for b in self.breaches],
        }


__all__ = ["MoveTask", "PeekResult", "PurgeResult", "RedriveResult", "StatsResult", "Tally", "WatchCheck"]
