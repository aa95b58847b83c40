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


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "sealq", {})
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname.lower():<7} {record.getMessage()}"
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
