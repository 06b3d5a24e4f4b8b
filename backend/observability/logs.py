"""Logging: readable text by default, or LOG_FORMAT=json, one JSON object per line.

Every line a request causes carries its request id: the id lives in a context variable
that the request middleware sets (and the WebSocket sets per message), and tasks started
while handling the request inherit it. Each request also gets one access line (method,
path without its query string, status, duration, request id, transport).
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

# The id of the request this code runs for; None outside any request (start-up, the writer).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

ACCESS_LOGGER: Final = "backend.access"
_HANDLER_NAME: Final = "portal-json"
access_log = logging.getLogger(ACCESS_LOGGER)


class JSONFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (newlines inside values are escaped)."""
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid is not None:
            line["request_id"] = rid
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str, fmt: str, *, stream: TextIO | None = None) -> bool:
    """Set up the root logger; True when access lines are wanted (JSON mode).

    Text keeps Python's and uvicorn's own format. JSON replaces both, uvicorn's loggers
    included, and turns uvicorn's access log off: ours has the request id and no query
    string (which may carry a token).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    if fmt != "json":
        logging.basicConfig(level=level.upper())
        logging.getLogger("uvicorn.access").disabled = False
        return False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JSONFormatter())
    root.handlers = [h for h in root.handlers if not _is_plain_stream(h)]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_log = logging.getLogger(name)
        uvicorn_log.handlers = []
        uvicorn_log.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    return True


def _is_plain_stream(handler: logging.Handler) -> bool:
    # basicConfig's stderr handler: two formats on one stream would break line parsing.
    return type(handler) is logging.StreamHandler


def log_access(
    *, method: str, path: str, status: int, received_at: float, rid: str, transport: str
) -> None:
    """The one access line of a request (path without its query string)."""
    duration_ms = round((time.perf_counter() - received_at) * 1000, 3)
    access_log.info(
        "%s %s %d %.1f ms", method, path, status, duration_ms,
        extra={
            "request_id": rid,
            "access": {
                "method": method, "path": path, "status": status,
                "duration_ms": duration_ms, "transport": transport,
            },
        },
    )
