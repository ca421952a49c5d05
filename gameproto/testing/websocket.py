"""
A WebSocket client in memory: the opening handshake and masked frames written straight
into a C{Site}'s protocol, the server's frames parsed back.  Autobahn's own timers run on
C{txaio.config.loop}: point it at the test's clock before building the server.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from twisted.web.server import Site

from gameproto import wire
from gameproto.testing.http import HTTPExchange

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked frame, as a client must send it."""
    mask = os.urandom(4)
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def parse_server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Unmasked server frames in C{data}, and the incomplete rest."""
    frames = []
    while len(data) >= 2:
        opcode = data[0] & 0x0F
        length = data[1] & 0x7F
        offset = 2
        if length == 126:
            if len(data) < 4:
                break
            (length,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif length == 127:
            if len(data) < 10:
                break
            (length,) = struct.unpack("!Q", data[2:10])
            offset = 10
        if len(data) < offset + length:
            break
        frames.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames, data


class WebSocketClient:
    """
    A raw WebSocket client on an in-memory connection to C{site}: the handshake is done
    on creation (L{accepted}, L{status}, L{handshake}); C{send_*} write frames; each of
    L{frames}, L{messages}, L{json_messages} and L{closes} returns what arrived since
    any of them was last called.
    """

    def __init__(
        self,
        site: Site,
        path: str,
        headers: dict[str, str] | None = None,
        port: int = 41000,
        address: str = "127.0.0.1",
    ) -> None:
        exchange = HTTPExchange(
            site,
            "GET",
            path,
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                **(headers or {}),
            },
            port=port,
            address=address,
        )
        self.transport = exchange.transport
        self._read = 0
        self._buffer = b""
        self.handshake = b""
        head, sep, _ = self.transport.value().partition(b"\r\n\r\n")
        if sep:
            self.handshake = head + sep
            self._read = len(self.handshake)
        self.closed = False
        self._close_code: int | None = None
        self.close_reason: str | None = None

    @property
    def protocol(self) -> Any:
        """The server's protocol: Autobahn's once the upgrade is done."""
        return self.transport.protocol

    @property
    def accepted(self) -> bool:
        return self.handshake.startswith(b"HTTP/1.1 101")

    @property
    def status(self) -> int:
        return int(self.handshake.split(b" ")[1]) if self.handshake else 0

    @property
    def close_code(self) -> int | None:
        """The code of the server's close frame, once one has been read."""
        return self._close_code

    @property
    def disconnected(self) -> bool:
        """The server has closed the connection, or is closing it."""
        return bool(self.transport.disconnecting) or not self.transport.connected

    def send(self, payload: bytes, opcode: int = TEXT) -> None:
        self.protocol.dataReceived(client_frame(opcode, payload))

    def send_text(self, text: str) -> None:
        self.send(text.encode("utf-8"), TEXT)

    def send_binary(self, data: bytes) -> None:
        self.send(data, BINARY)

    def send_json(self, value: Any) -> None:
        self.send(wire.encode(value), TEXT)

    def send_close(self, code: int = 1000) -> None:
        self.send(struct.pack("!H", code), CLOSE)

    def frames(self) -> list[tuple[int, bytes]]:
        """
        Frames received since the last read, as C{(opcode, payload)}; pings are
        answered, as a browser does, and a close frame is recorded (L{closed}).
        """
        value = self.transport.value()
        self._buffer += value[self._read :]
        self._read = len(value)
        frames, self._buffer = parse_server_frames(self._buffer)
        for opcode, payload in frames:
            if opcode == PING:
                self.send(payload, PONG)
            elif opcode == CLOSE:
                self.closed = True
                self._close_code = struct.unpack("!H", payload[:2])[0] if payload else None
                self.close_reason = payload[2:].decode("utf-8", "replace")
        return frames

    def forget_read(self) -> None:
        """Free what has been read so far (a long game writes megabytes)."""
        self.transport.clear()
        self._read = 0

    def messages(self) -> list[str | bytes]:
        """Data frames received since the last read: text as str, binary as bytes."""
        out: list[str | bytes] = []
        for opcode, payload in self.frames():
            if opcode == TEXT:
                out.append(payload.decode("utf-8"))
            elif opcode == BINARY:
                out.append(payload)
        return out

    def json_messages(self) -> list[Any]:
        """The text messages received since the last read, decoded as JSON."""
        return [wire.decode(m) for m in self.messages() if isinstance(m, str)]

    def closes(self) -> list[tuple[int, str]]:
        """The close frames received since the last read, as C{(code, reason)}."""
        return [(struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8"))
                for opcode, payload in self.frames() if opcode == CLOSE]
