"""
Engine.IO v4 on Twisted: HTTP long-polling and WebSocket on one path, the upgrade
from one to the other, server-side heartbeats and the official server's errors.

L{EngineIOServer} owns the sessions and hands their messages to an L{EngineApp} (the
Socket.IO server, or any app that wants bare Engine.IO messages).  Its resource
serves every request of the mount path: polling requests itself, WebSocket upgrades
through Autobahn's C{WebSocketResource} with a factory from
L{gameproto.wire.make_factory}, so the WebSocket side shares the origin check,
per-address cap, frame limits and graceful shutdown of every gameproto endpoint.

Every timer runs on the injected clock.  The wire facts followed here, and why, are
in docs/chat.md.
"""

from __future__ import annotations

import base64
import enum
import itertools
import secrets
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Protocol

import attrs
from autobahn.twisted.resource import WebSocketResource
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from gameproto import wire
from gameproto.socketio.packets import (
    EnginePacket,
    EngineType,
    PacketError,
    decode_payload,
    decode_text_packet,
    encode_payload,
)

if TYPE_CHECKING:
    from twisted.web.server import Request


# ---------------------------------------------------------------------------
# Configuration and errors


POLLING = "polling"
WEBSOCKET = "websocket"


@attrs.frozen
class EngineIOConfig:
    """
    The options of one Engine.IO server, with the official server's defaults.
    Times are in seconds; C{max_payload} is in bytes and bounds both a polling POST
    and a WebSocket message.
    """

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    upgrade_timeout: float = 10.0
    max_payload: int = 1_000_000
    transports: tuple[str, ...] = (POLLING, WEBSOCKET)
    allow_upgrades: bool = True
    # Packets per second per client (ClientRates: its user, else its address), over
    # all its sessions and both transports, across reconnects.  None: no limit.
    messages_per_second: float | None = 1000.0
    burst: int = 2000

    @property
    def upgrades_from_polling(self) -> list[str]:
        return [WEBSOCKET] if self.allow_upgrades and WEBSOCKET in self.transports else []


class EngineError(enum.Enum):
    """The official server's request errors: (code, message, HTTP status)."""

    UNKNOWN_TRANSPORT = (0, "Transport unknown", 400)
    UNKNOWN_SID = (1, "Session ID unknown", 400)
    BAD_HANDSHAKE_METHOD = (2, "Bad handshake method", 400)
    BAD_REQUEST = (3, "Bad request", 400)
    FORBIDDEN = (4, "Forbidden", 403)
    UNSUPPORTED_PROTOCOL_VERSION = (5, "Unsupported protocol version", 400)

    @property
    def code(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]

    @property
    def status(self) -> int:
        return self.value[2]


class EngineApp(Protocol):
    """
    What runs on top of Engine.IO.  Each method is called on the reactor thread; an
    exception is logged and closes only that session.
    """

    def session_opened(self, session: "Session") -> None:
        """A new session; messages sent now go out right after the open packet."""

    def message_received(self, session: "Session", data: str | bytes) -> None:
        """A message packet: text, or binary data."""

    def session_closed(self, session: "Session", reason: str) -> None:
        """The session is over; sending to it does nothing any more."""


class SessionState(enum.Enum):
    POLLING = "polling"
    # A WebSocket answered the probe; polling GETs get a noop until the client sends 5.
    UPGRADING = "upgrading"
    WEBSOCKET = "websocket"
    CLOSED = "closed"


class SessionIds:
    """
    Session ids as the official server makes them: 12 random bytes and a 3-byte
    counter, URL-safe base64 (20 characters).  On polling the id is the only
    credential, hence the CSPRNG; the counter keeps ids unique.
    """

    def __init__(self) -> None:
        self._counter = itertools.count(secrets.randbelow(1 << 24))

    def __call__(self) -> str:
        raw = secrets.token_bytes(12) + (next(self._counter) % (1 << 24)).to_bytes(3, "big")
        return base64.urlsafe_b64encode(raw).decode("ascii")


# ---------------------------------------------------------------------------
# Packet rates per client


def client_key(user: Any, address: str) -> tuple[str, Any]:
    """
    Whose budget a session's packets count against: its user's when the handshake
    authenticated one (by its C{username}, the same across logins), else its
    address's.
    """
    if user is None:
        return ("address", address)
    return ("user", getattr(user, "username", user))


