"""
Testing applications that embed gameproto, with no network and no running reactor:
HTTP requests and WebSocket clients written straight into a C{Site} on a
C{twisted.internet.task.Clock}, a Socket.IO session with no transport, and what
several nodes share, in one process: the clock-driven L{LocalBus} and the in-memory
lease table L{MemoryLeaseTable} (the real single-node implementations, held to the
same contracts as their Redis counterparts).

Autobahn's own timers run on C{txaio.config.loop}: point it at the test's clock
(C{self.patch(txaio.config, "loop", clock)}) before building the server.
"""

from gameproto.bus.local import LocalBus
from gameproto.ownership import MemoryLeaseTable
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
    "LocalBus",
    "MemoryLeaseTable",
    "WebSocketClient",
    "client_frame",
    "connect",
    "fake_context",
    "parse_response",
    "parse_server_frames",
    "request",
]
