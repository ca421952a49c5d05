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
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any, Callable, Iterable

import attrs
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from gameproto import wire
from gameproto.web import mount
from gameproto.socketio.engineio import EngineIOConfig, EngineIOServer, Session
from gameproto.socketio.packets import (
    PacketError,
    SocketPacket,
    SocketType,
    decode_socket_packet,
    deconstruct,
    encode_socket_packet,
    reconstruct,
)

ConnectHandler = Callable[["Socket", dict[str, Any]], Any]
EventHandler = Callable[..., Any]
DisconnectHandler = Callable[["Socket", str], None]

# Why a session closes when a binary packet's attachments break their bounds.
ATTACHMENTS_TOO_LARGE = "attachments too large"
ATTACHMENTS_TIMEOUT = "attachments timeout"


class ConnectRefused(Exception):
    """
    Raised (or failed with) by a connect handler to refuse a namespace: the client
    gets CONNECT_ERROR C{{"message": message, "data": data}}.
    """

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


@attrs.frozen
class Reply:
    """
    What a handler returns to acknowledge and then act: C{ack} is acknowledged as a
    plain return value would be, then C{then()} runs, so the client sees the ack
    before whatever C{then} emits to it.
    """

    ack: Any
    then: Callable[[], None]


def _ack_arguments(result: Any) -> list[Any]:
    if result is None:
        return []
    if isinstance(result, tuple):
        return list(result)
    return [result]


@attrs.frozen
class _Encoded:
    """A packet encoded once, ready for any number of sessions."""

    text: str
    attachments: list[bytes]

    def send_to(self, session: Session) -> None:
        session.send(self.text)
        for attachment in self.attachments:
            session.send(attachment)


def _encode(
    plain: SocketType, binary: SocketType, namespace: str, data: Any, ack_id: int | None = None
) -> _Encoded:
    """Raises L{wire.UnencodableValue} for a value JSON cannot carry."""
    data, buffers = deconstruct(data)
    kind = binary if buffers else plain
    packet = SocketPacket(kind, namespace, data, ack_id, len(buffers))
    return _Encoded(encode_socket_packet(packet), buffers)


def _socket_id() -> str:
    # A Socket.IO id is distinct from the Engine.IO sid (protocol v5) and as hard to guess.
    return secrets.token_urlsafe(15)


# ---------------------------------------------------------------------------
# Sockets and namespaces


