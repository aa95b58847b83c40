"""Structured logs: JSON lines for machines (containers), short text lines on a terminal.

Per-message events carry ids, kid, reason and latency, and nothing else: the formatter only
prints the fields it is given, and sealq never gives it plaintext, bodies or key material.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log event `name` with `fields`; cheap when the level is off (per-message debug)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"sealq": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(getattr(record, "sealq", {}))
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def text_value(value: object) -> str:
    """One field value for a text line. Values come from clients (kid, client-id, message
    id), so anything that could end the line, fake another field or drive the terminal
    (newlines, `=`, spaces, quotes, ANSI escapes, other control or format characters) is
    quoted and escaped, logfmt style; a plain token is printed as is."""
    text = str(value)
    if text and all(ch.isprintable() and ch not in ' "=\\' for ch in text):
        return text
    return '"' + "".join(_escape(ch) for ch in text) + '"'


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "sealq", {})
        extra = " ".join(f"{k}={text_value(v)}" for k, v in fields.items() if v is not None)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        message = "".join(ch if ch.isprintable() else _escape(ch) for ch in record.getMessage())
        line = f"{stamp} {record.levelname.lower():<7} {message}"
        return f"{line} {extra}" if extra else line


def configure(level: str = "info", fmt: str = "auto") -> None:
    """`auto` is text on a terminal and JSON otherwise (containers, files, pipes)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger("sealq")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # botocore's own debug output can include request bodies: keep it quiet.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("aiobotocore").setLevel(logging.WARNING)
