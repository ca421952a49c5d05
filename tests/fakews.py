"""
The WebSocket client of L{gameproto.testing} under the names the processor tests use:
C{open_websocket}, C{handshake_response}, and C{close_code} read from a close frame's
payload.  New tests use L{gameproto.testing.WebSocketClient} directly.
"""

from __future__ import annotations

import struct

from twisted.web.server import Site

from gameproto.testing import BINARY, CLOSE, TEXT, WebSocketClient

__all__ = ["BINARY", "CLOSE", "TEXT", "FakeWebSocket", "open_websocket"]


class FakeWebSocket(WebSocketClient):
    @property
    def handshake_response(self) -> bytes:
        return self.handshake

    @staticmethod
    def close_code(payload: bytes) -> int:  # type: ignore[override]
        return int(struct.unpack("!H", payload[:2])[0])


def open_websocket(site: Site, path: str, headers: dict[str, str] | None = None,
                   port: int = 40000) -> FakeWebSocket:
    return FakeWebSocket(site, path, headers, port=port)
