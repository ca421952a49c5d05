"""
The test helpers for Socket.IO applications, under the names they first had here:
they live in L{gameproto.testing}.
"""

from gameproto.testing import (
    FakeSession,
    HTTPExchange,
    OneMessagePerTurnClient,
    ReactorTurnClock,
    WebSocketClient,
    fake_context,
)

__all__ = [
    "FakeSession",
    "HTTPExchange",
    "OneMessagePerTurnClient",
    "ReactorTurnClock",
    "WebSocketClient",
    "fake_context",
]
