"""The adaptive receiving policy, as vectors: receive results in, poller targets out."""

from __future__ import annotations

import pytest

from sealq.worker.pollers import IDLE_POLLERS, PollerPolicy
from sealq.worker.receiving import MIN_SETTLE_CONNECTIONS, SETTLE_CONNECTIONS, policy_for, sqs_connections
from sealq.worker.settings import WorkerSettings

FULL, EMPTY = (10, 10, True), (0, 10, True)
FULL_NO_ROOM = (10, 10, False)
PARTIAL = (4, 10, True)
FAIL = None  # a failed receive

VECTORS = [
    # name, floor, cap, events, targets after each event
    ("full grows by one each", 1, 16, [FULL] * 4, [2, 3, 4, 5]),
    ("growth stops at the cap", 1, 3, [FULL] * 5, [2, 3, 3, 3, 3]),
    ("no room: no growth", 1, 16, [FULL, FULL_NO_ROOM, FULL_NO_ROOM, FULL], [2, 2, 2, 3]),
    ("partial holds", 1, 16, [FULL, FULL, PARTIAL, PARTIAL], [2, 3, 3, 3]),
    ("empty shrinks by one each", 1, 16, [FULL] * 4 + [EMPTY] * 3, [2, 3, 4, 5, 4, 3, 2]),
    ("never below the floor", 2, 16, [FULL, EMPTY, EMPTY, EMPTY], [3, 2, 2, 2]),
    ("a failure shrinks like an empty", 1, 16, [FULL, FULL, FAIL, FAIL, FAIL], [2, 3, 2, 1, 1]),
    ("a smaller batch asked for, all of it came: full", 1, 16, [(5, 5, True)], [2]),
    ("fixed never moves", 4, 4, [FULL, EMPTY, FAIL, PARTIAL], [4, 4, 4, 4]),
    (
        "burst then idle: up and back to the floor",
        1,
        8,
        [FULL] * 9 + [EMPTY] * 9,
        [*range(2, 9), 8, 8, *range(7, 0, -1), 1, 1],
    ),
]


@pytest.mark.parametrize(("name", "floor", "cap", "events", "targets"), VECTORS, ids=[v[0] for v in VECTORS])
def test_policy_vectors(
    name: str, floor: int, cap: int, events: list[tuple[int, int, bool] | None], targets: list[int]
) -> None:
    policy = PollerPolicy(floor, cap)
    assert policy.target == floor
    seen = [policy.failed() if e is None else policy.received(*e) for e in events]
    assert seen == targets
    assert policy.target == targets[-1]


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="floor"):
        PollerPolicy(0, 4)
    with pytest.raises(ValueError, match="floor"):
        PollerPolicy(5, 4)


def _settings(**over: object) -> WorkerSettings:
    values: dict[str, object] = {"queue_url": "q", "dlq_url": "d", "keyset": "k", "handler": "m:f"}
    values.update(over)
    return WorkerSettings(**values)  # type: ignore[arg-type]


def test_default_is_adaptive_and_pollers_n_is_fixed() -> None:
    adaptive = policy_for(_settings())
    assert adaptive.adapts and adaptive.floor == IDLE_POLLERS and adaptive.target == IDLE_POLLERS
    fixed = policy_for(_settings(pollers=3))
    assert not fixed.adapts and (fixed.floor, fixed.cap, fixed.target) == (3, 3, 3)


@pytest.mark.parametrize(
    ("max_pollers", "max_in_flight", "cap"),
    [(16, 1000, 16), (16, 100, 10), (16, 45, 4), (16, 5, 1), (4, 1000, 4)],
)
def test_cap_is_max_pollers_and_what_max_in_flight_holds(
    max_pollers: int, max_in_flight: int, cap: int
) -> None:
    settings = _settings(max_pollers=max_pollers, max_in_flight=max_in_flight, concurrency=1)
    assert policy_for(settings).cap == cap


def test_the_connection_pool_fits_every_poller_and_settling() -> None:
    for over in ({}, {"max_pollers": 40}, {"pollers": 7}):
        settings = _settings(**over)
        assert sqs_connections(settings) == policy_for(settings).cap + SETTLE_CONNECTIONS


def test_a_small_client_pool_caps_the_pollers() -> None:
    """An embedder's client with botocore's default pool of 10: pollers leave room to settle."""
    settings = _settings(max_pollers=16, max_in_flight=1000)
    assert policy_for(settings, pool=10).cap == 10 - MIN_SETTLE_CONNECTIONS
    assert policy_for(settings, pool=100).cap == 16
    assert policy_for(settings, pool=2).cap == 1
    assert policy_for(_settings(pollers=12), pool=10).cap == 12  # fixed: the user's explicit choice
