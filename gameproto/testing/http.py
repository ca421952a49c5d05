"""
HTTP against a C{Site} in memory: raw request bytes written into the site's protocol on
a C{StringTransport}, the response parsed back.  No network, no reactor.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone
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


class FakeConnection(StringTransportWithDisconnection):
    """
    An in-memory connection that, like a real transport, says it is disconnecting
    once closed: Twisted's HTTP parser stops reading the rest of a buffer then, and
    without it a second malformed header would close the channel twice.
    """

    def loseConnection(self) -> None:
        self.disconnecting = True
        super().loseConnection()


def connect(site: Site, port: int = 40000,
            address: str = "127.0.0.1") -> tuple[Any, FakeConnection]:
    """
    The server's protocol and the transport of a new connection to C{site} from
    C{address} (IPv4 or IPv6), port C{port}.
    """
    peer = (IPv6Address("TCP", address, port) if ":" in address
            else IPv4Address("TCP", address, port))
    protocol = site.buildProtocol(peer)
    transport = FakeConnection(peerAddress=peer)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


@attrs.frozen
class HTTPResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return wire.decode(self.body)


def parse_response(data: bytes) -> HTTPResponse | None:
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
        return HTTPResponse(status, headers, rest[:length])
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                return None
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return HTTPResponse(status, headers, body)
            if len(rest) < size + 2:
                return None
            body, rest = body + rest[:size], rest[size + 2 :]
    return HTTPResponse(status, headers, rest)


class HTTPExchange:
    """
    One HTTP/1.1 request on a connection of its own to C{site}, from C{address};
    L{response} is C{None} until the server has written all of it.
    """

    def __init__(
        self,
        site: Site,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        port: int = 40000,
        address: str = "127.0.0.1",
    ) -> None:
        self.protocol, self.transport = connect(site, port, address)
        all_headers = {"Host": "localhost"}
        all_headers.update(headers or {})
        if body or method == "POST":
            all_headers["Content-Length"] = str(len(body))
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in all_headers.items()]
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    @property
    def response(self) -> HTTPResponse | None:
        """The response, once the server has written all of it."""
        return parse_response(self.transport.value())

    def abort(self) -> None:
        """The client goes away before the response."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


def request(
    site: Site,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    address: str = "127.0.0.1",
) -> HTTPResponse:
    """
    One request (C{body}: bytes, or a value sent as JSON) and its response, which the
    server must have written at once: the caller makes sure every Deferred behind the
    handler has fired (a memory store, a C{run_in_thread} that runs at once).
    """
    if body is not None and not isinstance(body, bytes):
        body = wire.encode(body)
    exchange = HTTPExchange(site, method, path, body or b"",
                            {"Connection": "close", **(headers or {})}, address=address)
    response = exchange.response
    if response is None:
        raise AssertionError(f"{method} {path}: no whole response yet: "
                             f"{exchange.transport.value()[:200]!r}")
    return response
