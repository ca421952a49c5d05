"""
The HTTP long-polling transport: the packets of a session that wait for a GET, the
one GET held open for them, and the HTTP answers the official server gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.python.failure import Failure
from twisted.web.server import Request

from gameproto import wire
from gameproto.metrics import Traffic
from gameproto.socketio.engineio.config import EngineError
from gameproto.socketio.engineio.framing import EnginePacket, decode_payload, encode_payload

if TYPE_CHECKING:
    from gameproto.socketio.engineio.session import Session


class PollingTransport:
    """
    What a polling session sends waits in L{outbox} until a GET fetches it; a GET
    that finds nothing is held until something is sent.  C{lost} is called when the
    client goes away from a held GET.
    """

    def __init__(self, lost: Callable[[], None], traffic: Traffic) -> None:
        self.traffic = traffic
        self.outbox: list[EnginePacket] = []
        self._get: Request | None = None
        self._lost = lost

    @property
    def holding(self) -> bool:
        """Whether a GET is held open."""
        return self._get is not None

    def send_packet(self, packet: EnginePacket, alone: bool = False) -> None:
        # A client reads a payload whole: sending alone changes nothing here.
        self.outbox.append(packet)
        if self._get is not None:
            self._flush()

    def hold(self, request: Request) -> None:
        """A GET: answered at once with what waits, else when something is sent."""
        self._get = request
        request.notifyFinish().addErrback(self._gone, request)
        if self.outbox:
            self._flush()

    def answer(self, packets: list[EnginePacket]) -> bool:
        """Answer the held GET with C{packets}; C{False} if none is held."""
        request, self._get = self._get, None
        if request is None:
            return False
        write_payload(request, packets, self.traffic)
        return True

    def take(self) -> list[EnginePacket]:
        """What waits, now no longer waiting."""
        packets, self.outbox = self.outbox, []
        return packets

    def _flush(self) -> None:
        assert self._get is not None
        request, self._get = self._get, None
        packets, self.outbox = self.outbox, []
        write_payload(request, packets, self.traffic)

    def _gone(self, reason: Failure, request: Request) -> None:
        if self._get is request:
            self._get = None
            self._lost()


class PollingConnection:
    """
    A polling session as L{wire.Connections} sees it: one connection of its client
    address, closed on shutdown like a WebSocket.  An upgraded session is counted by
    its WebSocket instead.
    """

    def __init__(self, session: "Session") -> None:
        self.session = session

    def serverShuttingDown(self) -> None:
        self.session.server_shutting_down()

    def dropConnection(self, abort: bool = False) -> None:
        self.session.server_shutting_down()


# ---------------------------------------------------------------------------
# Requests and answers


class PayloadTooLarge(Exception):
    """A POST over maxPayload."""


def read_payload(request: Request, max_payload: int, traffic: Traffic) -> list[EnginePacket]:
    """
    The packets of a POST, counted in C{traffic}.  Raises L{PayloadTooLarge}, or
    L{gameproto.socketio.engineio.framing.PacketError} for a body that is not a payload.
    """
    content = request.content
    content.seek(0, 2)
    size = content.tell()
    if size > max_payload:
        raise PayloadTooLarge()
    content.seek(0)
    packets = decode_payload(content.read())
    traffic.received_batch(len(packets), size)
    return packets


def write_payload(request: Request, packets: list[EnginePacket], traffic: Traffic) -> None:
    body = encode_payload(packets)
    traffic.sent_batch(len(packets), len(body))
    request.setHeader("Content-Type", "text/plain; charset=UTF-8")
    request.setHeader("Cache-Control", "no-store")
    request.setHeader("Content-Length", str(len(body)))
    request.write(body)
    request.finish()


def write_ok(request: Request) -> None:
    """A POST's answer: C{ok}, as the official server (the engine.io suite checks it)."""
    request.setHeader("Content-Type", "text/html")
    request.setHeader("Content-Length", "2")
    request.write(b"ok")
    request.finish()


def write_too_large(request: Request) -> None:
    request.setResponseCode(413)
    request.setHeader("Content-Type", "text/plain; charset=UTF-8")
    request.setHeader("Content-Length", "17")
    request.write(b"Payload Too Large")
    request.finish()


def write_error(request: Request, error: EngineError, message: str | None = None) -> None:
    body = wire.encode({"code": error.code, "message": message or error.message})
    request.setResponseCode(error.status)
    request.setHeader("Content-Type", "application/json")
    request.setHeader("Content-Length", str(len(body)))
    request.write(body)
    request.finish()
