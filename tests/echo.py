"""The WebSocket endpoint of the wire tests, in memory and over TCP."""

from __future__ import annotations

from typing import Any

from gameproto import wire
from gameproto.wire import Malformed


class Echo(wire.JSONProtocol):
    """A test endpoint: echoes objects, answers malformed frames with their reason."""

    endpoint = "echo"

    def connectionOpened(self) -> None:
        self.sendObject({"hello": self.user})

    def objectReceived(self, message: dict[str, Any]) -> None:
        if message.get("crash"):
            raise RuntimeError("handler bug")
        self.sendObject(message)

    def malformedFrame(self, problem: Malformed) -> None:
        self.sendObject({"error": problem.value})

    def rateLimited(self) -> None:
        self.sendObject({"error": "slow down"})
