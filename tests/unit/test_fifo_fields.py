"""The FIFO fields a producer sends (sealq.producer.fifo, sealq.aws.fifo): a group id is
required on a FIFO queue, a deduplication id is refused on a standard one, and an id the
caller did not give is random, never derived from the plaintext."""

from __future__ import annotations

import pytest

from sealq.aws.fifo import id_problem, is_fifo_url
from sealq.errors import FifoError, SealqError
from sealq.producer import OutgoingMessage
from sealq.producer.fifo import QueueKind

FIFO_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo"
STANDARD_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"


@pytest.mark.parametrize(
    ("url", "fifo"),
    [(FIFO_URL, True), (FIFO_URL + "/", True), (STANDARD_URL, False), (STANDARD_URL + "-fifo", False)],
)
def test_the_url_says_whether_a_queue_is_fifo(url: str, fifo: bool) -> None:
    assert is_fifo_url(url) is fifo


@pytest.mark.parametrize("value", ["g", "a" * 128, "tenant-42/orders:eu", "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"])
def test_ids_sqs_takes(value: str) -> None:
    assert id_problem("group_id", value) is None


@pytest.mark.parametrize("value", ["", "a" * 129, "has space", "é", "tab\t"])
def test_ids_sqs_refuses(value: str) -> None:
    assert id_problem("group_id", value) is not None
    with pytest.raises(FifoError, match="group_id must be 1 to 128"):
        OutgoingMessage(b"x", group_id=value)


def test_fifo_queue_needs_a_group_id_before_any_call() -> None:
    with pytest.raises(FifoError, match="FIFO queue needs a group_id") as info:
        QueueKind(FIFO_URL).fields(3, None, None)
    assert isinstance(info.value, SealqError) and "\n" not in str(info.value)
    assert "message 3" in str(info.value)


def test_standard_queue_refuses_a_deduplication_id_and_passes_a_group_through() -> None:
    queue = QueueKind(STANDARD_URL)
    assert not queue.needs_lookup
    with pytest.raises(FifoError, match="FIFO queues only"):
        queue.fields(0, None, "d1")
    assert queue.fields(0, None, None) == {}
    assert queue.fields(0, "tenant-1", None) == {"MessageGroupId": "tenant-1"}  # a fair queue


def test_caller_ids_are_sent_as_given() -> None:
    queue = QueueKind(FIFO_URL)
    queue.learn(None)
    assert queue.fields(0, "g", "d-1") == {"MessageGroupId": "g", "MessageDeduplicationId": "d-1"}


def test_without_content_based_deduplication_each_message_gets_a_fresh_random_id() -> None:
    queue = QueueKind(FIFO_URL)
    assert queue.needs_lookup
    queue.learn({"Attributes": {"ContentBasedDeduplication": "false"}})
    assert not queue.needs_lookup
    ids = {queue.fields(0, "g", None)["MessageDeduplicationId"] for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 32 for i in ids)


def test_a_failed_lookup_means_random_ids() -> None:
    queue = QueueKind(FIFO_URL)
    queue.learn(None)
    assert "MessageDeduplicationId" in queue.fields(0, "g", None)


def test_with_content_based_deduplication_no_id_is_sent() -> None:
    queue = QueueKind(FIFO_URL)
    queue.learn({"Attributes": {"ContentBasedDeduplication": "true"}})
    assert queue.fields(0, "g", None) == {"MessageGroupId": "g"}
