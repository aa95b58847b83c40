"""The worker: receive from SQS, open with keys unwrapped through KMS, hand to your handler,
settle each message (delete, retry later, or dead-letter with a reason).

Handlers need only `Message` and `HandlerRejected` (or a payload type of their own: a
typed handler's invalid payloads are dead-lettered as `invalid-payload`). Needs `sealq[worker]`.
"""

from sealq.extras import require

require("worker", "sealq.worker")  # one line naming the extra, not a bare ModuleNotFoundError

from sealq.worker.classify import KeyIndex, classify
from sealq.worker.handler import HandlerRejected, InvalidPayload, Message
from sealq.worker.keycache import KeyCache, KeyRefused, KeyUnavailable
from sealq.worker.loading import load_handler
from sealq.worker.pool import Tuning, Worker
from sealq.worker.settings import SettingsError, WorkerSettings, load_settings
from sealq.worker.stats import Stats

__all__ = [
    "HandlerRejected",
    "InvalidPayload",
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
