"""Structured log: one JSON object per line on stderr, one line per event.

Every line carries the event name and, where there is one, the message id, so
an administrator can follow a message with `grep`. Never the body, never a
detected identifier in clear (only what the policy already masked).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_logger = logging.getLogger("sikkermail")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "pid": record.process,  # several intake processes may share one log
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    _logger.handlers[:] = [handler]
    _logger.setLevel(level.upper())
    _logger.propagate = False


def event(name: str, **fields: Any) -> None:
    _logger.info(name, extra={"fields": fields})


def warning(name: str, **fields: Any) -> None:
    _logger.warning(name, extra={"fields": fields})


def error(name: str, exc_info: bool = False, **fields: Any) -> None:
    _logger.error(name, exc_info=exc_info, extra={"fields": fields})

