"""The handler contract: what a user's `async def handle(message)` receives and may raise."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sealq.errors import SealqError


class HandlerRejected(SealqError):
    """Raise from a handler to dead-letter a message for good (reason `handler-rejected`).

    Any other exception, or a timeout, is treated as transient and the message is retried.
    The message text goes into the DLQ's detail attribute, truncated: keep it free of secrets,
    and say there what an operator should do with the message.
    """


class HandlerLoadError(SealqError):
    """`--handler module:function` cannot be imported or is not callable; the message says which."""


@dataclass(frozen=True, slots=True)
class Message:
    """A decrypted message. `plaintext` never leaves the process through sealq's logs."""

    plaintext: bytes
    kid: str
    message_id: str
    receive_count: int
    client_id: str | None = None
    content_type: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def text(self, encoding: str = "utf-8") -> str:
        return self.plaintext.decode(encoding)

    def json(self) -> Any:
        return json.loads(self.plaintext)

    def __repr__(self) -> str:  # keep plaintext out of tracebacks and debug output
        return (
            f"Message(message_id={self.message_id!r}, kid={self.kid!r}, "
            f"bytes={len(self.plaintext)}, receive_count={self.receive_count})"
        )


Handler = Callable[[Message], Awaitable[object]]


def load_handler(spec: str) -> Handler:
    """Import `module:function`; a plain function is run in a thread so it cannot block."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerLoadError(f"cannot import handler module {module_name!r}: {exc}") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise HandlerLoadError(f"{module_name!r} has no callable {attr!r}; check --handler")
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__):
        return func  # type: ignore[no-any-return]

    async def in_thread(message: Message) -> object:
        result = await asyncio.to_thread(func, message)
        # A callable that returns an awaitable (a partial, a wrapper) is async after all:
        # finishing without awaiting it would delete a message its handler never ran.
        if inspect.isawaitable(result):
            return await result
        return result

    return in_thread
