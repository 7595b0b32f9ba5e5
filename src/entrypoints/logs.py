"""Logging for every `concert` command: one line per record, JSON (the default, for machines)
or text (``CONCERT_LOG_FORMAT=text``, for people), each carrying the id of the request it was
written for, if any (`REQUEST_ID`).

Configured as a `logging.config.dictConfig` dictionary, which uvicorn applies in every worker
process it starts, so that the workers log as the parent does.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime
from typing import Any

# the id of the request being served in this task, for every record written meanwhile
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
FORMATS = ("json", "text")
# what a record carries beside its message, when given as ``extra``
FIELDS = ("method", "route", "status", "duration_ms", "user_id")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, the request's id, the
    fields given as ``extra`` and, for an error, its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        line.update((name, value) for name, value in vars(record).items() if name not in _STANDARD)
        line.pop("color_message", None)  # uvicorn's copy of the message with colours
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message key=value...``, for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        given = " ".join(
            f"{name}={getattr(record, name)}" for name in FIELDS if hasattr(record, name)
        )
        head, _, rest = text.partition(": ")
        if request_id is not None:
            head = f"{head} [{request_id}]"
        return f"{head}: {rest}{' ' + given if given else ''}"


def logging_config(log_format: str) -> dict[str, Any]:
    """The `dictConfig` of every process: one handler on standard error, the chosen format,
    uvicorn's own loggers sent through it, its access log off (the service writes its own
    request lines)."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            name: {"level": "INFO", "handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error")
        }
        | {"uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False}},
    }
