"""Dead-letter queues: what is in one, why, and getting it out again. Three layers, so each
can be tested on its own: `records` is pure (a received message becomes a body-less record;
records are filtered, counted, checked against thresholds and turned back into source-queue
entries), `scan` is the SQS I/O (queue checks, a scan that releases what it hides, batched
send and delete), and `operations` combines them into stats, peek, redrive, purge and a watch
check that return the values in `results`; printing and exit codes belong to the CLI."""

from sealq.dlq.operations import (
    DEFAULT_MAX_MESSAGES,
    EVERYTHING,
    OperationFailedError,
    SameQueueError,
    peek,
    purge,
    redrive,
    stats,
    watch_check,
)
from sealq.dlq.records import (
    REASONS,
    TOTAL,
    UNLABELLED,
    Breach,
    DlqRecord,
    Group,
    Selection,
    Stats,
    Threshold,
    aggregate,
    check_thresholds,
    parse_message,
    parse_reason,
    parse_threshold,
    redrive_entry,
)
from sealq.dlq.results import (
    MoveTask,
    PeekResult,
    PurgeResult,
    RedriveResult,
    StatsResult,
    Tally,
    WatchCheck,
)
from sealq.dlq.scan import (
    NotADeadLetterQueueError,
    QueueAccessError,
    Scan,
    dlq_attributes,
    queue_attributes,
)

__all__ = [
    "DEFAULT_MAX_MESSAGES",
    "EVERYTHING",
    "REASONS",
    "TOTAL",
    "UNLABELLED",
    "Breach",
    "DlqRecord",
    "Group",
    "MoveTask",
    "NotADeadLetterQueueError",
    "OperationFailedError",
    "PeekResult",
    "PurgeResult",
    "QueueAccessError",
    "RedriveResult",
    "SameQueueError",
    "Scan",
    "Selection",
    "Stats",
    "StatsResult",
    "Tally",
    "Threshold",
    "WatchCheck",
    "aggregate",
    "check_thresholds",
    "dlq_attributes",
    "parse_message",
    "parse_reason",
    "parse_threshold",
    "peek",
    "purge",
    "queue_attributes",
    "redrive",
    "redrive_entry",
    "stats",
    "watch_check",
]
