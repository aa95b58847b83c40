"""Human durations for key lifetimes and settings."""

from __future__ import annotations

import pytest

from sealq.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 12 * 3600),
        ("1d12h", 86400 + 12 * 3600),
        ("90m", 5400),
        ("3600s", 3600),
        ("2w", 14 * 86400),
        ("3600", 3600),
        (" 1D 2H ", 86400 + 7200),
        ("1h30m15s", 5415),
    ],
)
def test_parses_good_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "30x", "1.5h", "-5m", "h1", "30 days", "1d-2h", "abc"])
def test_rejects_bad_durations_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*30d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0s", "0d0h"])
def test_rejects_zero(text: str) -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-5, "0s"), (59, "59s"), (3600, "1h"), (90061, "1d1h"), (30 * 86400, "30d")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
