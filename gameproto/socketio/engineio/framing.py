"""
Engine.IO v4 framing, as pure functions: no I/O, no clock.

A packet is one type digit then its data (C{4hello}).  A polling payload joins
packets with the record separator C{\\x1e}, binary data riding in it as C{b} plus
base64; on WebSocket each packet is one frame, binary data a bare binary frame.
Anything that does not parse raises L{PacketError}: the caller closes the session,
as the official server does.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
from typing import Sequence

import attrs
from autobahn.websocket.protocol import PreparedMessage


class PacketError(ValueError):
    """A packet that does not follow the protocol; the session must be closed."""


class EngineType(enum.Enum):
    OPEN = "0"
    CLOSE = "1"
    PING = "2"
    PONG = "3"
    MESSAGE = "4"
    UPGRADE = "5"
    NOOP = "6"


@attrs.frozen
class EnginePacket:
    """One Engine.IO packet; C{data} is bytes only for a binary message."""

    type: EngineType
    data: str | bytes = ""

    @classmethod
    def message(cls, data: str | bytes) -> "EnginePacket":
        return cls(EngineType.MESSAGE, data)

    @functools.cached_property
    def websocket_message(self) -> PreparedMessage:
        """
        The packet as one WebSocket frame from a server (unmasked, so the same bytes
        for every connection): built on first use and kept, so that a packet sent to
        many sockets is framed once.
        """
        if isinstance(self.data, bytes):
            return PreparedMessage(self.data, True, False, False)  # binary data bare
        return PreparedMessage((self.type.value + self.data).encode("utf-8"), False, False, False)


RECORD_SEPARATOR = "\x1e"


def encode_for_polling(packet: EnginePacket) -> str:
    """A packet as it appears in a polling payload: binary becomes C{b<base64>}."""
    if isinstance(packet.data, bytes):
        return "b" + base64.b64encode(packet.data).decode("ascii")
    return packet.type.value + packet.data


def encode_payload(packets: Sequence[EnginePacket]) -> bytes:
    """The body of a polling GET response."""
    return RECORD_SEPARATOR.join(encode_for_polling(p) for p in packets).encode("utf-8")


def decode_text_packet(text: str) -> EnginePacket:
    """One text packet (a WebSocket text frame, or one record of a payload)."""
    if not text:
        raise PacketError("empty packet")
    try:
        kind = EngineType(text[0])
    except ValueError:
        raise PacketError("unknown packet type") from None
    return EnginePacket(kind, text[1:])


def decode_payload(body: bytes) -> list[EnginePacket]:
    """The body of a polling POST: records separated by C{\\x1e}."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PacketError("payload is not UTF-8") from None
    packets = []
    for record in text.split(RECORD_SEPARATOR):
        if record.startswith("b"):
            try:
                data = base64.b64decode(record[1:], validate=True)
            except (binascii.Error, ValueError):
                raise PacketError("invalid base64 in a binary packet") from None
            packets.append(EnginePacket.message(data))
        else:
            packets.append(decode_text_packet(record))
    return packets
