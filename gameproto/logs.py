"""
JSON-lines logging for C{--log-format json}: one JSON object per line on stdout,
with the event's time, level, namespace, rendered text and its own fields, for log
shippers that parse structured logs.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

from gameproto import wire

# Event keys that are Twisted's bookkeeping, not information about the event.
_INTERNAL = {"log_logger", "log_source", "log_format", "log_io", "log_trace", "log_legacy"}


@implementer(ILogObserver)
class JSONLinesObserver:
    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0), timezone.utc).isoformat(),
            "level": getattr(event.get("log_level"), "name", "info"),
            "namespace": event.get("log_namespace", ""),
            "text": formatEvent(event),
        }
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        for key, value in event.items():
            if key.startswith("log_") or key in _INTERNAL or key in record:
                continue
            if isinstance(value, (str, int, float, bool)) or value is None:
                record[key] = value
            else:
                record[key] = repr(value)
        try:
            line = wire.encode(record).decode("utf-8")
        except wire.UnencodableValue:
            line = wire.encode({"time": record["time"], "text": repr(record["text"])}).decode()
        self._out.write(line + "\n")
        self._out.flush()


def json_observer() -> JSONLinesObserver:
    """The factory twistd's C{--logger} option points at."""
    return JSONLinesObserver(sys.stdout)
