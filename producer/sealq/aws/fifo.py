"""SQS FIFO queues' rules, in the one place the producer, the worker and the test doubles
read them from (AWS SQS Developer Guide, "FIFO queues", and the SendMessage reference).

- A FIFO queue's name ends in `.fifo` (SQS requires it), so its URL says what it is: no
  GetQueueAttributes call (and no IAM permission) is needed to tell.
- `MessageGroupId` is required on a FIFO queue. On a standard queue it is allowed and makes
  it a *fair* queue (a tenant id; no ordering), so sealq passes it through there too.
- `MessageDeduplicationId` applies to FIFO queues only; within `DEDUP_WINDOW_S` a second
  message with the same id is accepted but not delivered.
- Both ids: 1 to 128 characters, alphanumeric or punctuation (printable ASCII but space).
- `DelaySeconds` per message is refused on FIFO queues (only the queue's own delay applies).
"""

from __future__ import annotations

import re

FIFO_SUFFIX = ".fifo"
DEDUP_WINDOW_S = 300
"""SQS's deduplication interval: five minutes."""
MAX_ID_CHARS = 128
_ID = re.compile(r"[\x21-\x7e]{1,128}")


def is_fifo_url(queue_url: str) -> bool:
    """Whether the queue is a FIFO queue (its name, the URL's last part, ends in .fifo)."""
    return queue_url.rstrip("/").endswith(FIFO_SUFFIX)


def id_problem(name: str, value: str) -> str | None:
    """Why SQS would refuse `value` as a MessageGroupId / MessageDeduplicationId, or None."""
    if _ID.fullmatch(value) is None:
        return (
            f"{name} must be 1 to {MAX_ID_CHARS} characters, letters, digits or punctuation "
            f"(no spaces), as SQS requires; got {len(value)} characters"
        )
    return None