class Socket:
    """
    One client connected to one namespace.  C{auth} is the CONNECT payload (C{{}}
    when the client sent none); C{data} is free for the application.
    """

    _log = Logger()

    def __init__(self, namespace: "Namespace", client: "_Client", auth: dict[str, Any]) -> None:
        self.id = _socket_id()
        self.namespace = namespace
        self.auth = auth
        self.data: dict[str, Any] = {}
        self.rooms: set[str] = {self.id}
        self.connected = False
        self._client = client
        self._acks: dict[int, Callable[..., Any]] = {}
        self._ack_ids = itertools.count()
        # Emits of the connect handler wait for the CONNECT reply.
        self._early: list[_Encoded] = []

    def __repr__(self) -> str:
        return f"<Socket {self.id} {self.namespace.name}>"

    @property
    def session(self) -> Session:
        """The Engine.IO session under this socket."""
        return self._client.session

    def emit(self, event: str, *args: Any, callback: Callable[..., Any] | None = None) -> None:
        """
        Send C{event} to this client; C{callback} receives the client's ack arguments.
        A value JSON cannot carry is logged and not sent.
        """
        ack_id = None
        if callback is not None:
            ack_id = next(self._ack_ids)
            self._acks[ack_id] = callback
        try:
            encoded = _encode(
                SocketType.EVENT, SocketType.BINARY_EVENT, self.namespace.name, [event, *args], ack_id
            )
        except wire.UnencodableValue as e:
            self._log.warn("Dropped an unencodable event {event!r} ({why})", event=event, why=str(e))
            return
        self._deliver(encoded)

    def broadcast(self, event: str, *args: Any, to: str | Iterable[str] | None = None) -> None:
        """Emit to a room (or the whole namespace) except this socket."""
        self.namespace.emit(event, *args, to=to, skip=self)

    def join(self, room: str) -> None:
        self.rooms.add(room)
        if self.connected:
            self.namespace._index(self, room)

    def leave(self, room: str) -> None:
        self.rooms.discard(room)
        self.namespace._unindex(self, room)

    def disconnect(self) -> None:
        """Leave the namespace; the client is told and does not reconnect by itself."""
        if self.connected:
            self.session.send(
                encode_socket_packet(SocketPacket(SocketType.DISCONNECT, self.namespace.name))
            )
            self._closed("server namespace disconnect")

    # -- called by the client ----------------------------------------------------

    def _deliver(self, encoded: _Encoded) -> None:
        if self.connected:
            self._client.send(encoded)
        elif self._client.connecting(self):
            self._early.append(encoded)

    def _accepted(self) -> None:
        self.connected = True
        for room in self.rooms:
            self.namespace._index(self, room)
        # Alone: a client that handles one WebSocket message per turn (the official
        # protocol test-suite) awaits the reply, then the connect handler's emits.
        self.session.send(
            encode_socket_packet(
                SocketPacket(SocketType.CONNECT, self.namespace.name, {"sid": self.id})
            ),
            alone=True,
        )
        early, self._early = self._early, []
        for encoded in early:
            self._client.send(encoded)

    def _event(self, data: list[Any], ack_id: int | None) -> None:
        event, args = data[0], data[1:]
        handler = self.namespace._events.get(event) if isinstance(event, str) else None
        if handler is None:
            self._log.debug(
                "No handler for an event on {namespace}", namespace=self.namespace.name
            )
            return
        d = maybeDeferred(handler, self, *args)
        d.addCallback(self._replied, ack_id)
        d.addErrback(self._handler_failed, event)

    def _replied(self, result: Any, ack_id: int | None) -> None:
        then = None
        if isinstance(result, Reply):
            result, then = result.ack, result.then
        if ack_id is not None:
            self._send_ack(result, ack_id)
        if then is not None:
            then()

    def _send_ack(self, result: Any, ack_id: int) -> None:
        if not self.connected:
            return
        try:
            encoded = _encode(
                SocketType.ACK,
                SocketType.BINARY_ACK,
                self.namespace.name,
                _ack_arguments(result),
                ack_id,
            )
        except wire.UnencodableValue as e:
            self._log.warn("Dropped an unencodable ack ({why})", why=str(e))
            return
        self._client.send(encoded)

    def _handler_failed(self, failure: Failure, event: str) -> None:
        self._log.failure(
            "Handler of {event!r} on {namespace} failed",
            failure,
            event=event,
            namespace=self.namespace.name,
        )

    def _ack(self, ack_id: int | None, args: list[Any]) -> None:
        callback = self._acks.pop(ack_id, None) if ack_id is not None else None
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            self._log.failure("Ack callback on {namespace} failed", namespace=self.namespace.name)

    def _closed(self, reason: str) -> None:
        if not self.connected:
            return
        self.connected = False
        self._acks.clear()
        self._client.forget(self)
        self.namespace._remove(self)
        for handler in self.namespace._disconnect_handlers:
            try:
                handler(self, reason)
            except Exception:
                self._log.failure(
                    "Disconnect handler on {namespace} failed", namespace=self.namespace.name
                )


