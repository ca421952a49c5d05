"""
One Engine.IO session, whatever its transport: L{Session}, what the app and the
transports see, is a thin adapter around the session's state machine below.

States of one session::

    Opening ──openedOverWebSocket──────────────────────────────────────┐
       │  └──refused (no room for it)──▶ Closed                        │
       │ openedOverPolling                                             ▼
       ▼     probeOpened          probePinged         upgradeRequested
    Polling ────────────▶ Probing ───────────▶ Upgrading ──────────▶ WebSocket
       ▲                     │                    │
       └─────────────────────┴────────────────────┘
         probeFailed, frameInvalid, websocketClosed (of the probe);
         upgradeRequested while probing, probePinged while upgrading

    Polling, Probing, Upgrading ──appClosed──▶ Closing ──pollReceived, drained──▶ Closed
    Polling, Probing, Upgrading ──pingTimedOut, clientClosed, pollAbandoned,
                                  failed, shuttingDown──────────────────────────▶ Closed
    WebSocket ──appClosed, pingTimedOut, clientClosed, frameInvalid,
                websocketClosed, failed, shuttingDown───────────────────────────▶ Closed

Polling GETs and POSTs are inputs in every state: while upgrading a GET is released
at once with a noop, and over WebSocket both are refused (transport mismatch).  A
session closed by its app over polling is Closing: closed for the app, its last
packets (then the close packet) waiting for the client's next GET.

What a client sends on its transport (L{Session.packet_received}) and what the app
sends (L{Session.send}) are the hot path and do not go through the machine: the
machine puts the current transport in L{SessionCore.outgoing}, and only a close,
a client's close packet or a broken rule becomes an input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.web.server import Request

from gameproto import wire
from gameproto.socketio.engineio.framing import EnginePacket, EngineType
from gameproto.socketio.engineio.heartbeat import Heartbeat
from gameproto.socketio.engineio.machine import SessionCore, SessionInputs, SessionMachine
from gameproto.socketio.engineio.polling import PollingTransport, write_ok
from gameproto.socketio.engineio.rates import client_key
from gameproto.socketio.engineio.websocket import EngineIOWebSocket

if TYPE_CHECKING:
    from gameproto.socketio.engineio.server import EngineIOServer

CloseCode = wire.CloseCode


class Session:
    """
    One Engine.IO session.  The app sees L{sid}, L{address}, L{user},
    L{client_key}, L{max_payload}, L{transport}, L{closed}, L{send} and L{close};
    the server and the transports call the methods below those.  Its lifecycle is
    the state machine of this module's diagram (L{gameproto.socketio.engineio.machine}).
    """

    _log = Logger()

    def __init__(self, engine: "EngineIOServer", sid: str, address: str, user: Any = None) -> None:
        config = engine.config
        self.sid = sid
        self.address = address
        # The user the handshake authenticated (the server's WireContext), or None.
        self.user = user
        self.client_key = client_key(user, address)
        # The largest message the client may send, in bytes (maxPayload).
        self.max_payload = config.max_payload
        self._app = engine.app
        self._heartbeat = Heartbeat(
            engine.clock,
            config.ping_interval,
            config.ping_timeout,
            self._send_ping,
            self._ping_timed_out,
        )
        polling = PollingTransport(self._poll_abandoned, engine.traffic)
        self._core = SessionCore(self, engine, polling, self._heartbeat)
        self._machine: SessionInputs = SessionMachine(self._core)
        # The client's budget, shared with its other sessions and kept across
        # reconnects (ClientRates).
        self._limiter: wire.RateLimiter | None = None
        if engine.client_rates is not None:
            self._limiter = engine.client_rates.acquire(self.client_key)

    def __repr__(self) -> str:
        return f"<Session {self.sid} {'closed' if self.closed else self.transport}>"

    @property
    def transport(self) -> str:
        """C{"polling"} or C{"websocket"}; it changes on upgrade."""
        return self._core.transport

    @property
    def closed(self) -> bool:
        return self._core.closed

    # -- for the app -------------------------------------------------------------

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
        self._core.outgoing.send_packet(EnginePacket(EngineType.MESSAGE, data), alone)

    def send_packet(self, packet: EnginePacket) -> None:
        """
        Send a message packet built once for many sessions (a broadcast): over
        WebSocket its frame is built once too (L{EnginePacket.websocket_message}).
        """
        self._core.outgoing.send_packet(packet, False)

    def close(self, reason: str = "server disconnect") -> None:
        """Close the session; over polling, messages already sent are still delivered."""
        self._machine.appClosed(reason)

    # -- for the server ------------------------------------------------------------

    def open_over_polling(self) -> None:
        self._machine.openedOverPolling()
        self._tell_app_opened()

    def open_over_websocket(self, ws: EngineIOWebSocket) -> None:
        self._machine.openedOverWebSocket(ws)
        self._tell_app_opened()

    def refuse(self) -> None:
        """No room for this session (the server's connection cap, or shutdown)."""
        self._machine.refused()

    def poll(self, request: Request) -> None:
        """A polling GET."""
        self._machine.pollReceived(request)

    def post(self, request: Request) -> None:
        """A polling POST: its packets, one by one, until one closes the session."""
        packets = self._machine.postReceived(request)
        if packets is None:
            return
        for packet in packets:
            if self._core.closed:
                break
            self.packet_received(packet)
        write_ok(request)

    def probe_opened(self, ws: EngineIOWebSocket) -> None:
        """A WebSocket carrying this session's id: the start of an upgrade."""
        self._machine.probeOpened(ws)

    def server_shutting_down(self) -> None:
        self._machine.shuttingDown()

    # -- for the transports ----------------------------------------------------------

    def packet_received(self, packet: EnginePacket) -> None:
        """A packet from the client on the session's transport: a POST's or a frame."""
        if self._limiter is not None:
            verdict = self._limiter.check()
            if verdict is not wire.RateVerdict.ALLOW:
                if verdict is wire.RateVerdict.WARN:
                    self._log.info("Engine.IO session {sid} over its rate limit", sid=self.sid)
                elif verdict is wire.RateVerdict.CLOSE:
                    self._machine.failed("rate limit exceeded", CloseCode.RATE_LIMITED)
                return
        kind = packet.type
        if kind is EngineType.PONG:
            self._heartbeat.pong()
            return
        self._heartbeat.activity()
        if kind is EngineType.MESSAGE:
            try:
                self._app.message_received(self, packet.data)
            except Exception:
                self._app_failed("message_received")
        elif kind is EngineType.CLOSE:
            self._machine.clientClosed()
        elif kind is EngineType.PING:
            # v4 clients never ping; the official server closes on it.
            self._machine.failed("invalid heartbeat direction", CloseCode.BAD_REQUEST)
        # open, upgrade and noop from a client are ignored, as the official server does.

    def probe_received(self, packet: EnginePacket) -> None:
        """A packet on the WebSocket probing an upgrade: C{2probe}, then C{5}."""
        if packet.type is EngineType.PING and packet.data == "probe":
            self._machine.probePinged()
        elif packet.type is EngineType.UPGRADE:
            self._machine.upgradeRequested()
        else:
            self._machine.probeFailed("unexpected packet during upgrade")

    def invalid_frame(self, why: str) -> None:
        """A WebSocket frame that is no Engine.IO packet."""
        self._machine.frameInvalid(why)

    def websocket_closed(self) -> None:
        self._machine.websocketClosed()

    # -- internals -----------------------------------------------------------------

    def _send_ping(self) -> None:
        self._core.outgoing.send_packet(EnginePacket(EngineType.PING))

    def _ping_timed_out(self) -> None:
        # No drain: the client is gone, nothing would fetch the packets.
        self._machine.pingTimedOut()

    def _poll_abandoned(self) -> None:
        self._machine.pollAbandoned()

    def _tell_app_opened(self) -> None:
        try:
            self._app.session_opened(self)
        except Exception:
            self._app_failed("session_opened")

    def _app_failed(self, method: str) -> None:
        self._log.failure("Engine.IO app failed in {method} for session {sid}", method=method, sid=self.sid)
        self._machine.failed("internal error", CloseCode.INTERNAL_ERROR)
