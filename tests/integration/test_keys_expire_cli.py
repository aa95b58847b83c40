"""`sealq keys expire --past` and `keys list` on a local keyset file, as an operator runs them
(subprocess). No AWS call is involved: shredding only edits the keyset."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealq.keys.store import parse_keyset
from sealq.testing.kms import FakeKMS, record_for, write_keyset

from .cli_helpers import sealq


def _env(keyset: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALQ_")}
    return {**env, "SEALQ_KEYSET": str(keyset), **extra}


@pytest.fixture
def keyset(tmp_path: Path) -> Path:
    """`live` (expires in 1h), `just-past` (expired 30 s ago), `long-past` (expired 1h ago)."""
    kms, now = FakeKMS(), datetime.now(UTC)
    records = [
        record_for(kms, ec.generate_private_key(ec.SECP256R1()), "live", expires_in_s=3600, now=now),
        record_for(
            kms,
            ec.generate_private_key(ec.SECP256R1()),
            "just-past",
            expires_in_s=3600,
            now=now - timedelta(seconds=3630),
        ),
        record_for(
            kms,
            ec.generate_private_key(ec.SECP256R1()),
            "long-past",
            expires_in_s=3600,
            now=now - timedelta(hours=2),
        ),
    ]
    path = tmp_path / "keyset.json"
    write_keyset(path, *records)
    return path


def _wrapped(keyset: Path) -> dict[str, bool]:
    return {r.kid: r.wrapped_private_key is not None for r in parse_keyset(keyset.read_bytes())}


def test_expire_past_waits_for_the_worker_key_grace(keyset: Path) -> None:
    out = sealq(_env(keyset), "keys", "expire", "--past").stdout.splitlines()
    assert out[0] == "expired long-past: wrapped private key erased"
    assert out[1].startswith("kept just-past: expired, but inside the 5m grace (4m")
    # a message sealed just before `just-past` expired still opens for 5 minutes: keep its key
    assert _wrapped(keyset) == {"live": True, "just-past": True, "long-past": False}

    sealq(_env(keyset, SEALQ_KEY_GRACE_S="3600"), "keys", "expire", "--past")  # the worker's own setting
    assert _wrapped(keyset)["just-past"]

    out = sealq(_env(keyset), "keys", "expire", "--past", "--grace", "20s").stdout.splitlines()
    assert out == ["expired just-past: wrapped private key erased"]
    assert _wrapped(keyset) == {"live": True, "just-past": False, "long-past": False}


def test_grace_is_only_for_past(keyset: Path) -> None:
    proc = sealq(_env(keyset), "keys", "expire", "live", "--grace", "0", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "sealq: error: --grace applies only with --past; `keys expire KID` ends that key now"
    ]
    assert _wrapped(keyset)["live"]


def test_list_shows_an_erased_key_as_shredded_not_its_time_left(keyset: Path) -> None:
    sealq(_env(keyset), "keys", "expire", "live")
    rows = {
        line.split()[0]: line.split() for line in sealq(_env(keyset), "keys", "list").stdout.splitlines()[1:]
    }
    assert rows["live"][2] == "expired"
    assert rows["live"][4] == "shredded"  # was "59m59s" left
    assert rows["just-past"][4] == "0s"  # past expiry, private key still wrapped
    listed = {k["kid"]: k for k in json.loads(sealq(_env(keyset), "keys", "list", "--json").stdout)["keys"]}
    assert listed["live"]["private_key"] == "erased"
