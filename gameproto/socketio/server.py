"""
Socket.IO v5 on top of L{gameproto.socketio.engineio}: namespaces, a connect
handler that may refuse, events with acknowledgements, binary attachments and
rooms.

    sio = SocketIOServer(clock)
    chat = sio.of("/")

    @chat.on_connect
    def connect(socket: Socket, auth: dict) -> None:
        if auth.get("token") != "secret":
            raise ConnectRefused("Not authorized")
        socket.join("lobby")

    @chat.on("say")
    def say(socket: Socket, text: str) -> bool:
        chat.emit("said", text, to="lobby", skip=socket)
        return True  # the acknowledgement, if the client asked for one

A handler's return value (or the result of the Deferred it returns) is the
acknowledgement: C{None} acks with no argument, a tuple with its items as arguments,
anything else as the one argument; a L{Reply} acknowledges, then acts.  Mount it with L{mount_socketio}.

What applications handle is in L{gameproto.socketio.namespace}; here each Engine.IO
session's packets are decoded, their binary attachments gathered, and routed to the
socket of their namespace (L{Client}).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from gameproto import wire
from gameproto.web import mount
from gameproto.socketio.engineio import EngineIOConfig, EngineIOServer, Session
from gameproto.socketio.namespace import (
    ConnectRefused,
    EncodedPacket,
    Namespace,
    Reply,
    Socket,
)
from gameproto.socketio.packets import (
    PacketError,
    SocketPacket,
    SocketType,
    decode_socket_packet,
    encode_socket_packet,
    reconstruct,
)

__all__ = [
    "ATTACHMENTS_TIMEOUT",
    "ATTACHMENTS_TOO_LARGE",
    "ConnectRefused",
    "Namespace",
    "Reply",
    "Socket",
    "SocketIOServer",
    "mount_socketio",
]

# Why a session closes when a binary packet's attachments break their bounds.
ATTACHMENTS_TOO_LARGE = "attachments too large"
ATTACHMENTS_TIMEOUT = "attachments timeout"


# ---------------------------------------------------------------------------
# One Engine.IO session speaking Socket.IO


@attrs.define
class _PendingBinary:
    """A binary packet whose attachments are arriving."""

    packet: SocketPacket
    deadline: IDelayedCall
    buffers: list[bytes] = attrs.Factory(list)
    size: int = 0


class Client:
    """The Socket.IO state of one Engine.IO session: its sockets, one per namespace."""

    _log = Logger()

    def __init__(self, server: "SocketIOServer", session: Session) -> None:
        self.server = server
        self.session = session
        self.sockets: dict[str, Socket] = {}
        self._connecting: dict[str, Socket] = {}
        self._binary: _PendingBinary | None = None
        self._connect_timer: IDelayedCall | None = server.clock.callLater(
            server.connect_timeout, self._connect_timed_out
        )

    def send(self, encoded: EncodedPacket) -> None:
        encoded.send_to(self.session)

    def connecting(self, socket: Socket) -> bool:
        return self._connecting.get(socket.namespace.name) is socket

    def forget(self, socket: Socket) -> None:
        if self.sockets.get(socket.namespace.name) is socket:
            del self.sockets[socket.namespace.name]

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if not self.sockets:
            self._log.info("Socket.IO session {sid}: no CONNECT in time", sid=self.session.sid)
            self.session.close("connect timeout")

    def _protocol_error(self, why: str) -> None:
        self._log.info(
            "Socket.IO session {sid}: invalid packet ({why})", sid=self.session.sid, why=why
        )
        self.session.close("parse error")

    # -- from Engine.IO -----------------------------------------------------------

    def message_received(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self._attachment(data)
            return
        if self._binary is not None:
            self._protocol_error("text packet while attachments were due")
            return
        try:
            packet = decode_socket_packet(data)
        except PacketError as e:
            self._protocol_error(str(e))
            return
        if packet.type in (SocketType.BINARY_EVENT, SocketType.BINARY_ACK):
            # Its attachments (at most 10, checked by the parser) must arrive in
            # time and fit in maxPayload together: a client must not make the
            # server hold megabytes for a packet it never completes.
            deadline = self.server.clock.callLater(
                self.server.attachments_timeout, self._attachments_timed_out
            )
            self._binary = _PendingBinary(packet, deadline)
        else:
            self._dispatch(packet)

    def _attachment(self, data: bytes) -> None:
        pending = self._binary
        if pending is None:
            self._protocol_error("unexpected binary message")
            return
        pending.size += len(data)
        if pending.size > self.session.max_payload:
            self._drop_binary()
            self._log.info(
                "Socket.IO session {sid}: attachments over maxPayload", sid=self.session.sid
            )
            self.session.close(ATTACHMENTS_TOO_LARGE)
            return
        pending.buffers.append(data)
        if len(pending.buffers) < pending.packet.attachments:
            return
        self._drop_binary()
        try:
            payload = reconstruct(pending.packet.data, pending.buffers)
        except PacketError as e:
            self._protocol_error(str(e))
            return
        self._dispatch(attrs.evolve(pending.packet, data=payload))

    def _attachments_timed_out(self) -> None:
        self._binary = None
        self._log.info("Socket.IO session {sid}: attachments not in time", sid=self.session.sid)
        self.session.close(ATTACHMENTS_TIMEOUT)

    def _drop_binary(self) -> None:
        if self._binary is not None and self._binary.deadline.active():
            self._binary.deadline.cancel()
        self._binary = None

    def _dispatch(self, packet: SocketPacket) -> None:
        name = packet.namespace
        socket = self.sockets.get(name)
        if packet.type is SocketType.CONNECT:
            if socket is not None or name in self._connecting:
                self._protocol_error("duplicate CONNECT")
            else:
                self._connect(name, packet.data if packet.data is not None else {})
        elif socket is None:
            # As the official server: anything for a namespace the client is not in
            # ends the whole connection.
            self._protocol_error("packet for a namespace not joined")
        elif packet.type is SocketType.DISCONNECT:
            socket.disconnected("client namespace disconnect")
        elif packet.type in (SocketType.EVENT, SocketType.BINARY_EVENT):
            socket.event_received(packet.data, packet.ack_id)
        elif packet.type in (SocketType.ACK, SocketType.BINARY_ACK):
            socket.ack_received(packet.ack_id, packet.data)
        else:
            self._protocol_error("CONNECT_ERROR from a client")

    def _connect(self, name: str, auth: dict[str, Any]) -> None:
        namespace = self.server.namespaces.get(name)
        if namespace is None:
            self._refuse(name, "Invalid namespace", None)
            return
        socket = Socket(namespace, self, auth)
        self._connecting[name] = socket
        handler = namespace.connect_handler
        d = maybeDeferred(handler, socket, auth) if handler is not None else None

        def accepted(_: Any) -> None:
            del self._connecting[name]
            if self.session.closed:
                return
            if self._connect_timer is not None and self._connect_timer.active():
                self._connect_timer.cancel()
            self._connect_timer = None
            self.sockets[name] = socket
            socket.accepted()

        def refused(failure: Failure) -> None:
            del self._connecting[name]
            if failure.check(ConnectRefused):
                error: ConnectRefused = failure.value
                self._refuse(name, error.message, error.data)
            else:
                self._log.failure("Connect handler of {namespace} failed", failure, namespace=name)
                self._refuse(name, "Internal error", None)

        if d is None:
            accepted(None)
        else:
            d.addCallbacks(accepted, refused)

    def _refuse(self, name: str, message: str, data: Any) -> None:
        body: dict[str, Any] = {"message": message}
        if data is not None:
            body["data"] = data
        try:
            text = encode_socket_packet(SocketPacket(SocketType.CONNECT_ERROR, name, body))
        except wire.UnencodableValue:
            text = encode_socket_packet(
                SocketPacket(SocketType.CONNECT_ERROR, name, {"message": message})
            )
        self.session.send(text)

    def session_closed(self, reason: str) -> None:
        if self._connect_timer is not None and self._connect_timer.active():
            self._connect_timer.cancel()
        self._connect_timer = None
        self._drop_binary()
        for socket in list(self.sockets.values()):
            socket.disconnected(reason)


# ---------------------------------------------------------------------------
# The server


class SocketIOServer:
    """
    A Socket.IO server: an L{gameproto.socketio.engineio.EngineApp} that routes
    packets to its namespaces.  Only namespaces created with L{of} exist; a CONNECT
    to any other gets C{{"message": "Invalid namespace"}}.

    @param clock: runs the connect and attachments timeouts.
    @param connect_timeout: seconds a new session has to connect to a namespace.
    @param attachments_timeout: seconds a binary packet has to receive all its
        attachments, counted from its header; past it, or past maxPayload bytes of
        attachments, the session is closed.
    """

    def __init__(
        self,
        clock: IReactorTime,
        connect_timeout: float = 45.0,
        attachments_timeout: float = 10.0,
    ) -> None:
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.attachments_timeout = attachments_timeout
        self.namespaces: dict[str, Namespace] = {}
        self._clients: dict[Session, Client] = {}

    def of(self, name: str = "/") -> Namespace:
        """The namespace C{name}, created on first use."""
        if not name.startswith("/"):
            raise ValueError("a namespace starts with /")
        namespace = self.namespaces.get(name)
        if namespace is None:
            namespace = self.namespaces[name] = Namespace(name)
        return namespace

    # -- EngineApp -----------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        self._clients[session] = Client(self, session)

    def message_received(self, session: Session, data: str | bytes) -> None:
        client = self._clients.get(session)
        if client is not None:
            client.message_received(data)

    def session_closed(self, session: Session, reason: str) -> None:
        client = self._clients.pop(session, None)
        if client is not None:
            client.session_closed(reason)


def mount_socketio(
    root: Resource,
    path: str,
    app: Any,
    context: wire.WireContext,
    clock: IReactorTime,
    config: EngineIOConfig = EngineIOConfig(),
) -> EngineIOServer:
    """
    Serve C{app} (a L{SocketIOServer}, or any L{EngineApp}) at C{path} of C{root}:
    polling and WebSocket on the same path.  Returns the Engine.IO server.
    """
    engine = EngineIOServer(app, context, clock, config)
    mount(root, path, engine.resource())
    return engine
