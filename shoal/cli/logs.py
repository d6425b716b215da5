"""Logging for ``shoal serve``: plain text lines or one JSON object per line, to stderr.

Both carry the time with milliseconds and the UTC offset (``2026-12-02T22:40:00.123+0000``).
A record logged with ``extra={"client": ..., "status": ..., "outcome": ..., "latency_ms": ...,
"request": ...}`` (the HTTP access log) gets those as separate fields in JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any

# Attributes that access-log records carry as ``extra``, copied into JSON lines as fields.
EXTRA_FIELDS = ("client", "status", "outcome", "latency_ms", "request")


def timestamp(created: float) -> str:
    """``created`` (seconds since the epoch) in local time, with milliseconds and the
    offset from UTC."""
    moment = datetime.fromtimestamp(created).astimezone()
    return (moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}"
            + moment.strftime("%z"))


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE``, then the traceback if there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return timestamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra value JSON cannot hold is written as its text.
        return json.dumps(entry, default=str)


def setup_logging(level: str, fmt: str) -> None:
    """Send every log record at ``level`` or above to stderr as ``fmt`` (text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
