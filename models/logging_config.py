"""One log format for every process (API, gunicorn, supervisor, workers, Celery): plain or JSON lines.

Lines about work carry who and what: the worker and its model for the whole process, and the job,
the batch and the image ids while a batch is handled (`bind_work`). In the plain format they are
appended as `key=value`; in JSON they are fields.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s%(context)s"
CONTEXT_FIELDS = ("worker", "model", "job_id", "batch", "image_ids")

# Set once per process (a worker's name and model); visible from every thread.
_process_fields: dict[str, Any] = {}
# Set per batch; copied into the threads that work on that batch.
_work: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("sdfarm_work", default=None)


def set_process_fields(**fields: Any) -> None:
    """Fields every line of this process carries (e.g. worker=gpu0@host, model=sdxl)."""
    _process_fields.update({k: v for k, v in fields.items() if v is not None})


def bind_work(**fields: Any) -> contextvars.Token:
    """Fields the lines logged from here on carry (job_id, batch, image_ids...); pass the result to `unbind_work`."""
    return _work.set({**(_work.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


def unbind_work(token: contextvars.Token) -> None:
    """End what `bind_work` started."""
    _work.reset(token)


def current_fields() -> dict[str, Any]:
    """The process and work fields in force here."""
    return {**_process_fields, **(_work.get() or {})}


class ContextFilter(logging.Filter):
    """Puts the context fields on each record (as attributes, and as `context` text for the plain format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record."""
        fields = current_fields()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name))
        present = [(name, getattr(record, name)) for name in CONTEXT_FIELDS if getattr(record, name) is not None]
        record.context = "".join(f" {name}={_plain(value)}" for name, value in present)
        return True


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


class FarmJsonFormatter(JsonFormatter):
    """python-json-logger's formatter, leaving out context fields that are not set."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Drop null context fields."""
        return {k: v for k, v in log_data.items() if not (k in CONTEXT_FIELDS and v is None)}


def json_formatter() -> logging.Formatter:
    """JSON lines: timestamp, level, logger, pid, message, the context fields, and exc_info when any."""
    return FarmJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
        rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger", "process": "pid"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        reserved_attrs=[*RESERVED_ATTRS, "context", "taskName"],
    )


def say_json(message: str, stream=None) -> None:
    """One JSON log line written straight to the stream's file descriptor, taking no lock.

    For messages printed from signal handlers (Celery's shutdown notices), where the logging module's
    locks could deadlock; the line has the same fields as the formatter's.
    """
    record = {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z"),
        "level": "INFO",
        "logger": "celery.worker",
        "pid": os.getpid(),
        "message": message.strip(),
        **_process_fields,
    }
    os.write((stream or sys.__stderr__).fileno(), (json.dumps(record) + "\n").encode())


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for `plain` or `json`."""
    if log_format == "json":
        return json_formatter()
    return logging.Formatter(PLAIN_FORMAT)


def configure_logging(log_format: str = "plain", level: str = "INFO", stream=None) -> None:
    """Replace the root logger's handlers with one that writes the chosen format; route warnings there too."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)


def gunicorn_logconfig(log_format: str, level: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access logs in the same format as the app's."""
    formatter = (
        {"()": "models.logging_config.json_formatter"}
        if log_format == "json"
        else {"format": PLAIN_FORMAT, "class": "logging.Formatter"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "sdfarm",
        "filters": ["context"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "models.logging_config.ContextFilter"}},
        "formatters": {"sdfarm": formatter},
        "handlers": {"console": handler},
        "root": {"level": level.upper(), "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }
