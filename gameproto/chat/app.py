"""
The chat of specs/chat.md with the decisions of DESIGN.md §4 "chat", on the
Socket.IO namespace C{/}: one room per socket, chosen by the CONNECT auth payload;
C{register} claims a name unique in the room; C{message} goes to the whole room
under the registered name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto.chat.names import SERVER_NAME, name_key, normalise_name
from gameproto.chat.presence import IPresence

if TYPE_CHECKING:
    from gameproto.chat.cluster import RoomRelay
from gameproto.socketio.namespace import ConnectRefused, Namespace, Reply, Socket

DEFAULT_ROOM = "lobby"
ROOM_PATTERN = re.compile(r"[A-Za-z0-9:_.-]{1,64}")
MAX_MESSAGE_LENGTH = 4000

# Keys of Socket.data.
_ROOM = "chat.room"
_NAME = "chat.name"
_REGISTERING = "chat.registering"


class ChatApp:
    """The chat's handlers, installed on C{namespace}."""

    _log = Logger()

    def __init__(
        self, namespace: Namespace, presence: IPresence, relay: RoomRelay | None = None
    ) -> None:
        self.namespace = namespace
        self.presence = presence
        # With several nodes, what is said in a room also goes to the other nodes.
        self.relay = relay
        namespace.on_connect(self.connect)
        namespace.on("register")(self.register)
        namespace.on("message")(self.message)
        namespace.on_disconnect(self.disconnected)

    def connect(self, socket: Socket, auth: dict[str, Any]) -> None:
        room = auth.get("room", DEFAULT_ROOM)
        if not isinstance(room, str) or not ROOM_PATTERN.fullmatch(room):
            raise ConnectRefused("invalid room")
        socket.data[_ROOM] = room
        # Members receive everything said in the room, registered or not.
        socket.join(room)
        if self.relay is not None:
            self.relay.joined(room)

    def register(self, socket: Socket, raw: object = None, *ignored: Any) -> Any:
        if _NAME in socket.data or _REGISTERING in socket.data:
            return False
        name = normalise_name(raw)
        if name is None:
            return False
        room = socket.data[_ROOM]
        key = name_key(name)
        socket.data[_REGISTERING] = True

        def claimed(won: bool) -> Any:
            del socket.data[_REGISTERING]
            if not won:
                return False
            if not socket.connected:  # gone while the claim was in flight
                self.presence.release(room, key)
                return False
            socket.data[_NAME] = name
            self._log.info("Chat: a name was registered in {room}", room=room)
            # The ack first: a client that starts listening in its ack callback
            # still sees its own arrival.
            return Reply(True, lambda: self._announce(room, f"{name} has joined the chat"))

        def failed(failure: Failure) -> bool:
            socket.data.pop(_REGISTERING, None)
            self._log.failure("Chat: presence check failed", failure)
            return False

        d: Deferred[Any] = self.presence.claim(room, key, name)
        return d.addCallbacks(claimed, failed)

    def message(self, socket: Socket, body: object = None, *ignored: Any) -> bool:
        name = socket.data.get(_NAME)
        if name is None or not isinstance(body, dict):
            return False
        text = body.get("message")
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_MESSAGE_LENGTH:
            return False
        # The client's own "from" is never trusted: the registered name replaces it.
        self._broadcast(socket.data[_ROOM], {"from": name, "message": text})
        return True

    def disconnected(self, socket: Socket, reason: str) -> None:
        if self.relay is not None and _ROOM in socket.data:
            self.relay.left(socket.data[_ROOM])
        name = socket.data.pop(_NAME, None)
        if name is None:
            return
        room = socket.data[_ROOM]
        self.presence.release(room, name_key(name)).addErrback(
            lambda f: self._log.failure("Chat: releasing a name failed", f)
        )
        self._log.info("Chat: a name left {room} ({reason})", room=room, reason=reason)
        self._announce(room, f"{name} left the chat")

    def _announce(self, room: str, text: str) -> None:
        self._broadcast(room, {"from": SERVER_NAME, "message": text})

    def announce_left(self, room: str, name: str) -> None:
        """C{name} left C{room} without this node seeing it (its node died)."""
        self._announce(room, f"{name} left the chat")

    def _broadcast(self, room: str, payload: dict[str, str]) -> None:
        self.deliver(room, payload)
        if self.relay is not None:
            self.relay.publish(room, payload)

    def deliver(self, room: str, payload: Any) -> None:
        """Send a chat message to this node's members of C{room}."""
        self.namespace.emit("message", payload, to=room)
