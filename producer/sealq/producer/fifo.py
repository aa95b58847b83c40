"""The FIFO fields of an outgoing message: `MessageGroupId` and `MessageDeduplicationId`.

A deduplication id is never derived from the plaintext: a hash of it would tell anyone who
can read the queue which messages are equal, the one thing sealing must not leak. So it is
the caller's id, or a random one, or (only on a queue with ContentBasedDeduplication on, as
learnt from one GetQueueAttributes call per producer) none at all. In that last case SQS
hashes the body, which is the ciphertext: it differs every time, so content-based
deduplication never deduplicates a sealed message (the README says so). A producer that may
not call GetQueueAttributes sends a random id instead, which SQS takes on either kind of
FIFO queue.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from sealq.aws.fifo import id_problem, is_fifo_url
from sealq.errors import FifoError

CONTENT_DEDUP_ATTRIBUTE = "ContentBasedDeduplication"


def check_ids(group_id: str | None, deduplication_id: str | None) -> None:
    """Refuse malformed ids when the message is made, before any call."""
    for name, value in (("group_id", group_id), ("deduplication_id", deduplication_id)):
        if value is not None and (problem := id_problem(name, value)) is not None:
            raise FifoError(problem)


class QueueKind:
    """What the producer knows about its queue: FIFO or not (from the URL) and, for a FIFO
    queue, whether content-based deduplication is on (learnt once, then cached)."""

    def __init__(self, queue_url: str) -> None:
        self.fifo = is_fifo_url(queue_url)
        self.content_dedup: bool | None = None if self.fifo else False

    @property
    def needs_lookup(self) -> bool:
        return self.content_dedup is None

    def learn(self, response: Mapping[str, Any] | None) -> None:
        """A GetQueueAttributes response, or None when the call failed (then: random ids)."""
        value = ((response or {}).get("Attributes") or {}).get(CONTENT_DEDUP_ATTRIBUTE, "false")
        self.content_dedup = str(value).lower() == "true"

    def fields(self, index: int, group_id: str | None, deduplication_id: str | None) -> dict[str, str]:
        """The SendMessage(Batch) parameters for one message; FifoError if SQS would refuse."""
        if not self.fifo:
            if deduplication_id is not None:
                raise FifoError(
                    f"message {index}: deduplication_id applies to FIFO queues only (a queue "
                    "name ending in .fifo); leave it out for a standard queue"
                )
            return {} if group_id is None else {"MessageGroupId": group_id}
        if group_id is None:
            raise FifoError(
                f"message {index}: a FIFO queue needs a group_id (messages of one group are "
                "delivered in order); pass group_id=... or --group-id"
            )
        out = {"MessageGroupId": group_id}
        if deduplication_id is not None:
            out["MessageDeduplicationId"] = deduplication_id
        elif not self.content_dedup:
            out["MessageDeduplicationId"] = secrets.token_hex(16)  # never from the plaintext
        return out
