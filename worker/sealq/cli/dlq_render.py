"""How `sealq dlq` shows what it found on a terminal: tables and one-line alerts. Every
value that a client chose (kids, client ids, attribute values) is made safe to print first."""

from __future__ import annotations

from collections.abc import Sequence

from sealq.dlq.records import Breach, DlqRecord, Stats
from sealq.durations import format_duration


def _cell(value: object, width: int = 40) -> str:
    """Client-controlled text made safe for a terminal: no control characters, bounded."""
    if value is None:
        return "-"
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def render_stats(url: str, stats: Stats, *, truncated: bool, in_flight: int | None) -> str:
    """The terminal view of `dlq stats`."""
    head = (
        f"{_cell(url, 200)}: {stats.total} message(s), {stats.total_bytes} bytes, "
        f"oldest {_age(stats.oldest_age_s)}, newest {_age(stats.newest_age_s)}"
    )
    lines = [head]
    if stats.groups:
        rows = [
            [
                _cell(g.reason),
                _cell(g.kid),
                _cell(g.client_id),
                str(g.count),
                _age(g.oldest_age_s),
                _age(g.newest_age_s),
            ]
            for g in stats.groups
        ]
        lines += ["", _table(["REASON", "KID", "CLIENT", "COUNT", "OLDEST", "NEWEST"], rows, (3,))]
        lines += ["", "by reason: " + ", ".join(f"{_cell(r)} {n}" for r, n in stats.by_reason.items())]
    lines += _notes(truncated, in_flight)
    return "\n".join(lines)


def _notes(truncated: bool, in_flight: int | None) -> list[str]:
    notes = []
    if truncated:
        notes.append("note: stopped at --max-messages; there may be more messages")
    if in_flight:
        notes.append(f"note: about {in_flight} message(s) were in flight (hidden) and not counted")
    return notes


def render_peek(records: Sequence[DlqRecord]) -> str:
    blocks = []
    for r in records:
        lines = [
            f"{_cell(r.message_id, 80)}  {_cell(r.reported_reason)}  kid {_cell(r.kid)}  "
            f"client {_cell(r.client_id)}  age {_age(r.age_s)}  size {r.size} "
            f"(body {r.body_size})  receives {_cell(r.receive_count)}"
        ]
        lines += [f"    {_cell(k, 60)} = {_cell(v, 200)}" for k, v in r.attributes.items()]
        blocks.append("\n".join(lines))
    return "\n".join(blocks) if blocks else "no messages"


def _who(pairs: Sequence[tuple[str | None, int]]) -> str:
    return ", ".join(f"{_cell(name) if name is not None else '(none)'} ({n})" for name, n in pairs[:20]) + (
        f", +{len(pairs) - 20} more" if len(pairs) > 20 else ""
    )


def render_breach(b: Breach) -> str:
    t = b.threshold
    return f"ALERT {t.name}: {b.count} > {t.limit}; clients: {_who(b.clients)}; kids: {_who(b.kids)}"


# ----- commands --------------------------------------------------------------------------
