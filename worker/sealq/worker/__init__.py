"""The worker: receive from SQS, open with keys unwrapped through KMS, hand to your handler,
settle each message (delete, retry later, or dead-letter with a reason).

Handlers need only `Message` and `HandlerRejected`. Needs `sealq[worker]`.
"""

from sealq.extras import require

require("worker", "sealq.worker")  # one line naming the extra, not a bare ModuleNotFoundError

from sealq.worker.classify import KeyIndex, classify
from sealq.worker.handler import HandlerRejected, Message, load_handler
from sealq.worker.keycache import KeyCache, KeyRefused, KeyUnavailable
from sealq.worker.pool import Tuning, Worker
from sealq.worker.settings import SettingsError, WorkerSettings, load_settings
from sealq.worker.stats import Stats

__all__ = [
    "HandlerRejected",
    "KeyCache",
    "KeyIndex",
    "KeyRefused",
    "KeyUnavailable",
    "Message",
    "SettingsError",
    "Stats",
    "Tuning",
    "Worker",
    "WorkerSettings",
    "classify",
    "load_handler",
    "load_settings",
]
