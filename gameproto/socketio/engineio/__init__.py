"""
Engine.IO v4 on Twisted: HTTP long-polling and WebSocket on one path, the upgrade
from one to the other, server-side heartbeats and the official server's errors.

- L{server}: L{EngineIOServer}, the sessions of one mount point and the resource
  that serves its requests;
- L{session}: L{Session}, one session whatever its transport, a thin adapter around
  its state machine (L{machine});
- L{polling} and L{websocket}: the two transports; L{framing}: the packet codec;
- L{heartbeat}: pings and pongs; L{rates}: the packet budget of each client;
- L{config}: L{EngineIOConfig}, L{EngineError} and L{EngineApp}, what runs on top.

Every timer runs on the injected clock.  The wire facts followed here, and why, are
in docs/chat.md.
"""

from gameproto.socketio.engineio.config import (
    POLLING,
    WEBSOCKET,
    EngineApp,
    EngineError,
    EngineIOConfig,
)
from gameproto.socketio.engineio.server import EngineIOResource, EngineIOServer
from gameproto.socketio.engineio.session import Session

__all__ = [
    "POLLING",
    "WEBSOCKET",
    "EngineApp",
    "EngineError",
    "EngineIOConfig",
    "EngineIOResource",
    "EngineIOServer",
    "Session",
]
