"""
The chat of specs/chat.md over real Socket.IO (see docs/chat.md).

A server mounts it with L{mount_chat}; the rules live in L{gameproto.chat.app}, the
name rules in L{gameproto.chat.names}, the per-room name registry behind
L{gameproto.chat.presence.IPresence}.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource

from gameproto import wire
from gameproto.chat.app import ChatApp
from gameproto.chat.cluster import RoomRelay
from gameproto.chat.presence import IPresence, LocalPresence
from gameproto.socketio.engineio import EngineIOConfig, EngineIOServer
from gameproto.socketio.server import SocketIOServer, mount_socketio

__all__ = ["Chat", "mount_chat", "IPresence", "LocalPresence"]


@attrs.frozen
class Chat:
    """A mounted chat: its Engine.IO server (sessions), Socket.IO server and app."""

    engine: EngineIOServer
    socketio: SocketIOServer
    app: ChatApp


def mount_chat(
    root: Resource,
    context: wire.WireContext,
    clock: IReactorTime,
    *,
    path: str = "/socket.io/",
    config: EngineIOConfig = EngineIOConfig(),
    connect_timeout: float = 45.0,
    presence: IPresence | None = None,
    relay: RoomRelay | None = None,
) -> Chat:
    """
    Serve the chat at C{path} of C{root} (polling and WebSocket on the same path).
    Origins and the per-address cap come from C{context}; every timer runs on
    C{clock}; C{presence} defaults to a L{LocalPresence} (one node); a C{relay}
    carries rooms across nodes.
    """
    socketio = SocketIOServer(clock, connect_timeout=connect_timeout)
    app = ChatApp(
        socketio.of("/"), presence if presence is not None else LocalPresence(), relay
    )
    engine = mount_socketio(root, path, socketio, context, clock, config)
    return Chat(engine, socketio, app)
