"""Human durations (`30d`, `12h`, `1d12h`, `90s`) for key lifetimes and settings."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+)([wdhms])")
_UNIT_S = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> int:
    """Seconds in `text`; ValueError with an example when it is not a duration."""
    compact = text.strip().lower().replace(" ", "")
    if compact.isdigit():
        seconds = int(compact)
    else:
        parts = _PART.findall(compact)
        if not parts or "".join(n + u for n, u in parts) != compact:
            raise ValueError(f"invalid duration {text!r}: use e.g. 30d, 12h, 1d12h, 90m or 3600s")
        seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    out = []
    for unit in "dhms":
        amount, seconds = divmod(seconds, _UNIT_S[unit])
        if amount:
            out.append(f"{amount}{unit}")
    return "".join(out[:2])
