"""
The launcher's status pipe (its fd 5), read by the server: JSON lines, one per event of the
run (C{gameproto/processor/launcher/__main__.py} writes them).
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from twisted.logger import Logger


class StatusListener(Protocol):
    """What the launcher reports, in this order: started then exit, or an error."""

    def programStarted(self, pid: int | None) -> None:
        """C{{"event": "started", "pid": n}}: the program runs."""

    def launcherError(self, message: str) -> None:
        """C{{"event": "error", "message": text}}: the program could not be started."""

    def programExited(self, status: dict[str, Any]) -> None:
        """C{{"event": "exit", ...}}: the program and everything it started are gone."""


class StatusReader:
    """Cuts the status pipe into events for a L{StatusListener}."""

    _log = Logger()

    def __init__(self, listener: StatusListener, run: str) -> None:
        self._listener = listener
        self._run = run
        self._buffer = b""

    def received(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                self._log.error("unreadable launcher status", run=self._run)
                continue
            kind = event.get("event") if isinstance(event, dict) else None
            if kind == "started":
                self._listener.programStarted(event.get("pid"))
            elif kind == "error":
                self._listener.launcherError(str(event.get("message")))
            elif kind == "exit":
                self._listener.programExited(event)
