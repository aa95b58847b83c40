"""`sealq run` + SIGTERM on the stand-in, as SQS counts it: one shutdown adds at most one to a
message's receive count, however many of the worker's long polls are open at the signal.
(Helpers from `test_worker_e2e`.)"""

from __future__ import annotations

from tests.integration.test_worker_e2e import Setup, setup, wait_for, worker_process

__all__ = ["setup"]  # the fixture, used by name


def receive_counts(s: Setup, expected: int) -> dict[str, int]:
    """Every message's ApproximateReceiveCount as this very receive reports it (so: + 1)."""
    wanted = ["ApproximateReceiveCount"]
    got = s.receive_each(s.queue_url, expected, 50, VisibilityTimeout=60, MessageSystemAttributeNames=wanted)
    return {mid: int(m["Attributes"]["ApproximateReceiveCount"]) for mid, m in got.items()}


def test_sigterm_with_long_polls_open_adds_at_most_one_receive(setup: Setup) -> None:
    s = setup
    s.send([f"lp{i}" for i in range(30)])
    flags = {"pollers": 4, "concurrency": 2, "max-in-flight": 100, "wait-time-s": 5}
    with worker_process(s, delay=2.0, **flags) as run:
        # All 30 received once, two handlers running, four polls waiting on an empty queue.
        wait_for(lambda: s.visible(s.queue_url) == 0, 20, "all received", run)
        wait_for(lambda: "worker started" in run.stderr, 10, "worker started", run)
        code = run.stop(timeout=20)
        err = run.stderr
    assert code == 0, err[-3000:]
    left = 30 - len(s.handled_ids())
    counts = receive_counts(s, left)
    assert len(counts) == left  # nothing lost
    # received once before the signal, at most once more during it, once by us just now
    assert max(counts.values()) <= 3, sorted(counts.values())
