"""The worker's log lines: a value a client chose cannot forge a line or drive a terminal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sealq.worker.logs import JsonFormatter, TextFormatter, event

FORGED = "shop-eu\n12:00:00 error   key evicted kid=k-1\x1b[2J\x1b[31m\r\x9b1m\u202e x=y"


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log = logging.getLogger("sealq.test-logs")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, out, handler
    log.handlers[:] = []


def test_text_lines_escape_what_a_client_chose(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    log, out, handler = logger
    handler.setFormatter(TextFormatter())
    event(log, logging.WARNING, "dead-lettered", reason="malformed", client_id=FORGED, kid="k\n1")
    log.warning("kid %s unknown", "evil\nline\x1b[0m")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # one line per record, whatever the values held
    text = out.getvalue()
    for raw in ("\x1b", "\r", "\x9b", "\u202e"):
        assert raw not in text
    first = lines[0]
    assert first.endswith(
        'reason=malformed client_id="shop-eu\\n12:00:00 error   key evicted kid=k-1'
        '\\x1b[2J\\x1b[31m\\r\\x9b1m\\u202e x=y" kid="k\\n1"'
    )
    assert "kid evil\\nline\\x1b[0m unknown" in lines[1]


def test_plain_values_print_as_they_are(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    log, out, handler = logger
    handler.setFormatter(TextFormatter())
    event(log, logging.INFO, "handled", kid="k-2026-01", client_id="shop-eu", ms=12.5, empty="")
    assert out.getvalue().rstrip("\n").endswith('handled kid=k-2026-01 client_id=shop-eu ms=12.5 empty=""')


def test_json_lines_keep_the_value_exactly(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    log, out, handler = logger
    handler.setFormatter(JsonFormatter())
    event(log, logging.WARNING, "dead-lettered", client_id=FORGED)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "\x1b" not in lines[0]
    assert json.loads(lines[0])["client_id"] == FORGED
