"""Logging for the server: one JSON object per line (or plain text), with the fields of
the call a record belongs to (method, namespace, digest, duration...).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

#: ``extra=`` keys that are copied into JSON records.
CALL_FIELDS = ("method", "namespace", "digest", "ref", "code", "duration", "size", "differ")


class JsonFormatter(logging.Formatter):
    """``{"time": ..., "level": ..., "logger": ..., "msg": ..., <call fields>}``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CALL_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=False, default=str)


def configure(level: str = "info", fmt: str = "json") -> None:
    """Send layerdiff's logs to standard error at ``level`` in ``fmt`` (json or text)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("layerdiff")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
