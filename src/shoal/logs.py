"""Structured logs: one JSON object a line, each with an ``event`` field.

The dashboard and ``grep`` read the same facts, so every line says what
happened in one word and carries its details as fields. A person at a
terminal reads the same lines as text (:class:`TextFormatter`): the time and
the message, which says it in words.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["LOG_FORMATS", "JsonFormatter", "TextFormatter", "configure"]

LOG_FORMATS = ("text", "json")

# (uvicorn adds its message with terminal colours: not a field of ours.)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """``{"time": …, "level": …, "event": …, "message": …, **extra}``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.name),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "event":
                data[key] = value
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """``12:03:04 message`` (and a warning's or error's level): for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        text = f"{when} {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(level: int = logging.INFO, log_format: str = "json") -> None:
    """Send shoal's logs to stderr, as JSON lines or (``log_format="text"``) as text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    logger = logging.getLogger("shoal")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    # What the HTTP server says (a malformed request, say), in the same form.
    server = logging.getLogger("uvicorn")
    server.handlers[:] = [handler]
    server.propagate = False
