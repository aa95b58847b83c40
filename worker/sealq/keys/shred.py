"""When a key's wrapped private half may be erased: not at expiry, but once the worker's
key grace has passed too. Until then a message sealed (authenticated `iat`) before the key
expired may still be in the queue, and the worker still opens it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sealq.keys.keyset import KeyRecord, Keyset

DEFAULT_KEY_GRACE_S = 300
"""The worker's `--key-grace-s` default; `keys expire --past` waits this long by default."""


def past_grace(keyset: Keyset, now: datetime, grace: timedelta) -> tuple[list[KeyRecord], list[KeyRecord]]:
    """(keys to shred, keys kept): of the keys past expiry that still hold a wrapped private
    key, those expired at least `grace` ago, and those still inside the grace."""
    expired = [r for r in keyset if r.wrapped_private_key and r.expires_at <= now]
    due = [r for r in expired if r.expires_at + grace <= now]
    return due, [r for r in expired if r not in due]
