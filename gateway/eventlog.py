"""Structured log: one JSON object per line on stderr, one line per event.

Every line carries the event name and, where there is one, the message id, so
an administrator can follow a message with `grep`. Never the body, never a
detected identifier in clear (only what the policy already masked).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from types import TracebackType
from typing import Any

_logger = logging.getLogger("sikkermail")


_RESERVED = frozenset({"ts", "level", "event", "pid", "logger", "message", "traceback", "stack"})


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ours = record.name == _logger.name or record.name.startswith(_logger.name + ".")
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            # a library's line (aiosmtpd, asyncio, ...) is no event of ours: its text
            # goes in "message", and "logger" says whose it is
            "event": record.getMessage() if ours else "log",
            "pid": record.process,  # several intake processes may share one log
        }
        if not ours:
            data["logger"] = record.name
            data["message"] = record.getMessage()
        for key, value in getattr(record, "fields", {}).items():
            # a field never hides the line's own level or name ("level" of a classification
            # once turned every "classified" line into level "public")
            data[f"field_{key}" if key in _RESERVED else key] = value
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class _JsonHandler(logging.Handler):
    """One line per record on the stderr of the moment (so a later redirection is
    honoured); a second setup() replaces it rather than doubling every line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def setup(level: str = "info") -> None:
    """Every line this process writes to its log is one JSON object: our events, and the
    lines of third-party loggers (aiosmtpd's "mail.log", asyncio, ...) through the root
    logger, uncaught exceptions in any thread, and warnings."""
    handler = _JsonHandler()
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _JsonHandler)] + [handler]
    # libraries: their warnings and errors only; aiosmtpd logs every connection at INFO
    root.setLevel(logging.WARNING)
    _logger.handlers[:] = []
    _logger.setLevel(level.upper())
    _logger.propagate = True
    logging.captureWarnings(True)

    def uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        _logger.critical("uncaught-exception", exc_info=(kind, value, tb), extra={"fields": {"error": kind.__name__}})

    def uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        _logger.error("uncaught-exception", exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
                      extra={"fields": {"error": args.exc_type.__name__,
                                        "thread": args.thread.name if args.thread else None}})

    sys.excepthook = uncaught
    threading.excepthook = uncaught_in_thread


def event(name: str, **fields: Any) -> None:
    _logger.info(name, extra={"fields": fields})


def warning(name: str, **fields: Any) -> None:
    _logger.warning(name, extra={"fields": fields})


def error(name: str, exc_info: bool | BaseException = False, **fields: Any) -> None:
    _logger.error(name, exc_info=exc_info, extra={"fields": fields})

