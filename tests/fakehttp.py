"""
HTTP against a C{Site} in memory: raw request bytes into a protocol on a
C{StringTransport}, the response parsed back.  No network, no reactor.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.web.server import Site

from gameproto import wire


@attrs.frozen
class FakeResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return wire.decode(self.body)


def _dechunk(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body += data[:size]
        data = data[size + 2 :]
    return body


def parse_response(raw: bytes) -> FakeResponse:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(rest)
    elif "content-length" in headers:
        body = rest[: int(headers["content-length"])]
    else:
        body = rest
    return FakeResponse(status, headers, body)


def connect(site: Site, port: int = 40000,
            host: str = "127.0.0.1") -> tuple[Any, StringTransportWithDisconnection]:
    """A connection to C{site} from C{host} (an IPv4 or IPv6 address), port C{port}."""
    address = IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)
    protocol = site.buildProtocol(address)
    transport = StringTransportWithDisconnection(peerAddress=address)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


def request(
    site: Site,
    method: str,
    path: str,
    body: bytes | Any | None = None,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> FakeResponse:
    """
    Send one request from C{host} and return the response written synchronously (the
    caller makes sure every Deferred behind the handler has fired, e.g. a memory store).
    """
    if body is not None and not isinstance(body, bytes):
        body = wire.encode(body)
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + (body or b"")
    protocol, transport = connect(site, host=host)
    protocol.dataReceived(raw)
    return parse_response(transport.value())
