"""
Socket.IO v5 packets, as pure functions: no I/O, no clock.  They ride in Engine.IO
messages (L{gameproto.socketio.engineio.framing}):
C{<type>[<attachments>-][<nsp>,][<ack id>][JSON]}, with binary values replaced by
C{{"_placeholder": true, "num": N}} and sent as the following N binary messages.

Anything that does not parse raises L{PacketError}: the caller closes the session, as
the official server does.
"""

from __future__ import annotations

import enum
from typing import Any, Sequence

import attrs

from gameproto import wire
from gameproto.socketio.engineio.framing import PacketError

__all__ = [
    "MAX_ATTACHMENTS",
    "RESERVED_EVENTS",
    "PacketError",
    "SocketPacket",
    "SocketType",
    "deconstruct",
    "decode_socket_packet",
    "encode_socket_packet",
    "reconstruct",
]


# ---------------------------------------------------------------------------
# Socket.IO


class SocketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


# Event names the official server refuses from a client (socket.io-parser RESERVED_EVENTS).
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

# socket.io-parser's default cap: a header may not announce more attachments than this.
MAX_ATTACHMENTS = 10

# An ack id is a JavaScript number on the client; 16 digits keep it exact there.
_MAX_ACK_ID_DIGITS = 16

@attrs.frozen
class SocketPacket:
    """
    One Socket.IO packet.  C{data} is the decoded JSON payload (C{None} when absent);
    for a binary packet still waiting for its attachments it holds placeholders.
    """

    type: SocketType
    namespace: str = "/"
    data: Any = None
    ack_id: int | None = None
    attachments: int = 0


def encode_socket_packet(packet: SocketPacket) -> str:
    """The text of C{packet} (without the Engine.IO C{4}); raises L{wire.UnencodableValue}."""
    parts = [str(int(packet.type))]
    if packet.type in (SocketType.BINARY_EVENT, SocketType.BINARY_ACK):
        parts.append(f"{packet.attachments}-")
    if packet.namespace != "/":
        parts.append(packet.namespace + ",")
    if packet.ack_id is not None:
        parts.append(str(packet.ack_id))
    if packet.data is not None:
        parts.append(wire.encode(packet.data).decode("utf-8"))
    return "".join(parts)


def decode_socket_packet(text: str) -> SocketPacket:
    """Parse one Socket.IO packet with the rules of socket.io-parser C{decodeString}."""
    if not text or not "0" <= text[0] <= "6":
        raise PacketError("unknown Socket.IO packet type")
    kind = SocketType(int(text[0]))
    i = 1
    attachments = 0
    if kind in (SocketType.BINARY_EVENT, SocketType.BINARY_ACK):
        dash = text.find("-", i)
        count = text[i:dash] if dash >= 0 else ""
        if not count.isascii() or not count.isdigit():
            raise PacketError("illegal attachments")
        attachments = int(count)
        if not 1 <= attachments <= MAX_ATTACHMENTS:
            raise PacketError("illegal attachments")
        i = dash + 1
    namespace = "/"
    if i < len(text) and text[i] == "/":
        comma = text.find(",", i)
        end = comma if comma >= 0 else len(text)
        namespace = text[i:end]
        i = end + 1 if comma >= 0 else end
    ack_id = None
    start = i
    while i < len(text) and "0" <= text[i] <= "9":
        i += 1
    if i > start:
        if i - start > _MAX_ACK_ID_DIGITS:
            raise PacketError("ack id too long")
        ack_id = int(text[start:i])
    data: Any = None
    if i < len(text):
        try:
            data = wire.decode(text[i:])
        except wire.InvalidJSON:
            raise PacketError("invalid JSON payload") from None
    has_data = i < len(text)
    _check_payload(kind, data, has_data)
    return SocketPacket(kind, namespace, data, ack_id, attachments)


def _check_payload(kind: SocketType, data: Any, has_data: bool) -> None:
    """socket.io-parser C{isPayloadValid}."""
    if kind is SocketType.CONNECT:
        ok = not has_data or isinstance(data, dict)
    elif kind is SocketType.DISCONNECT:
        ok = not has_data
    elif kind in (SocketType.EVENT, SocketType.BINARY_EVENT):
        ok = (
            isinstance(data, list)
            and len(data) > 0
            and (
                (isinstance(data[0], str) and data[0] not in RESERVED_EVENTS)
                or (isinstance(data[0], (int, float)) and not isinstance(data[0], bool))
            )
        )
    elif kind in (SocketType.ACK, SocketType.BINARY_ACK):
        ok = isinstance(data, list)
    else:  # CONNECT_ERROR
        ok = isinstance(data, (str, dict))
    if not ok:
        raise PacketError(f"invalid payload for {kind.name}")


# ---------------------------------------------------------------------------
# Binary attachments


def deconstruct(data: Any) -> tuple[Any, list[bytes]]:
    """Replace every C{bytes} in C{data} by a placeholder; return the buffers in order."""
    buffers: list[bytes] = []

    def walk(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            buffers.append(bytes(value))
            return {"_placeholder": True, "num": len(buffers) - 1}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(data), buffers


def reconstruct(data: Any, buffers: Sequence[bytes]) -> Any:
    """Put the attachments back where their placeholders are."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("_placeholder") is True:
                num = value.get("num")
                if type(num) is not int or not 0 <= num < len(buffers):
                    raise PacketError("illegal attachment placeholder")
                return buffers[num]
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(data)
