"""Prints each message to stdout. For trying sealq out: it shows plaintext, so never point it
at real traffic whose content matters.

    sealq run --handler sealq.examples.print_handler:handle ...
"""

from __future__ import annotations

import sys

from sealq.worker.handler import Message


async def handle(message: Message) -> None:
    text = message.plaintext.decode("utf-8", errors="replace")
    sys.stdout.write(f"{message.message_id} kid={message.kid} client={message.client_id}: {text}\n")
    sys.stdout.flush()
