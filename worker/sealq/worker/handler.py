"""The handler contract: what a user's `async def handle(message)` receives and may raise.

A handler may instead declare a payload type, `handle(order: Order[, message])`: see `typed`;
`loading` turns either into a `Handler`.
"""

from __future__ import annotations

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
    """`--handler module:function` cannot be imported, is not callable, or has a signature
    sealq cannot call (checked at start-up); the message says which."""


class InvalidPayload(SealqError):
    """The plaintext did not validate into a typed handler's payload type: dead-lettered at
    once as `invalid-payload`. The message names field paths and error types, never values."""


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