class ClientRates:
    """
    The packet budget of each client (L{client_key}), shared by all its sessions
    over both transports: one L{wire.RateLimiter} per client.  A client's limiter
    outlives its last session until it would be as good as new again (its bucket
    full, and a second without excess), so a client closed for flooding that
    reconnects at once is still over its limit.  Idle limiters past that age are
    forgotten whenever a session opens or closes: no timer, bounded memory.
    """

    def __init__(self, rate: float, burst: int, grace: float, clock: IReactorTime) -> None:
        self._rate = rate
        self._burst = burst
        self._grace = grace
        self._clock = clock
        # Refilling the bucket takes burst/rate seconds; an episode of excess ends
        # after a second without a dropped packet.
        self._keep_idle = burst / rate + 1.0
        self._limiters: dict[tuple[str, Any], wire.RateLimiter] = {}
        self._sessions: Counter[tuple[str, Any]] = Counter()
        # Clients with no session, oldest first, with the time their last one ended.
        self._idle: dict[tuple[str, Any], float] = {}

    def __contains__(self, key: tuple[str, Any]) -> bool:
        return key in self._limiters

    def __len__(self) -> int:
        return len(self._limiters)

    def acquire(self, key: tuple[str, Any]) -> wire.RateLimiter:
        """The limiter of C{key}, for one more session of it."""
        self._forget_idle()
        self._idle.pop(key, None)
        self._sessions[key] += 1
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = wire.RateLimiter.per_second(self._rate, self._burst, self._grace, self._clock)
            self._limiters[key] = limiter
        return limiter

    def release(self, key: tuple[str, Any]) -> None:
        """One session of C{key} is over."""
        self._sessions[key] -= 1
        if self._sessions[key] <= 0:
            del self._sessions[key]
            self._idle[key] = self._clock.seconds()
        self._forget_idle()

    def _forget_idle(self) -> None:
        now = self._clock.seconds()
        for key, since in list(self._idle.items()):
            if now - since < self._keep_idle:
                break
            del self._idle[key]
            del self._limiters[key]

    def stop(self) -> None:
        """Forget every client."""
        self._limiters.clear()
        self._sessions.clear()
        self._idle.clear()


# ---------------------------------------------------------------------------
# One session


