"""How `sealq keys list` (and `create --json`) show keys: one view per record, and the table.

Imported only when a keys command runs, as `sealq.keys` needs `sealq[worker]`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sealq.durations import format_duration

if TYPE_CHECKING:
    from sealq.keys.keyset import KeyRecord, Keyset


def record_view(record: KeyRecord, now: datetime) -> dict[str, Any]:
    """The fields an operator sees; `binding` says whether KMS binds the public key and alg
    (`bound`, context 2) or only kid and expiry (`unbound`, a legacy or emulator-made key)."""
    from sealq.keys.context import iso

    return {
        "kid": record.kid,
        "spec": record.key_spec.value,
        "alg": record.alg.value,
        "status": record.status(now),
        "not_before": iso(record.not_before),
        "expires_at": iso(record.expires_at),
        "cmk": record.cmk_arn,
        "private_key": "wrapped" if record.wrapped_private_key else "erased",
        "binding": "bound" if record.bound else "unbound",
    }


def list_lines(keyset: Keyset, now: datetime) -> list[str]:
    """The `keys list` table; the current key is marked `*`."""
    current = keyset.current(now)
    lines = [f"{'KID':<28} {'SPEC':<14} {'STATUS':<8} {'EXPIRES':<21} {'LEFT':<8} {'BINDING':<8} PRIVATE KEY"]
    for record in keyset:
        view = record_view(record, now)
        left = (
            format_duration((record.expires_at - now).total_seconds())
            if record.wrapped_private_key
            else "shredded"
        )
        mark = " *" if current is not None and record.kid == current.kid else ""
        lines.append(
            f"{view['kid']:<28} {view['spec']:<14} {view['status']:<8} {view['expires_at']:<21} "
            f"{left:<8} {view['binding']:<8} {view['private_key']}{mark}"
        )
    return lines
