"""
Testing applications that embed gameproto, with no network and no running reactor:
HTTP requests and WebSocket clients written straight into a C{Site} on a
C{twisted.internet.task.Clock}, and a Socket.IO session with no transport.

Autobahn's own timers run on C{txaio.config.loop}: point it at the test's clock
(C{self.patch(txaio.config, "loop", clock)}) before building the server.
"""

from gameproto.testing.http import (
    FakeConnection,
    HTTPExchange,
    HTTPResponse,
    connect,
    fake_context,
    parse_response,
    request,
)
from gameproto.testing.socketio import FakeSession
from gameproto.testing.turns import OneMessagePerTurnClient, ReactorTurnClock
from gameproto.testing.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    WebSocketClient,
    client_frame,
    parse_server_frames,
)

__all__ = [
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "FakeConnection",
    "FakeSession",
    "HTTPExchange",
    "OneMessagePerTurnClient",
    "ReactorTurnClock",
    "HTTPResponse",
    "WebSocketClient",
    "client_frame",
    "connect",
    "fake_context",
    "parse_response",
    "parse_server_frames",
    "request",
]
