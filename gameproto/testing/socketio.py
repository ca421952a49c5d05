"""A Socket.IO application driven packet by packet, with no Engine.IO transport."""

from __future__ import annotations

from typing import Any


class FakeSession:
    """
    What a Socket.IO app sees of an Engine.IO session, recording what is sent.
    L{close} tells the app, as the real session does.
    """

    def __init__(
        self,
        app: Any,
        sid: str = "fake-sid",
        address: str = "127.0.0.1",
        max_payload: int = 1_000_000,
    ) -> None:
        self.app = app
        self.sid = sid
        self.address = address
        self.max_payload = max_payload
        self.transport = "websocket"
        self.sent: list[str | bytes] = []
        self.closed = False
        self.close_reason: str | None = None

    def open(self) -> "FakeSession":
        self.app.session_opened(self)
        return self

    def receive(self, data: str | bytes) -> None:
        self.app.message_received(self, data)

    def send(self, data: str | bytes, *, alone: bool = False) -> None:
        if not self.closed:
            self.sent.append(data)

    def send_packet(self, packet: Any) -> None:
        """A message packet built once for many sessions: recorded as its data."""
        self.send(packet.data)

    def take(self) -> list[str | bytes]:
        """What was sent since the last call."""
        sent, self.sent = self.sent, []
        return sent

    def close(self, reason: str = "server disconnect") -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.app.session_closed(self, reason)
