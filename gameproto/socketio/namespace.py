"""
What a Socket.IO application works with: L{Namespace} (handlers, connected sockets,
rooms) and L{Socket} (one client in one namespace), and how handlers answer
(L{ConnectRefused}, L{Reply}).  The server (L{gameproto.socketio.server}) routes
each client's packets to them.
"""

from __future__ import annotations

import itertools
import secrets
from typing import TYPE_CHECKING, Any, Callable, Iterable

import attrs
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto import wire
from gameproto.socketio.engineio import Session
from gameproto.socketio.engineio.framing import EnginePacket
from gameproto.socketio.packets import SocketPacket, SocketType, deconstruct, encode_socket_packet

if TYPE_CHECKING:
    from gameproto.socketio.server import Client

ConnectHandler = Callable[["Socket", dict[str, Any]], Any]
EventHandler = Callable[..., Any]
DisconnectHandler = Callable[["Socket", str], None]


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
class EncodedPacket:
    """
    A packet encoded once, ready for any number of sessions: its Engine.IO message
    packets too are built once, so that a room broadcast frames each for WebSocket
    once (L{EnginePacket.websocket_message}) rather than once per member.
    """

    text: str
    attachments: list[bytes]
    packets: tuple[EnginePacket, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        packets = (EnginePacket.message(self.text),
                   *(EnginePacket.message(a) for a in self.attachments))
        object.__setattr__(self, "packets", packets)

    def send_to(self, session: Session) -> None:
        for packet in self.packets:
            session.send_packet(packet)


def _encode(
    plain: SocketType, binary: SocketType, namespace: str, data: Any, ack_id: int | None = None
) -> EncodedPacket:
    """Raises L{wire.UnencodableValue} for a value JSON cannot carry."""
    data, buffers = deconstruct(data)
    kind = binary if buffers else plain
    packet = SocketPacket(kind, namespace, data, ack_id, len(buffers))
    return EncodedPacket(encode_socket_packet(packet), buffers)


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

    def __init__(self, namespace: "Namespace", client: "Client", auth: dict[str, Any]) -> None:
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
        self._early: list[EncodedPacket] = []

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
            self.disconnected("server namespace disconnect")

    def _deliver(self, encoded: EncodedPacket) -> None:
        if self.connected:
            self._client.send(encoded)
        elif self._client.connecting(self):
            self._early.append(encoded)

    # -- called by the server (gameproto.socketio.server.Client) ----------------------

    def accepted(self) -> None:
        """The connect handler accepted: the client is answered, then the early emits."""
        self.namespace._add(self)
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

    def event_received(self, data: list[Any], ack_id: int | None) -> None:
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

    def ack_received(self, ack_id: int | None, args: list[Any]) -> None:
        callback = self._acks.pop(ack_id, None) if ack_id is not None else None
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            self._log.failure("Ack callback on {namespace} failed", namespace=self.namespace.name)

    def disconnected(self, reason: str) -> None:
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
        self.connect_handler: ConnectHandler | None = None
        self._disconnect_handlers: list[DisconnectHandler] = []
        self._events: dict[str, EventHandler] = {}

    def on_connect(self, handler: ConnectHandler) -> ConnectHandler:
        """
        C{handler(socket, auth)} runs before the client is answered; it refuses by
        raising L{ConnectRefused} (or returning a Deferred that fails with it).
        Emits and joins made in it take effect once the socket is connected.
        """
        self.connect_handler = handler
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
