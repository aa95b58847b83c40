"""The ack retry rule: back off, and keep trying while the receipt can still be valid."""

from __future__ import annotations

import pytest

from sealq.worker.batcher import RECEIPT_MARGIN_S, RETRY_MAX_S, retry_delay


def test_retry_delay_backs_off_and_stops_before_the_deadline() -> None:
    deadline = 100.0
    assert retry_delay(0, 0.0, deadline) == 0.1
    assert retry_delay(3, 0.0, deadline) == 0.8
    assert retry_delay(20, 0.0, deadline) == RETRY_MAX_S
    # the last attempt is made just before the receipt may lapse, not skipped
    assert retry_delay(20, deadline - RECEIPT_MARGIN_S - 0.3, deadline) == pytest.approx(0.3)
    assert retry_delay(0, deadline - RECEIPT_MARGIN_S, deadline) is None
    assert retry_delay(0, deadline + 5, deadline) is None
