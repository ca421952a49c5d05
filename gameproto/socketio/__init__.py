"""
Engine.IO v4 and Socket.IO v5 servers on Twisted and Autobahn, for gameproto and for
any Twisted application (docs/chat.md, "Embedding").

    from gameproto.socketio import SocketIOServer, mount_socketio
    sio = SocketIOServer(reactor)
    ns = sio.of("/")
    ns.on("ping")(lambda socket, *args: "pong")
    mount_socketio(root, "/socket.io/", sio, context, reactor)
"""

from gameproto.socketio.engineio import EngineApp, EngineIOConfig, EngineIOServer, Session
from gameproto.socketio.namespace import ConnectRefused, Namespace, Reply, Socket
from gameproto.socketio.server import SocketIOServer, mount_socketio

__all__ = [
    "ConnectRefused",
    "EngineApp",
    "EngineIOConfig",
    "EngineIOServer",
    "Namespace",
    "Reply",
    "Session",
    "Socket",
    "SocketIOServer",
    "mount_socketio",
]
