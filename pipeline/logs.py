"""The workers' log format (JUMP_LOG_FORMAT): `text` (the default) or `json`, on standard error.

json: one JSON object per line -- `time` (UTC, ISO 8601, milliseconds), `worker` (sessionizer,
inference, trainer: the `jump` command), `level`, `logger`, `message`, `pid`, and `exc_info` (the
formatted traceback) when the record carries one -- for log platforms. It covers the records of
every library (Faust, mode, aiokafka, ...) and Python warnings; Faust's console decorations (its
progress spinner and "OK ^" line) are turned off, Faust logs "Ready" instead.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
FORMATS = ("text", "json")

_worker = {"name": "jump"}  # the worker named in JSON records, set by setup()


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def __init__(self, worker: str = "jump"):
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "worker": self.worker,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


def setup(settings, worker: str) -> None:
    """The logging of a `jump` worker, set before anything logs: the root logger at JUMP_LOG_LEVEL on
    standard error, in JUMP_LOG_FORMAT."""
    _worker["name"] = worker
    level = settings.log_level.upper()
    if settings.log_format != "json":
        logging.basicConfig(level=level, format=TEXT_FORMAT)
        return
    # the real standard error: under `faust -A ... worker` sys.stderr may be Faust's redirect to logging
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(JsonFormatter(worker))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)


def json_enabled() -> bool:
    """Whether this process writes its log records as JSON (set up by `setup`)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def faust_worker_options(settings) -> dict:
    """Keyword arguments for faust.Worker: nothing for text (Faust's own format); for json, a logging
    configuration that replaces mode's (a colour formatter it installs at start) and no console output."""
    if settings.log_format != "json":
        return {}
    level = settings.log_level.upper()
    return {
        "quiet": True,
        "logging_config": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": JsonFormatter, "worker": _worker["name"]}},
            "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json", "level": level}},
            "root": {"level": level, "handlers": ["default"]},
        },
    }
