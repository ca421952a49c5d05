"""
WebSocket clients in memory: the handshake and masked frames written straight into
a Site's protocol on a StringTransport, server frames parsed back.  Autobahn's timers
run on C{txaio.config.loop}, which the tests point at their C{Clock}.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import attrs
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.web.server import Site

from gameproto import wire
from tests.fakehttp import connect

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(payload: bytes, opcode: int = TEXT, fin: bool = True) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    length = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 2**16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Unmasked server frames → [(opcode, payload)]."""
    frames = []
    while len(data) >= 2:
        opcode = data[0] & 0x0F
        length = data[1] & 0x7F
        offset = 2
        if length == 126:
            (length,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", data[2:10])
            offset = 10
        frames.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames


@attrs.define
class FakeWebSocket:
    protocol: Any
    transport: StringTransportWithDisconnection
    handshake_response: bytes = b""
    _seen: int = 0

    def send(self, payload: bytes, opcode: int = TEXT) -> None:
        self.protocol.dataReceived(frame(payload, opcode))

    def send_json(self, value: Any) -> None:
        self.send(wire.encode(value))

    def frames(self) -> list[tuple[int, bytes]]:
        """Every frame the server sent since the last call."""
        data = self.transport.value()
        new = data[self._seen :]
        self._seen = len(data)
        return parse_frames(new)

    def messages(self) -> list[Any]:
        """The JSON text messages since the last call (other frames are dropped)."""
        return [wire.decode(p) for op, p in self.frames() if op == TEXT]

    @staticmethod
    def close_code(payload: bytes) -> int:
        return struct.unpack("!H", payload[:2])[0]

    def closes(self) -> list[tuple[int, str]]:
        return [
            (self.close_code(p), p[2:].decode("utf-8"))
            for op, p in self.frames()
            if op == CLOSE
        ]

    @property
    def disconnected(self) -> bool:
        return self.transport.disconnecting or not self.transport.connected


def open_websocket(
    site: Site, path: str, headers: dict[str, str] | None = None, port: int = 40000
) -> FakeWebSocket:
    protocol, transport = connect(site, port)
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: localhost:8000",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
    raw = transport.value()
    head, sep, _ = raw.partition(b"\r\n\r\n")
    # After the upgrade Autobahn's protocol owns the transport, not the HTTPChannel.
    ws = FakeWebSocket(transport.protocol, transport, head + sep)
    ws._seen = len(head + sep)
    return ws
