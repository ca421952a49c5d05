"""
Test helpers for applications built on L{gameproto.socketio}, usable with no running
reactor: raw HTTP requests and raw WebSocket frames against a C{Site} on a
C{twisted.internet.task.Clock}, and a fake Engine.IO session for Socket.IO apps.

Autobahn's own timers run on C{txaio.config.loop}: point it at the test's clock
(C{self.patch(txaio.config, "loop", clock)}) before building the server.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure
from twisted.web.server import Site

from gameproto import wire


def fake_context(clock: Any, origins: list[str] | None = None) -> wire.WireContext:
    """A L{wire.WireContext} on C{clock} that authenticates nobody."""
    return wire.WireContext(
        clock=clock,
        connections=wire.Connections(wire.ServerLimits(), clock),
        origins=wire.OriginPolicy.from_list(origins or []),
        authenticate=lambda request, cookies_allowed: succeed(None),
    )


# ---------------------------------------------------------------------------
# HTTP


class FakeConnection(StringTransportWithDisconnection):
    """
    An in-memory connection that, like a real transport, says it is disconnecting
    once closed: Twisted's HTTP parser stops reading the rest of a buffer then, and
    without it a second malformed header would close the channel twice.
    """

    def loseConnection(self) -> None:
        self.disconnecting = True
        super().loseConnection()


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return wire.decode(self.body)


def parse_response(data: bytes) -> Response | None:
    """The first complete HTTP response in C{data}, or C{None} if not complete yet."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        length = int(headers["content-length"])
        if len(rest) < length:
            return None
        return Response(status, headers, rest[:length])
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                return None
            size = int(size_line, 16)
            if size == 0:
                return Response(status, headers, body)
            if len(rest) < size + 2:
                return None
            body, rest = body + rest[:size], rest[size + 2 :]
    return Response(status, headers, rest)


class HTTPExchange:
    """
    One HTTP/1.1 request on a connection of its own to C{site}, from C{address}
    (by default the fake transport's, 192.168.1.1).
    """

    def __init__(
        self,
        site: Site,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        port: int = 40000,
        address: str | None = None,
    ) -> None:
        self.protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        peer = None if address is None else IPv4Address("TCP", address, port)
        self.transport = FakeConnection(peerAddress=peer)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        all_headers = {"Host": "localhost"}
        all_headers.update(headers or {})
        if body or method == "POST":
            all_headers["Content-Length"] = str(len(body))
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in all_headers.items()]
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    @property
    def response(self) -> Response | None:
        """The response, once the server has written all of it."""
        return parse_response(self.transport.value())

    def abort(self) -> None:
        """The client goes away before the response."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


# ---------------------------------------------------------------------------
# WebSocket


TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame, as a client must send it."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
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
    """A raw WebSocket client on a fake connection: handshake, frames out, frames in."""

    def __init__(
        self,
        site: Site,
        path: str,
        headers: dict[str, str] | None = None,
        port: int = 41000,
        address: str | None = None,
    ) -> None:
        self.exchange = HTTPExchange(
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
        self.transport = self.exchange.transport
        self._read = 0
        self._buffer = b""
        self.handshake = b""
        value = self.transport.value()
        head, sep, _ = value.partition(b"\r\n\r\n")
        if sep:
            self.handshake = head + sep
            self._read = len(self.handshake)

    @property
    def accepted(self) -> bool:
        return self.handshake.startswith(b"HTTP/1.1 101")

    @property
    def status(self) -> int:
        return int(self.handshake.split(b" ")[1]) if self.handshake else 0

    def send_text(self, text: str) -> None:
        self.transport.protocol.dataReceived(client_frame(TEXT, text.encode("utf-8")))

    def send_binary(self, data: bytes) -> None:
        self.transport.protocol.dataReceived(client_frame(BINARY, data))

    def send_close(self, code: int = 1000) -> None:
        self.transport.protocol.dataReceived(client_frame(CLOSE, struct.pack("!H", code)))

    def frames(self) -> list[tuple[int, bytes]]:
        """Frames received since the last call; pings are answered, as a browser does."""
        value = self.transport.value()
        self._buffer += value[self._read :]
        self._read = len(value)
        frames, self._buffer = parse_server_frames(self._buffer)
        for opcode, payload in frames:
            if opcode == PING:
                self.transport.protocol.dataReceived(client_frame(PONG, payload))
        return frames

    def messages(self) -> list[str | bytes]:
        """Data frames received since the last call: text as str, binary as bytes."""
        out: list[str | bytes] = []
        for opcode, payload in self.frames():
            if opcode == TEXT:
                out.append(payload.decode("utf-8"))
            elif opcode == BINARY:
                out.append(payload)
            elif opcode == CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else None
                self.close_reason = payload[2:].decode("utf-8", "replace")
                self.closed = True
        return out

    close_code: int | None = None
    close_reason: str | None = None
    closed = False


class ReactorTurnClock(Clock):
    """
    A C{Clock} whose C{advance} runs timed calls as one turn of a reactor does: the
    calls due when it starts.  A call that one of them makes waits for the next
    C{advance}, even with no delay (C{Clock} would run it at once), as a reactor
    runs it only after its next I/O step.
    """

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        self._sortCalls()
        due = [call for call in self.calls if call.getTime() <= self.seconds()]
        for call in due:
            # An earlier call may have cancelled or postponed it.
            if call in self.calls and call.getTime() <= self.seconds():
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


class OneMessagePerTurnClient:
    """
    A client that handles one WebSocket message per turn of its event loop, as the
    official socket.io-protocol test-suite does: it awaits a message, and the other
    messages that came in the same read are lost, their listener not set yet.

    The server runs on a L{ReactorTurnClock}.  A turn of a Twisted reactor runs the
    timed calls that are due, then its I/O step sends what was written: each read
    here follows C{clock.advance(0)}.
    """

    def __init__(self, ws: WebSocketClient, clock: ReactorTurnClock) -> None:
        self.ws = ws
        self.clock = clock
        self.lost: list[str | bytes] = []

    def next_message(self, timeout: float = 5.0, step: float = 0.01) -> str | bytes | None:
        """
        The first message of the next read that has any (C{None} after C{timeout}
        seconds of the clock); the rest of that read goes to L{lost}.
        """
        waited = 0.0
        while True:
            self.clock.advance(0)
            messages = self.ws.messages()
            if messages:
                self.lost.extend(messages[1:])
                return messages[0]
            if waited >= timeout or self.ws.closed:
                return None
            self.clock.advance(step)
            waited += step


# ---------------------------------------------------------------------------
# A fake Engine.IO session


class FakeSession:
    """
    What a Socket.IO app sees of an Engine.IO session, recording what is sent.
    L{close} tells the app, as the real session does.
    """

    def __init__(
        self,
        app: Any,
        sid: str = "fake-sid",
        address: str = "127.0.0.1",
        max_payload: int = 1_000_000,
    ) -> None:
        self.app = app
        self.sid = sid
        self.address = address
        self.max_payload = max_payload
        self.transport = "websocket"
        self.sent: list[str | bytes] = []
        self.closed = False
        self.close_reason: str | None = None

    def open(self) -> "FakeSession":
        self.app.session_opened(self)
        return self

    def receive(self, data: str | bytes) -> None:
        self.app.message_received(self, data)

    def send(self, data: str | bytes, *, alone: bool = False) -> None:
        if not self.closed:
            self.sent.append(data)

    def take(self) -> list[str | bytes]:
        """What was sent since the last call."""
        sent, self.sent = self.sent, []
        return sent

    def close(self, reason: str = "server disconnect") -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.app.session_closed(self, reason)
