"""Appends each message as one JSON line to the file named by SEALQ_EXAMPLE_OUT
(default ./messages.jsonl). The write is synchronous and small; a real handler that does
slow I/O should use an async client or asyncio.to_thread.

    SEALQ_EXAMPLE_OUT=/data/out.jsonl sealq run --handler sealq.examples.file_handler:handle ...
"""

from __future__ import annotations

import base64
import json
import os

from sealq.worker.handler import Message


async def handle(message: Message) -> None:
    try:
        payload: dict[str, str] = {"text": message.plaintext.decode("utf-8")}
    except UnicodeDecodeError:
        payload = {"base64": base64.b64encode(message.plaintext).decode("ascii")}
    line = json.dumps(
        {"message_id": message.message_id, "kid": message.kid, "client_id": message.client_id, **payload}
    )
    with open(os.environ.get("SEALQ_EXAMPLE_OUT", "messages.jsonl"), "a", encoding="utf-8") as out:
        out.write(line + "\n")
