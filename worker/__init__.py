"""sealq server side: keys and their lifecycle through KMS, the worker pool, the DLQ tools.

Handlers need only `Message` and `HandlerRejected`; operators mostly use the `sealq` CLI.
"""

from .classify import KeyIndex, classify
from .handler import HandlerRejected, Message, load_handler
from .keycache import KeyCache, KeyRefused, KeyUnavailable
from .keyset import KeyRecord, Keyset, KeySpec, KeyState, UnknownKidError
from .keystore import KeysetError, KeysetNotFoundError, KeysetStore
from .kms_keys import KeyShreddedError, create_key, unwrap
from .pool import Worker
from .settings import SettingsError, WorkerSettings, load_settings
from .stats import Stats

__all__ = [
    "HandlerRejected",
    "KeyCache",
    "KeyIndex",
    "KeyRecord",
    "KeyRefused",
    "KeyShreddedError",
    "KeySpec",
    "KeyState",
    "KeyUnavailable",
    "Keyset",
    "KeysetError",
    "KeysetNotFoundError",
    "KeysetStore",
    "Message",
    "SettingsError",
    "Stats",
    "UnknownKidError",
    "Worker",
    "WorkerSettings",
    "classify",
    "create_key",
    "load_handler",
    "load_settings",
    "unwrap",
]
