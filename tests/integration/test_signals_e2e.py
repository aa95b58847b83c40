"""Signals reaching `sealq run` while handlers are running: the first SIGTERM or SIGINT lets
them finish and deletes only what they finished; a second signal leaves at once and deletes
nothing, so SQS delivers the unfinished messages again."""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.test_worker_e2e import Setup, setup, wait_for, worker_process

__all__ = ["setup"]  # the fixture, imported for pytest

SLOW_HANDLER = """
import asyncio, os

MARKS = os.environ["E2E_HANDLED"]
DELAY = float(os.environ.get("E2E_DELAY", "0"))

def mark(what):
    with open(MARKS, "a") as f:
        f.write(what + "\\n")

async def handle(message):
    text = message.plaintext.decode()
    mark("started " + text)
    await asyncio.sleep(DELAY)
    mark("finished " + text)
"""


def _marks(s: Setup, kind: str) -> set[str]:
    return {line.split(" ", 1)[1] for line in s.handled_ids() if line.startswith(kind + " ")}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_first_signal_lets_running_handlers_finish_then_deletes_them(
    setup: Setup, sig: signal.Signals
) -> None:
    s = setup
    (s.tmp / "slow_handler.py").write_text(SLOW_HANDLER)
    ids = {"a", "b", "c"}
    s.send(sorted(ids))
    with worker_process(s, delay=2.0, handler="slow_handler:handle") as run:
        wait_for(lambda: _marks(s, "started") == ids, 30, "all three handlers running", run)
        assert _marks(s, "finished") == set()  # the signal lands while every handler runs
        code = run.stop(sig, timeout=15)
        err = run.stderr
    assert code == 0, err[-3000:]
    assert _marks(s, "finished") == ids
    # Deleted, not merely hidden: the 30 s visibility timeout would still count them.
    assert s.depth(s.queue_url) == 0
    assert s.depth(s.dlq_url) == 0


def test_second_signal_exits_at_once_and_deletes_nothing(setup: Setup) -> None:
    s = setup
    (s.tmp / "slow_handler.py").write_text(SLOW_HANDLER)
    s.send(["slow"])
    with worker_process(s, delay=60.0, handler="slow_handler:handle") as run:
        wait_for(lambda: _marks(s, "started") == {"slow"}, 30, "the handler running", run)
        run.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert run.proc.poll() is None  # the first signal waits for the handler (grace 10 s)
        started = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        code = run.proc.wait(timeout=5)
        took = time.monotonic() - started
    assert code != 0 and took < 3
    assert _marks(s, "finished") == set()
    # Not deleted: still in the queue (hidden until its visibility timeout), so not lost.
    assert s.depth(s.queue_url) == 1
    assert s.depth(s.dlq_url) == 0
