"""
The sessions of one Engine.IO mount point and the resource that serves them.

L{EngineIOServer} owns the sessions and hands their messages to an L{EngineApp}
(the Socket.IO server, or any app that wants bare Engine.IO messages).  Its
resource serves every request of the mount path: polling requests itself, WebSocket
upgrades through Autobahn's C{WebSocketResource} with a factory from
L{gameproto.wire.make_factory}, so the WebSocket side shares the origin check,
per-address cap, frame limits and graceful shutdown of every gameproto endpoint.
"""

from __future__ import annotations

import base64
import itertools
import secrets
from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from gameproto import wire
from gameproto.socketio.engineio.config import WEBSOCKET, EngineApp, EngineError, EngineIOConfig
from gameproto.socketio.engineio.polling import PollingConnection, write_error
from gameproto.socketio.engineio.rates import ClientRates
from gameproto.socketio.engineio.session import Session
from gameproto.socketio.engineio.websocket import EngineIOWebSocket

if TYPE_CHECKING:
    from twisted.web.server import Request


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
        # The chat's messages over polling (its WebSockets count theirs in wire).
        self.metrics = context.metrics
        self.traffic = context.metrics.traffic("chat")
        self.sessions: dict[str, Session] = {}
        self._polling: dict[Session, PollingConnection] = {}
        # Sessions closed over polling whose last packets wait for a GET (Closing).
        self._closing: dict[str, Session] = {}
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
        for session in [*self.sessions.values(), *self._closing.values()]:
            session.server_shutting_down()
        if self.client_rates is not None:
            self.client_rates.stop()

    def resource(self) -> "EngineIOResource":
        """The resource to mount at the Engine.IO path (C{/socket.io/})."""
        return EngineIOResource(self)

    # -- used by sessions and the WebSocket adapter ----------------------------

    def forget(self, session: Session) -> None:
        """C{session} is over for its app (called once per session)."""
        self.sessions.pop(session.sid, None)
        self.polling_ended(session)
        if self.client_rates is not None:
            self.client_rates.release(session.client_key)

    def polling_ended(self, session: Session) -> None:
        """C{session} no longer polls: its WebSocket, if any, counts against its address."""
        connection = self._polling.pop(session, None)
        if connection is not None:
            self.metrics.closed("chat", "polling")
            self.context.connections.release(connection, session.address)

    def draining(self, session: Session) -> None:
        """C{session} is closed; its last packets wait for the client's next GET."""
        self._closing[session.sid] = session

    def drained(self, session: Session) -> None:
        self._closing.pop(session.sid, None)

    def _new_session(self, address: str, user: Any) -> Session:
        session = Session(self, self._new_sid(), address, user)
        self.sessions[session.sid] = session
        return session

    def websocket_opened(self, ws: "EngineIOWebSocket", sid: str | None) -> None:
        if sid is not None:
            session = self.sessions.get(sid)
            if session is None:  # closed between the handshake and now
                ws.closeWith(wire.CloseCode.NOT_FOUND, EngineError.UNKNOWN_SID.message)
            elif not self.config.upgrades_from_polling:
                # As the official server: accept, then close; a refused upgrade
                # would be an unhandled error in some clients.
                ws.closeWith(wire.CloseCode.BAD_REQUEST, "session cannot upgrade")
            else:
                session.probe_opened(ws)
            return
        session = self._new_session(ws.address, ws.user)
        self._log.info(
            "Engine.IO session {sid} opened over websocket from {address}",
            sid=session.sid,
            address=session.address,
        )
        session.open_over_websocket(ws)

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
            closing = self._closing.get(sid)
            if closing is not None and request.method == b"GET" and not upgrade:
                closing.poll(request)  # its last packets
                return NOT_DONE_YET
            return self._refuse(request, EngineError.UNKNOWN_SID)
        if sid is None and request.method != b"GET":
            return self._refuse(request, EngineError.BAD_HANDSHAKE_METHOD)
        if transport == WEBSOCKET and not upgrade:
            # Never serve it as a poll: it would swallow queued packets.
            return self._refuse(request, EngineError.BAD_REQUEST)
        if not origin_allowed:
            self.metrics.refusals.labels("chat", "origin").inc()
            return self._refuse(request, EngineError.FORBIDDEN)
        if transport == WEBSOCKET:
            result: bytes | int = websocket.render(request)
            return result
        if sid is None:
            return self._handshake(request)
        session = self.sessions[sid]
        # A session's own poll: left out of the default access log (see gameproto.web).
        request.transport_poll = True
        if request.method == b"GET":
            session.poll(request)
        elif request.method == b"POST":
            session.post(request)
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
        connection = PollingConnection(session)
        if not self.context.connections.admit(connection, host):
            session.refuse()
            why = "Server shutting down" if self.context.connections.shutting_down else (
                "Too many connections"
            )
            self.metrics.refusals.labels("chat", why.lower()).inc()
            write_error(request, EngineError.FORBIDDEN, why)
            return
        self._polling[session] = connection
        self.metrics.opened("chat", "polling")
        self._log.info(
            "Engine.IO session {sid} opened over polling from {address}",
            sid=session.sid,
            address=host,
        )
        session.open_over_polling()
        if session.closed:
            write_error(request, EngineError.FORBIDDEN)
        else:
            session.poll(request)

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