class Namespace:
    """A Socket.IO namespace: its handlers, connected sockets and rooms."""

    _log = Logger()

    def __init__(self, name: str) -> None:
        self.name = name
        self.sockets: dict[str, Socket] = {}
        self._rooms: dict[str, set[Socket]] = {}
        self._connect_handler: ConnectHandler | None = None
        self._disconnect_handlers: list[DisconnectHandler] = []
        self._events: dict[str, EventHandler] = {}

    def on_connect(self, handler: ConnectHandler) -> ConnectHandler:
        """
        C{handler(socket, auth)} runs before the client is answered; it refuses by
        raising L{ConnectRefused} (or returning a Deferred that fails with it).
        Emits and joins made in it take effect once the socket is connected.
        """
        self._connect_handler = handler
        return handler

    def on_disconnect(self, handler: DisconnectHandler) -> DisconnectHandler:
        """C{handler(socket, reason)} runs once when a connected socket goes away."""
        self._disconnect_handlers.append(handler)
        return handler

    def on(self, event: str) -> Callable[[EventHandler], EventHandler]:
        """Decorator: C{handler(socket, *args)} handles C{event}; its result is the ack."""

        def register(handler: EventHandler) -> EventHandler:
            self._events[event] = handler
            return handler

        return register

    def room(self, room: str) -> frozenset[Socket]:
        """The sockets in C{room} right now."""
        return frozenset(self._rooms.get(room, ()))

    def emit(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        skip: Socket | None = None,
    ) -> None:
        """
        Emit C{event} to every socket of the namespace, or of the room(s) C{to},
        except C{skip}.  The packet is encoded once for all of them.
        """
        if to is None:
            targets: set[Socket] = set(self.sockets.values())
        else:
            rooms = [to] if isinstance(to, str) else list(to)
            targets = set()
            for room in rooms:
                targets |= self._rooms.get(room, set())
        targets.discard(skip)  # type: ignore[arg-type]
        if not targets:
            return
        try:
            encoded = _encode(SocketType.EVENT, SocketType.BINARY_EVENT, self.name, [event, *args])
        except wire.UnencodableValue as e:
            self._log.warn("Dropped an unencodable event {event!r} ({why})", event=event, why=str(e))
            return
        for socket in targets:
            socket._client.send(encoded)

    def _index(self, socket: Socket, room: str) -> None:
        self._rooms.setdefault(room, set()).add(socket)

    def _unindex(self, socket: Socket, room: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.discard(socket)
            if not members:
                del self._rooms[room]

    def _add(self, socket: Socket) -> None:
        self.sockets[socket.id] = socket

    def _remove(self, socket: Socket) -> None:
        self.sockets.pop(socket.id, None)
        for room in socket.rooms:
            self._unindex(socket, room)


# ---------------------------------------------------------------------------
# One Engine.IO session speaking Socket.IO


@attrs.define
class _PendingBinary:
    """A binary packet whose attachments are arriving."""

    packet: SocketPacket
    deadline: IDelayedCall
    buffers: list[bytes] = attrs.Factory(list)
    size: int = 0


class _Client:
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

    def send(self, encoded: _Encoded) -> None:
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
            socket._closed("client namespace disconnect")
        elif packet.type in (SocketType.EVENT, SocketType.BINARY_EVENT):
            socket._event(packet.data, packet.ack_id)
        elif packet.type in (SocketType.ACK, SocketType.BINARY_ACK):
            socket._ack(packet.ack_id, packet.data)
        else:
            self._protocol_error("CONNECT_ERROR from a client")

    def _connect(self, name: str, auth: dict[str, Any]) -> None:
        namespace = self.server.namespaces.get(name)
        if namespace is None:
            self._refuse(name, "Invalid namespace", None)
            return
        socket = Socket(namespace, self, auth)
        self._connecting[name] = socket
        handler = namespace._connect_handler
        d = maybeDeferred(handler, socket, auth) if handler is not None else None

        def accepted(_: Any) -> None:
            del self._connecting[name]
            if self.session.closed:
                return
            if self._connect_timer is not None and self._connect_timer.active():
                self._connect_timer.cancel()
            self._connect_timer = None
            self.sockets[name] = socket
            namespace._add(socket)
            socket._accepted()

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
            socket._closed(reason)


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
        self._clients: dict[Session, _Client] = {}

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
        self._clients[session] = _Client(self, session)

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