class Session:
    """
    One Engine.IO session, whatever its transport.  The app sees only L{sid},
    L{transport}, L{address}, L{send} and L{close}.
    """

    _log = Logger()

    def __init__(
        self, engine: "EngineIOServer", sid: str, address: str, user: Any = None
    ) -> None:
        self.engine = engine
        self.sid = sid
        self.address = address
        # The user the handshake authenticated (the server's WireContext), or None.
        self.user = user
        self.client_key = client_key(user, address)
        self.state = SessionState.POLLING
        self._config = engine.config
        self._clock = engine.clock
        self._outbox: list[EnginePacket] = []
        self._get: Request | None = None
        self._ws: EngineIOWebSocket | None = None
        self._probe: EngineIOWebSocket | None = None
        self._ping_call: IDelayedCall | None = None
        self._pong_call: IDelayedCall | None = None
        self._pong_deadline_refreshed = False
        self._upgrade_call: IDelayedCall | None = None
        # The client's budget, shared with its other sessions and kept across
        # reconnects (ClientRates).
        self._limiter: wire.RateLimiter | None = None
        if engine.client_rates is not None:
            self._limiter = engine.client_rates.acquire(self.client_key)

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.state.value}>"

    @property
    def transport(self) -> str:
        return WEBSOCKET if self.state is SessionState.WEBSOCKET else POLLING

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def max_payload(self) -> int:
        """The largest message the client may send, in bytes (maxPayload)."""
        return self._config.max_payload

    # -- public API ------------------------------------------------------------

    def send(self, data: str | bytes, *, alone: bool = False) -> None:
        """
        Send one message packet; does nothing once the session is closed.

        With C{alone}, on WebSocket, the packet leaves in a write of its own: what
        is sent after it waits until it has been written out, then until the client
        sends something (it has read it) or L{ALONE_FOR} has passed.  A client that
        handles one WebSocket message per turn of its event loop, as the official
        protocol test-suite does, then reads it apart from what follows.  The open
        packet and Socket.IO's CONNECT reply go so; everything else sent in one
        reactor turn leaves in one write, room broadcasts included.  Over polling it
        changes nothing: a client reads a payload whole.
        """
        self._send(EnginePacket.message(data), alone=alone)

    def close(self, reason: str = "server disconnect") -> None:
        """Close the session; over polling, messages already sent are still delivered."""
        self._close(reason, drain=True)

    # -- lifecycle -----------------------------------------------------------

    def opened(self, upgrades: list[str]) -> None:
        handshake = {
            "sid": self.sid,
            "upgrades": upgrades,
            "pingInterval": round(self._config.ping_interval * 1000),
            "pingTimeout": round(self._config.ping_timeout * 1000),
            "maxPayload": self._config.max_payload,
        }
        # Alone: an app's first messages (sent in session_opened) follow in a write
        # of their own, as from the official server.
        self._send(
            EnginePacket(EngineType.OPEN, wire.encode(handshake).decode("ascii")), alone=True
        )
        self._schedule_ping()

    def _close(
        self,
        reason: str,
        *,
        drain: bool,
        farewell: EngineType = EngineType.CLOSE,
        ws_code: wire.CloseCode = wire.CloseCode.NORMAL,
    ) -> None:
        """
        End the session.  C{farewell} answers a pending GET: the close packet when
        the server ends the session, a noop when the client asked to close.  With
        C{drain}, packets a polling client has not fetched yet (a Socket.IO
        disconnect, say) wait for its next GET.
        """
        if self.state is SessionState.CLOSED:
            return
        previous = self.state
        self.state = SessionState.CLOSED
        for call in (self._ping_call, self._pong_call, self._upgrade_call):
            if call is not None and call.active():
                call.cancel()
        self._ping_call = self._pong_call = self._upgrade_call = None
        self.engine.forget(self)
        if self._probe is not None:
            self._probe.closeWith(wire.CloseCode.NORMAL, "session closed")
            self._probe = None
        if previous is SessionState.WEBSOCKET:
            assert self._ws is not None
            self._ws.closeWith(ws_code, reason)
        else:
            final = self._outbox + [EnginePacket(farewell)]
            self._outbox = []
            if self._get is not None:
                request, self._get = self._get, None
                write_payload(request, final)
            elif drain:
                self.engine.drain(self.sid, final)
        self._log.info(
            "Engine.IO session {sid} closed ({reason})", sid=self.sid, reason=reason
        )
        self.engine.call_app("session_closed", self, reason)

    # -- heartbeat -------------------------------------------------------------

    def _schedule_ping(self) -> None:
        self._ping_call = self._clock.callLater(self._config.ping_interval, self._ping)

    def _ping(self) -> None:
        self._ping_call = None
        self._pong_deadline_refreshed = False
        self._send(EnginePacket(EngineType.PING))
        # The deadline starts when the ping is queued, even if no GET can carry it
        # yet: a polling client that stops polling is as dead as a silent one.
        self._pong_call = self._clock.callLater(self._config.ping_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._pong_call = None
        # No drain: the client is gone, nothing would fetch the packets.
        self._close("ping timeout", drain=False)

    def _pong_received(self) -> None:
        if self._pong_call is None:
            return
        self._pong_call.cancel()
        self._pong_call = None
        self._schedule_ping()

    def _activity_while_waiting_for_pong(self) -> None:
        # As the official server: traffic proves the client alive, once per ping, so a
        # client busy sending over a slow link is not cut off for a late pong.
        if self._pong_call is not None and not self._pong_deadline_refreshed:
            self._pong_deadline_refreshed = True
            self._pong_call.reset(self._config.ping_timeout)

    # -- sending ---------------------------------------------------------------

    def _send(self, packet: EnginePacket, alone: bool = False) -> None:
        if self.state is SessionState.CLOSED:
            return
        if self.state is SessionState.WEBSOCKET:
            assert self._ws is not None
            self._ws.send_packet(packet, alone=alone)
            return
        self._outbox.append(packet)
        self._flush()

    def _flush(self) -> None:
        if self.state is SessionState.POLLING and self._get is not None and self._outbox:
            request, self._get = self._get, None
            packets, self._outbox = self._outbox, []
            write_payload(request, packets)

    # -- receiving -------------------------------------------------------------

    def _received(self, packet: EnginePacket) -> None:
        """A packet from the client on the session's current transport."""
        if not self._within_rate():
            return
        if packet.type is EngineType.PONG:
            self._pong_received()
            return
        self._activity_while_waiting_for_pong()
        if packet.type is EngineType.MESSAGE:
            self.engine.call_app("message_received", self, packet.data)
        elif packet.type is EngineType.CLOSE:
            self._close("transport close", drain=False, farewell=EngineType.NOOP)
        elif packet.type is EngineType.PING:
            # v4 clients never ping; the official server closes on it.
            self._close("invalid heartbeat direction", drain=False, ws_code=wire.CloseCode.BAD_REQUEST)
        # open, upgrade and noop from a client are ignored, as the official server does.

    def _within_rate(self) -> bool:
        verdict = wire.RateVerdict.ALLOW if self._limiter is None else self._limiter.check()
        if verdict is wire.RateVerdict.WARN:
            self._log.info("Engine.IO session {sid} over its rate limit", sid=self.sid)
        elif verdict is wire.RateVerdict.CLOSE:
            self._close("rate limit exceeded", drain=False, ws_code=wire.CloseCode.RATE_LIMITED)
        return verdict is wire.RateVerdict.ALLOW

    # -- polling ---------------------------------------------------------------

    def handle_get(self, request: "Request") -> None:
        if self.state is SessionState.WEBSOCKET:
            write_error(request, EngineError.BAD_REQUEST)  # transport mismatch
            return
        if self._get is not None:
            # Two GETs at once: the official server refuses the second and ends the
            # session; the first one gets the close packet.
            write_error(request, EngineError.BAD_REQUEST)
            self._close("overlapping poll", drain=False)
            return
        if self.state is SessionState.UPGRADING:
            # The client is moving to the WebSocket: release the poll at once.
            write_payload(request, [EnginePacket(EngineType.NOOP)])
            return
        self._get = request
        request.notifyFinish().addErrback(self._poll_aborted, request)
        self._flush()

    def _poll_aborted(self, reason: Failure, request: "Request") -> None:
        if self._get is request:
            self._get = None
            self._close("transport error", drain=False)

    def handle_post(self, request: "Request") -> None:
        if self.state is SessionState.WEBSOCKET:
            write_error(request, EngineError.BAD_REQUEST)  # transport mismatch
            return
        content = request.content
        content.seek(0, 2)
        size = content.tell()
        if size > self._config.max_payload:
            request.setResponseCode(413)
            request.setHeader("Content-Type", "text/plain; charset=UTF-8")
            request.setHeader("Content-Length", "17")
            request.write(b"Payload Too Large")
            request.finish()
            self._close("payload too large", drain=False)
            return
        content.seek(0)
        try:
            packets = decode_payload(content.read())
        except PacketError as e:
            write_error(request, EngineError.BAD_REQUEST)
            self._log.info(
                "Engine.IO session {sid}: invalid packet ({why})", sid=self.sid, why=str(e)
            )
            self._close("parse error", drain=False)
            return
        for packet in packets:
            if self.state is SessionState.CLOSED:
                break
            self._received(packet)
        request.setHeader("Content-Type", "text/html")
        request.setHeader("Content-Length", "2")
        request.write(b"ok")
        request.finish()

    # -- WebSocket -------------------------------------------------------------

    def websocket_opened(self, ws: "EngineIOWebSocket") -> None:
        """A WebSocket carrying this session's id: the start of an upgrade."""
        if (
            self.state is not SessionState.POLLING
            or self._probe is not None
            or not self._config.upgrades_from_polling
        ):
            # As the official server: accept, then close; a refused upgrade would be
            # an unhandled error in some clients.
            ws.closeWith(wire.CloseCode.BAD_REQUEST, "session cannot upgrade")
            return
        ws.session = self
        self._probe = ws
        self._upgrade_call = self._clock.callLater(
            self._config.upgrade_timeout, self._abort_upgrade, "upgrade timeout"
        )

    def attach_websocket(self, ws: "EngineIOWebSocket") -> None:
        """A session opened directly over WebSocket."""
        ws.session = self
        self._ws = ws
        self.state = SessionState.WEBSOCKET

    def websocket_packet(self, ws: "EngineIOWebSocket", packet: EnginePacket) -> None:
        if ws is self._ws:
            self._received(packet)
        elif ws is self._probe:
            self._probe_packet(packet)

    def websocket_invalid(self, ws: "EngineIOWebSocket", why: str) -> None:
        self._log.info("Engine.IO session {sid}: invalid packet ({why})", sid=self.sid, why=why)
        if ws is self._ws:
            self._close("parse error", drain=False, ws_code=wire.CloseCode.BAD_REQUEST)
        elif ws is self._probe:
            self._abort_upgrade("invalid probe packet")

    def _probe_packet(self, packet: EnginePacket) -> None:
        assert self._probe is not None
        if (
            self.state is SessionState.POLLING
            and packet.type is EngineType.PING
            and packet.data == "probe"
        ):
            self._probe.send_packet(EnginePacket(EngineType.PONG, "probe"))
            self.state = SessionState.UPGRADING
            if self._get is not None:
                request, self._get = self._get, None
                write_payload(request, [EnginePacket(EngineType.NOOP)])
        elif self.state is SessionState.UPGRADING and packet.type is EngineType.UPGRADE:
            self._upgraded()
        else:
            self._abort_upgrade("unexpected packet during upgrade")

    def _upgraded(self) -> None:
        assert self._probe is not None
        if self._upgrade_call is not None and self._upgrade_call.active():
            self._upgrade_call.cancel()
        self._upgrade_call = None
        self._ws, self._probe = self._probe, None
        self.state = SessionState.WEBSOCKET
        self.engine.polling_ended(self)
        self._log.debug("Engine.IO session {sid} upgraded to websocket", sid=self.sid)
        pending, self._outbox = self._outbox, []
        for packet in pending:
            self._ws.send_packet(packet)

    def _abort_upgrade(self, why: str) -> None:
        self._upgrade_call = None
        probe, self._probe = self._probe, None
        if self.state is SessionState.UPGRADING:
            self.state = SessionState.POLLING
        if probe is not None:
            probe.closeWith(wire.CloseCode.BAD_REQUEST, why)

    def websocket_closed(self, ws: "EngineIOWebSocket") -> None:
        if ws is self._ws:
            self._close("transport close", drain=False)
        elif ws is self._probe:
            if self._upgrade_call is not None and self._upgrade_call.active():
                self._upgrade_call.cancel()
            self._abort_upgrade("probe closed")

    def server_shutting_down(self) -> None:
        # No drain: the server will not be there for the next GET.
        self._close("server shutting down", drain=False, ws_code=wire.CloseCode.SHUTTING_DOWN)


# ---------------------------------------------------------------------------
# Packets sent alone


# How long packets wait behind a packet sent alone while the client says nothing:
# time for a client that handles one WebSocket message per turn to read it first,
# even on a loaded machine.  (The official server only waits for the write to
# complete; measured here, that was not enough for its own test-suite's client.)
ALONE_FOR = 0.01


def call_after_write(clock: IReactorTime, f: Callable[[], None]) -> None:
    """
    Call C{f} once what was written to a transport so far has been handed to the
    kernel.  A turn of a Twisted reactor runs the timed calls that are due, then its
    I/O step, which sends what its transports were given: a call made now runs before
    the next I/O step, and a call that one makes runs after it.
    """
    clock.callLater(0, clock.callLater, 0, f)


class AloneWrites:
    """
    The writes of one WebSocket around packets sent alone.  A packet sent alone is
    written at once; what is sent after it waits until it has been written out, then
    until the client sends something (it has read it) or L{ALONE_FOR} has passed.
    Anything else is written at once, so a turn's packets leave in one write.
    """

    def __init__(self, clock: IReactorTime, write: Callable[[EnginePacket], None]) -> None:
        self._clock = clock
        self._write = write
        # Packets behind a packet sent alone, with their own alone flag; None: none.
        self._held: list[tuple[EnginePacket, bool]] | None = None
        self._written = False
        self._client_spoke = False
        self._timer: IDelayedCall | None = None

    def send(self, packet: EnginePacket, alone: bool = False) -> None:
        if self._held is not None:
            self._held.append((packet, alone))
            return
        self._write(packet)
        if alone:
            self._held = []
            self._written = self._client_spoke = False
            call_after_write(self._clock, self._write_done)

    def client_spoke(self) -> None:
        """A packet from the client: what it says now, it says having read ours."""
        if self._held is None:
            return
        if self._written:
            self.release()
        else:
            self._client_spoke = True

    def release(self) -> None:
        """Write what waits, now (also before a close frame)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        held, self._held = self._held or [], None
        for packet, alone in held:
            # A packet sent alone among them holds the rest again.
            self.send(packet, alone)

    def _write_done(self) -> None:
        if self._held is None:  # released meanwhile (the connection closed)
            return
        self._written = True
        if self._client_spoke:
            self.release()
        else:
            self._timer = self._clock.callLater(ALONE_FOR, self.release)


# ---------------------------------------------------------------------------
# HTTP helpers


def write_payload(request: "Request", packets: list[EnginePacket]) -> None:
    body = encode_payload(packets)
    request.setHeader("Content-Type", "text/plain; charset=UTF-8")
    request.setHeader("Cache-Control", "no-store")
    request.setHeader("Content-Length", str(len(body)))
    request.write(body)
    request.finish()


def write_error(request: "Request", error: EngineError, message: str | None = None) -> None:
    body = wire.encode({"code": error.code, "message": message or error.message})
    request.setResponseCode(error.status)
    request.setHeader("Content-Type", "application/json")
    request.setHeader("Content-Length", str(len(body)))
    request.write(body)
    request.finish()


def _connection_request(request: "Request", host: str) -> ConnectionRequest:
    """
    A polling handshake as the server's C{authenticate} sees WebSocket ones: its
    headers (names in lower case) and query; it has no WebSocket version,
    subprotocols or extensions.
    """
    headers = {
        name.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
        for name, values in request.requestHeaders.getAllRawHeaders()
    }
    params = {
        name.decode("latin-1"): [v.decode("latin-1") for v in values]
        for name, values in request.args.items()
    }
    return ConnectionRequest(
        peer=f"tcp:{host}",
        headers=headers,
        host=headers.get("host", ""),
        path=request.path.decode("latin-1"),
        params=params,
        version=None,
        origin=headers.get("origin"),
        protocols=[],
        extensions=[],
    )


def _query(request: "Request", name: bytes) -> str | None:
    values = request.args.get(name)
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        return ""


def _header(request: "Request", name: bytes) -> str | None:
    # getHeader with a str name decodes the value as UTF-8 and raises on anything
    # else, which a client controls: bytes in, then a latin-1 decode that cannot
    # fail.  A value that was not ASCII then matches no listed origin.
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


class _PollingConnection:
    """
    A polling session as L{wire.Connections} sees it: one connection of its client
    address, closed on shutdown like a WebSocket.  An upgraded session is counted by
    its WebSocket instead.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def serverShuttingDown(self) -> None:
        self.session.server_shutting_down()

    def dropConnection(self, abort: bool = False) -> None:
        self.session._close("server shutting down", drain=False)


# ---------------------------------------------------------------------------
# The server


class EngineIOServer:
    """
    The sessions of one Engine.IO mount point and the resource that serves it.

    @param app: receives the sessions' lifecycle and messages.
    @param context: the server's L{wire.WireContext} (origins, connection cap).
    @param clock: every heartbeat, upgrade and drain timer runs on it.
    """

    _log = Logger()

    def __init__(
        self,
        app: EngineApp,
        context: wire.WireContext,
        clock: IReactorTime,
        config: EngineIOConfig = EngineIOConfig(),
    ) -> None:
        self.app = app
        self.context = context
        self.clock = clock
        self.config = config
        self.sessions: dict[str, Session] = {}
        self._polling: dict[Session, _PollingConnection] = {}
        self._draining: dict[str, tuple[list[EnginePacket], IDelayedCall]] = {}
        self._new_sid = SessionIds()
        self.client_rates: ClientRates | None = None
        if config.messages_per_second is not None:
            self.client_rates = ClientRates(
                config.messages_per_second,
                config.burst,
                context.server_limits.rate_limit_grace,
                clock,
            )
        self.websocket_factory = wire.make_factory(
            EngineIOWebSocket,
            # Rate limiting is per client (both transports), not per WebSocket, and
            # Engine.IO's own ping/pong replaces Autobahn's WebSocket pings.
            wire.EndpointLimits(
                max_message_size=config.max_payload, messages_per_second=None, auto_ping=False
            ),
            context,
            engine=self,
        )

    def stop(self) -> None:
        """
        Close every session at once and drop undelivered packets, leaving no timer
        behind (a graceful shutdown goes through L{wire.Connections.close_all} first).
        """
        for session in list(self.sessions.values()):
            session._close("server shutting down", drain=False, ws_code=wire.CloseCode.SHUTTING_DOWN)
        for packets, call in self._draining.values():
            if call.active():
                call.cancel()
        self._draining.clear()
        if self.client_rates is not None:
            self.client_rates.stop()

    def resource(self) -> "EngineIOResource":
        """The resource to mount at the Engine.IO path (C{/socket.io/})."""
        return EngineIOResource(self)

    # -- used by sessions and the WebSocket adapter ----------------------------

    def call_app(self, method: str, session: Session, *args: Any) -> None:
        try:
            getattr(self.app, method)(session, *args)
        except Exception:
            self._log.failure(
                "Engine.IO app failed in {method} for session {sid}", method=method, sid=session.sid
            )
            if method != "session_closed":
                session._close("internal error", drain=False, ws_code=wire.CloseCode.INTERNAL_ERROR)

    def forget(self, session: Session) -> None:
        """C{session} is over (called once per session)."""
        self.sessions.pop(session.sid, None)
        self.polling_ended(session)
        if self.client_rates is not None:
            self.client_rates.release(session.client_key)

    def polling_ended(self, session: Session) -> None:
        connection = self._polling.pop(session, None)
        if connection is not None:
            self.context.connections.release(connection, session.address)

    def drain(self, sid: str, packets: list[EnginePacket]) -> None:
        """Keep a closed session's last packets for the client's next GET."""
        # As long as a live client may go without polling.
        delay = self.config.ping_interval + self.config.ping_timeout
        call = self.clock.callLater(delay, self._draining.pop, sid, None)
        self._draining[sid] = (packets, call)

    def _new_session(self, address: str, user: Any) -> Session:
        session = Session(self, self._new_sid(), address, user)
        self.sessions[session.sid] = session
        return session

    def websocket_opened(self, ws: "EngineIOWebSocket", sid: str | None) -> None:
        if sid is not None:
            session = self.sessions.get(sid)
            if session is None:  # closed between the handshake and now
                ws.closeWith(wire.CloseCode.NOT_FOUND, "Session ID unknown")
                return
            session.websocket_opened(ws)
            return
        session = self._new_session(ws.address, ws.user)
        session.attach_websocket(ws)
        self._log.info(
            "Engine.IO session {sid} opened over websocket from {address}",
            sid=session.sid,
            address=session.address,
        )
        session.opened(upgrades=[])
        self.call_app("session_opened", session)

    # -- HTTP ------------------------------------------------------------------

    def render(self, request: "Request", websocket: WebSocketResource) -> bytes | int:
        origin = _header(request, b"origin")
        origin_allowed = self.context.origins.allows(origin, _header(request, b"host"))
        if origin_allowed and origin:
            self._cors_headers(request, origin)
        if request.method == b"OPTIONS":
            request.setResponseCode(204 if origin_allowed else 403)
            return b""
        transport = _query(request, b"transport")
        if transport not in self.config.transports:
            return self._refuse(request, EngineError.UNKNOWN_TRANSPORT)
        if _query(request, b"EIO") != "4":
            return self._refuse(request, EngineError.UNSUPPORTED_PROTOCOL_VERSION)
        sid = _query(request, b"sid")
        upgrade = (_header(request, b"upgrade") or "").lower() == "websocket"
        if sid is not None and sid not in self.sessions:
            if sid in self._draining and request.method == b"GET" and not upgrade:
                packets, call = self._draining.pop(sid)
                call.cancel()
                write_payload(request, packets)
                return NOT_DONE_YET
            return self._refuse(request, EngineError.UNKNOWN_SID)
        if sid is None and request.method != b"GET":
            return self._refuse(request, EngineError.BAD_HANDSHAKE_METHOD)
        if transport == WEBSOCKET and not upgrade:
            # Never serve it as a poll: it would swallow queued packets.
            return self._refuse(request, EngineError.BAD_REQUEST)
        if not origin_allowed:
            return self._refuse(request, EngineError.FORBIDDEN)
        if transport == WEBSOCKET:
            result: bytes | int = websocket.render(request)
            return result
        if sid is None:
            return self._handshake(request)
        session = self.sessions[sid]
        if request.method == b"GET":
            session.handle_get(request)
        elif request.method == b"POST":
            session.handle_post(request)
        else:
            write_error(request, EngineError.BAD_REQUEST)
        return NOT_DONE_YET

    def _handshake(self, request: "Request") -> int:
        address = request.getClientAddress()
        host = getattr(address, "host", str(address))
        # A client that goes away while it is being authenticated gets no session.
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def failed(failure: Failure) -> None:
            # A store outage must not refuse the chat: the session is anonymous.
            self._log.failure("Engine.IO: authenticating a polling handshake", failure)

        def authenticated(user: Any) -> None:
            if not gone:
                self._open_polling(request, host, user)

        d = maybeDeferred(
            self.context.authenticate,
            _connection_request(request, host),
            self.context.origins.cookies_allowed,
        )
        d.addErrback(failed)
        d.addCallback(authenticated)
        d.addErrback(self._handshake_failed, request)
        return NOT_DONE_YET

    def _handshake_failed(self, failure: Failure, request: "Request") -> None:
        self._log.failure("Engine.IO polling handshake failed", failure)
        if not request.finished and not request.startedWriting:
            request.setResponseCode(500)
            request.setHeader("Content-Type", "application/json")
            request.write(wire.encode({"code": 3, "message": "Internal error"}))
            request.finish()

    def _open_polling(self, request: "Request", host: str, user: Any) -> None:
        session = self._new_session(host, user)
        connection = _PollingConnection(session)
        if not self.context.connections.admit(connection, host):
            self.forget(session)
            why = "Server shutting down" if self.context.connections.shutting_down else (
                "Too many connections"
            )
            write_error(request, EngineError.FORBIDDEN, why)
            return
        self._polling[session] = connection
        self._log.info(
            "Engine.IO session {sid} opened over polling from {address}",
            sid=session.sid,
            address=host,
        )
        session.opened(upgrades=self.config.upgrades_from_polling)
        self.call_app("session_opened", session)
        if session.closed:
            write_error(request, EngineError.FORBIDDEN)
        else:
            session.handle_get(request)

    def _refuse(self, request: "Request", error: EngineError) -> int:
        self._log.debug(
            "Engine.IO request refused: {message}", message=error.message, code=error.code
        )
        write_error(request, error)
        return NOT_DONE_YET

    def _cors_headers(self, request: "Request", origin: str) -> None:
        if self.context.origins.allow_all:
            request.setHeader("Access-Control-Allow-Origin", "*")
        else:
            # A listed origin may send cookies (withCredentials): echo it, never "*".
            request.setHeader("Access-Control-Allow-Origin", origin)
            request.setHeader("Access-Control-Allow-Credentials", "true")
            request.setHeader("Vary", "Origin")
        if request.method == b"OPTIONS":
            request.setHeader("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            # Bytes in, bytes out: the value is echoed exactly as the client sent it.
            wanted = request.getHeader(b"access-control-request-headers")
            if wanted:
                request.setHeader(b"Access-Control-Allow-Headers", wanted)
                request.setHeader("Vary", "Origin, Access-Control-Request-Headers")
            request.setHeader("Access-Control-Max-Age", "86400")


class EngineIOResource(Resource):
    """Serves every request under the Engine.IO mount path."""

    isLeaf = True
    _log = Logger()

    def __init__(self, engine: EngineIOServer) -> None:
        super().__init__()
        self.engine = engine
        self._websocket = WebSocketResource(engine.websocket_factory)

    def render(self, request: "Request") -> bytes | int:
        try:
            return self.engine.render(request, self._websocket)
        except Exception:
            self._log.failure("Engine.IO request failed")
            if not request.finished and not request.startedWriting:
                request.setResponseCode(500)
                request.setHeader("Content-Type", "application/json")
                return wire.encode({"code": 3, "message": "Internal error"})
            return NOT_DONE_YET


# ---------------------------------------------------------------------------
# The WebSocket transport


class EngineIOWebSocket(wire.JSONProtocol):
    """
    The WebSocket transport: a thin adapter that turns frames into Engine.IO packets
    for its L{Session} (the session's own transport, or the probe of an upgrade).
    The base class has already checked the origin and the per-address cap.
    """

    endpoint = "engine.io"
    session: Session | None = None
    _sid: str | None = None
    _writes: AloneWrites | None = None

    @property
    def engine(self) -> EngineIOServer:
        engine: EngineIOServer = self.factory.engine
        return engine

    @property
    def address(self) -> str:
        return wire.peer_address(self.peer)

    def onConnect(self, request: ConnectionRequest) -> Any:
        sid = request.params.get("sid", [None])[0]
        if sid is not None and sid not in self.engine.sessions:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, EngineError.UNKNOWN_SID.message)
        self._sid = sid
        return super().onConnect(request)

    def connectionOpened(self) -> None:
        self.engine.websocket_opened(self, self._sid)

    def textReceived(self, payload: bytes) -> None:
        if self.session is None:
            return
        if self._writes is not None:
            self._writes.client_spoke()
        try:
            packet = decode_text_packet(payload.decode("utf-8"))
        except PacketError as e:
            self.session.websocket_invalid(self, str(e))
            return
        self.session.websocket_packet(self, packet)

    def binaryReceived(self, payload: bytes) -> None:
        if self.session is not None:
            if self._writes is not None:
                self._writes.client_spoke()
            self.session.websocket_packet(self, EnginePacket.message(payload))

    def connectionClosed(self, code: int | None) -> None:
        if self._writes is not None:
            self._writes.release()  # nothing is written any more: this ends its timer
        if self.session is not None:
            self.session.websocket_closed(self)

    def serverShuttingDown(self) -> None:
        if self.session is not None and not self.session.closed:
            self.session.server_shutting_down()
        if self.state == self.STATE_OPEN:
            super().serverShuttingDown()

    def send_packet(self, packet: EnginePacket, alone: bool = False) -> None:
        """Send C{packet}; with C{alone}, as L{AloneWrites} says."""
        if self.state != self.STATE_OPEN:
            return
        if self._writes is None:
            self._writes = AloneWrites(self.engine.clock, self._write)
        self._writes.send(packet, alone)

    def _write(self, packet: EnginePacket) -> None:
        if self.state != self.STATE_OPEN:
            return
        if isinstance(packet.data, bytes):
            self.sendMessage(packet.data, isBinary=True)
        else:
            self.sendMessage((packet.type.value + packet.data).encode("utf-8"), isBinary=False)

    def closeWith(self, code: wire.CloseCode, reason: str) -> None:
        # A session may end while its socket is already closing: nothing left to say.
        if self.state == self.STATE_OPEN:
            # What waits behind a packet sent alone goes before the close frame.
            if self._writes is not None:
                self._writes.release()
            super().closeWith(code, reason)
