"""
Plumbing shared by every gameproto WebSocket protocol.

- the JSON codec (orjson) and its two failure modes;
- the one parser of the ids clients write in paths and messages;
- the close-code table of DESIGN.md §2;
- L{make_factory}: the Autobahn factory options, set in one place;
- L{JSONProtocol}, the base class that turns every malformed frame into one call
  the concrete protocol answers with its own documented error.

What a client may send and how fast (L{EndpointLimits}, L{ServerLimits}, the token
buckets) lives in L{gameproto.limits}; the origin policy and the registry of open
connections in L{gameproto.connections}.  Both are imported here too, so that a
protocol needs C{gameproto.wire} alone.

A concrete protocol (match, arena, processor) is a thin adapter: it implements
the hooks at the bottom of L{JSONProtocol} and delegates to its state machine.
"""

from __future__ import annotations

import enum
import inspect
import re
from typing import Any, Callable, ClassVar

import attrs
import orjson
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from zope.interface import implementer

from gameproto.connections import (
    Connections,
    ManagedConnection,
    OriginPolicy,
    normalise_origin,
)
from gameproto.limits import (
    KiB,
    MiB,
    EndpointLimits,
    Rate,
    RateLimiter,
    RateTable,
    RateVerdict,
    ServerLimits,
    TokenBucket,
)
from gameproto.metrics import Metrics, Traffic

__all__ = [
    # this module's own
    "InvalidJSON", "UnencodableValue", "decode", "encode",
    "ID_MAX_DIGITS", "NAME_ID_MAX_LENGTH", "parse_id", "parse_name_id",
    "CloseCode", "Malformed", "WireContext", "make_factory", "peer_address", "JSONProtocol",
    # gameproto.limits and gameproto.connections, where they are defined
    "KiB", "MiB", "EndpointLimits", "ServerLimits",
    "TokenBucket", "Rate", "RateTable", "RateVerdict", "RateLimiter",
    "OriginPolicy", "normalise_origin", "ManagedConnection", "Connections",
]


# ---------------------------------------------------------------------------
# JSON codec


class InvalidJSON(ValueError):
    """A frame that is not UTF-8 JSON (or holds a lone surrogate, an infinite number...)."""


class UnencodableValue(ValueError):
    """A value orjson cannot encode: a lone surrogate, an integer past 64 bits."""


def decode(payload: bytes | str) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise InvalidJSON(str(e)) from None


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as e:
        # orjson raises a TypeError subclass (JSONEncodeError) for every refusal.
        raise UnencodableValue(str(e)) from None


# ---------------------------------------------------------------------------
# Ids in paths, query strings and messages

# Numeric ids (a match's) fit a signed 64-bit integer with room to spare.
ID_MAX_DIGITS = 18
_DIGITS = re.compile(r"[0-9]{1,%d}\Z" % ID_MAX_DIGITS)
# Named ids (an arena's): lower-case ASCII letters, digits and dashes.
NAME_ID_MAX_LENGTH = 32
_NAME_ID = re.compile(r"[a-z0-9-]{1,%d}\Z" % NAME_ID_MAX_LENGTH)


def parse_id(raw: Any) -> int | None:
    """
    A numeric id or count as a client writes it: 1 to 18 ASCII digits, else C{None}
    (the caller's "not found").  C{str.isdigit} and C{int} are no guard: both accept
    C{١} and C{１}, C{isdigit} accepts C{²} which C{int} refuses, and C{int} refuses
    strings of more than 4300 digits.
    """
    if not isinstance(raw, str) or not _DIGITS.match(raw):
        return None
    return int(raw)


def parse_name_id(raw: Any) -> str | None:
    """A named id (an arena's): 1 to 32 characters of C{a-z}, C{0-9} and C{-}, else C{None}."""
    if not isinstance(raw, str) or not _NAME_ID.match(raw):
        return None
    return raw


# ---------------------------------------------------------------------------
# Close codes


class CloseCode(enum.IntEnum):
    """
    Every close code gameproto uses.  Autobahn refuses 1001/1008/1011 from the
    application, hence the 4xxx range for everything but a normal end.
    """

    NORMAL = 1000
    INVALID_UTF8 = 1007  # sent by Autobahn itself (RFC 6455), never by gameproto code
    TOO_BIG = 1009  # sent by Autobahn itself when a message exceeds the endpoint's limit
    BAD_REQUEST = 4000
    UNAUTHENTICATED = 4001
    FORBIDDEN = 4003
    NOT_FOUND = 4004
    RATE_LIMITED = 4008
    REPLACED = 4009
    INTERNAL_ERROR = 4011
    SHUTTING_DOWN = 4012
    BUSY = 4029


class Malformed(enum.Enum):
    """Why a frame could not become a JSON object for the protocol."""

    BINARY = "binary frames are not accepted"
    INVALID_JSON = "invalid JSON"
    NOT_AN_OBJECT = "a frame must be one JSON object"


# ---------------------------------------------------------------------------
# Factory


@attrs.define
class WireContext:
    """
    What every WebSocket protocol of one server shares.  C{authenticate} maps the
    opening handshake to a user (or C{None}); it is L{gameproto.auth.Accounts} in the
    server and a stub in unit tests.
    """

    clock: IReactorTime
    connections: Connections
    origins: OriginPolicy
    authenticate: Callable[[ConnectionRequest, bool], Deferred[Any]]
    server_limits: ServerLimits = ServerLimits()
    # What the connections count (gameproto.metrics); a server passes its own.
    metrics: Metrics = attrs.field(factory=lambda: Metrics(process=False))


def make_factory(
    protocol: type["JSONProtocol"],
    limits: EndpointLimits,
    context: WireContext,
    **attributes: Any,
) -> WebSocketServerFactory:
    """
    The one place where Autobahn factory options are set.  Extra keyword arguments
    become factory attributes the protocol reads (a match registry, an arena...).
    """
    factory = WebSocketServerFactory()
    factory.protocol = protocol
    factory.server = "gameproto"
    factory.context = context
    factory.endpoint_limits = limits
    for name, value in attributes.items():
        setattr(factory, name, value)
    server = context.server_limits
    factory.setProtocolOptions(
        # webStatus=True renders a status page with an open redirect (?redirect=).
        webStatus=False,
        maxFramePayloadSize=limits.max_message_size,
        maxMessagePayloadSize=limits.max_message_size,
        # A clean 1009 with a reason instead of a dropped TCP connection.
        failByDrop=False,
        openHandshakeTimeout=server.open_handshake_timeout,
        closeHandshakeTimeout=server.close_handshake_timeout,
        autoPingInterval=server.auto_ping_interval if limits.auto_ping else 0,
        autoPingTimeout=server.auto_ping_timeout if limits.auto_ping else 0,
        # Origins are checked by OriginPolicy in onConnect: Autobahn only matches patterns.
        allowedOrigins=["*"],
        # setProtocolOptions resets allowNullOrigin to False unless it is passed.
        allowNullOrigin=True,
        perMessageCompressionAccept=lambda offers: None,
    )
    factory.protocol = _with_factory_options(protocol, factory)
    return factory


def _with_factory_options(
    protocol: type[JSONProtocol], factory: WebSocketServerFactory
) -> type[JSONProtocol]:
    """
    A subclass of C{protocol} whose class attributes are C{factory}'s Autobahn options.

    Autobahn copies each of its 29 options from the factory onto every connection, unless
    the protocol already has it: as class attributes, the options are kept once per
    factory instead of once per connection, and an idle connection's attribute dict is
    about 1 KB smaller.  Options are set once, here, before any connection is made.
    """
    options = {name: getattr(factory, name) for name in protocol.CONFIG_ATTRS}
    for name, value in options.items():
        if inspect.isfunction(value):
            # A function as a class attribute would be bound to the connection when read.
            options[name] = staticmethod(value)
    return type(protocol.__name__, (protocol,), {**options, "__module__": protocol.__module__,
                                                 "__qualname__": protocol.__qualname__})


# ---------------------------------------------------------------------------
# The base protocol


def peer_address(peer: str) -> str:
    """C{tcp4:127.0.0.1:5555} → C{127.0.0.1}; C{tcp6:::1:5555} → C{::1}."""
    kind, _, rest = peer.partition(":")
    if kind in ("tcp4", "tcp6"):
        return rest.rpartition(":")[0]
    return peer


# The handshake's parts an Autobahn server protocol keeps once open that nothing reads
# after it (see JSONProtocol._release_upgrade): the raw request and response, the parsed
# headers, and the request's path, parsed query and host (Autobahn reads them only while
# it answers the upgrade).  The request's URI stays: a protocol may decide what the
# connection is only once a lookup has answered (a match's replay or live game), and it
# reads the query from there.
_HANDSHAKE_LEFTOVERS = ("http_request_data", "http_response_data", "http_headers",
                        "http_status_line", "http_request_path", "http_request_params",
                        "http_request_host")


class SendQueue(list[Any]):
    """
    Autobahn's queue of chopped and synchronous sends (C{sendMessage(..., sync=True)} or
    with a C{chopsize}), as a list.  Autobahn gives every connection an empty C{deque}
    for them, 0.7 KB (bench/idle_memory.py), where an empty list is a small object; and
    gameproto's own sends never use it.  Such a queue holds a few frames at most, so
    taking from its front costs nothing that matters.
    """

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


@implementer(IPushProducer)
class PauseReading:
    """
    A WebSocket transport's producer after the upgrade: while the transport cannot
    send what it was given, it reads nothing more from the peer, so a peer that
    sends and never reads cannot make the server buffer without end.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def pauseProducing(self) -> None:
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        pass  # the connection is ending: nothing of ours to stop


class JSONProtocol(WebSocketServerProtocol):
    """
    A WebSocket protocol of JSON-object text frames.

    The base class does the handshake work common to every endpoint (origin check,
    per-address cap, authentication), rate limiting, decoding, and turns every bad
    frame into L{malformedFrame}.  Subclasses implement the hooks below.  No
    exception from a hook reaches Autobahn: it is logged and the connection alone is
    closed with 4011.
    """

    _log = Logger()
    endpoint: ClassVar[str] = "websocket"
    #: The C{protocol} label of this endpoint's metrics (match, arena, processor, chat).
    metrics_protocol: ClassVar[str] = "websocket"

    user: Any = None
    # The path below the resource that serves the endpoint (set by
    # gameproto.web.WebSocketEndpoint): where path parameters are read, whatever prefix
    # an application mounts the server under.
    postpath: tuple[bytes, ...] = ()
    _admitted = False
    _address = ""
    _abort_call: IDelayedCall | None = None
    # Until the connection is open: what is sent before (a refusal) is not counted.
    _traffic: Traffic = Traffic()

    # -- hooks for subclasses ------------------------------------------------

    def connectionOpened(self) -> None:
        """The handshake is done; C{self.user} is the authenticated user or C{None}."""

    def objectReceived(self, message: dict[str, Any]) -> None:
        """A well-formed frame: one JSON object."""
        raise NotImplementedError

    def malformedFrame(self, problem: Malformed) -> None:
        """A frame that is not one JSON object: answer with the protocol's error."""
        raise NotImplementedError

    def rateLimited(self) -> None:
        """
        Called at most once a second while the client exceeds its rate; the message
        was dropped.  The default sends nothing.
        """

    def connectionClosed(self, code: int | None) -> None:
        """The connection is gone, cleanly or not."""

    def serverShuttingDown(self) -> None:
        """The server is stopping: the default closes with 4012."""
        self.closeWith(CloseCode.SHUTTING_DOWN, "server shutting down")

    def textReceived(self, payload: bytes) -> None:
        """A text frame (valid UTF-8): decoded as one JSON object by default."""
        try:
            message = decode(payload)
        except InvalidJSON:
            self.malformedFrame(Malformed.INVALID_JSON)
            return
        if not isinstance(message, dict):
            self.malformedFrame(Malformed.NOT_AN_OBJECT)
            return
        self.objectReceived(message)

    def binaryReceived(self, payload: bytes) -> None:
        self.malformedFrame(Malformed.BINARY)

    # -- sending ---------------------------------------------------------------

    def sendObject(self, message: Any) -> bool:
        """
        Send C{message} as one text frame; C{False} (logged) if it cannot be encoded,
        which only happens when a client's own value is echoed back.
        """
        try:
            payload = encode(message)
        except UnencodableValue as e:
            self._log.warn(
                "{endpoint}: dropped an unencodable reply ({why})",
                endpoint=self.endpoint,
                why=str(e),
            )
            return False
        self.sendMessage(payload, isBinary=False)
        return True

    def sendMessage(self, payload: bytes, isBinary: bool = False, *args: Any, **kw: Any) -> None:
        self._traffic.sent(len(payload))
        super().sendMessage(payload, isBinary, *args, **kw)

    def sendPreparedMessage(self, preparedMsg: Any) -> None:
        # A frame prepared once for many sockets (a broadcast): its payload, or its
        # framed bytes when Autobahn kept only those.
        payload = getattr(preparedMsg, "payload", None)
        framed = preparedMsg.payloadHybi
        self._traffic.sent(len(payload if payload is not None else framed))
        if (self._perMessageCompress is None and not self.send_queue and not self.logOctets
                and self.state == self.STATE_OPEN):
            # What Autobahn's sendData does for a frame nothing waits behind, less its
            # debug line, whose arguments it formats on every call (a tenth of a chat
            # broadcast's time, profiled): the hot path of every broadcast.
            self.trafficStats.outgoingOctetsWireLevel += len(framed)
            self.transport.write(framed)
            return
        super().sendPreparedMessage(preparedMsg)

    def closeWith(self, code: CloseCode, reason: str) -> None:
        self.sendClose(code=int(code), reason=reason)

    @property
    def context(self) -> WireContext:
        return self.factory.context

    # -- Autobahn callbacks -------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> Deferred[None]:
        context = self.context
        if not context.origins.allows(request.origin, request.headers.get("host")):
            context.metrics.refusals.labels(self.metrics_protocol, "origin").inc()
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        self._address = peer_address(request.peer)
        self._admitted = context.connections.admit(self, self._address)
        limits: EndpointLimits = self.factory.endpoint_limits
        self._limiter: RateLimiter | None = None
        if limits.messages_per_second is not None:
            self._limiter = RateLimiter.per_second(
                limits.messages_per_second,
                limits.burst,
                context.server_limits.rate_limit_grace,
                context.clock,
            )

        def authenticated(user: Any) -> None:
            self.user = user

        def failed(f: Failure) -> None:
            # A store outage must not become an HTTP 500 with a traceback; the
            # connection is accepted unauthenticated and the protocol refuses it.
            self._log.failure("{endpoint}: authenticating a handshake", f, endpoint=self.endpoint)

        d = maybeDeferred(context.authenticate, request, context.origins.cookies_allowed)
        return d.addCallbacks(authenticated, failed)

    def onOpen(self) -> None:
        metrics = self.context.metrics
        if not self._admitted:
            metrics.refusals.labels(self.metrics_protocol, "too many connections").inc()
            self.closeWith(CloseCode.BUSY, "too many connections")
            return
        metrics.opened(self.metrics_protocol, "websocket")
        self._traffic = metrics.traffic(self.metrics_protocol)
        self._guarded(self.connectionOpened)
        self._release_upgrade()

    def _release_upgrade(self) -> None:
        """
        Let go of what the upgrade left behind: the largest part of an idle connection's
        memory (bench/idle_memory.py).  The handshake Autobahn keeps (the request and the
        response, their parsed headers, the path, query and host) is read by nothing once
        open; the request's URI stays, for L{connectionOpened} and what it defers.  The
        empty queue of chopped and synchronous sends becomes a smaller one
        (L{SendQueue}).  Twisted Web's channel of the upgrade request stays the
        transport's producer, and with it the request; its one job there is to stop
        reading from a peer whose writes back up, which L{PauseReading} does as well.
        """
        for name in _HANDSHAKE_LEFTOVERS:
            if getattr(self, name, None) is not None:
                setattr(self, name, None)
        if not self.send_queue:
            self.send_queue = SendQueue()
        transport = self.transport
        if isinstance(getattr(transport, "producer", None), HTTPChannel):
            transport.unregisterProducer()
            transport.registerProducer(PauseReading(transport), True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._forget_frame_unmasker()
        if not self._admitted:
            return
        self._traffic.received(len(payload))
        if not self._withinRate():
            return
        hook = self.binaryReceived if isBinary else self.textReceived
        # What _guarded does, inlined: every message of every connection comes through here.
        try:
            hook(payload)
        except Exception:
            self._hook_failed(hook)

    def onPong(self, payload: bytes) -> None:
        self._forget_frame_unmasker()

    def _forget_frame_unmasker(self) -> None:
        """
        Let go of the unmasker of the frame just read.  Autobahn keeps it until the next
        frame's header replaces it, and an idle connection's last frame is its heartbeat,
        so every idle connection would hold one: a cffi object and its buffers, about
        0.2 KB (bench/idle_memory.py).  Autobahn calls this once the frame is complete,
        and reads its unmasker again only for the next frame, after making a new one.
        """
        self.current_frame_masker = None

    def onCloseHandshakeTimeout(self) -> None:
        """
        The peer has not answered our close in time.  Autobahn aborts the connection
        here (a TCP reset), which discards what is still queued for the peer: after a
        burst (a run's last megabyte of output) that is its last messages and our close
        frame, unread by a peer that is only busy reading them.  A clean drop sends them,
        then ends the connection; a peer that reads nothing more is aborted once the
        shutdown grace has passed as well.
        """
        self.closeHandshakeTimeoutCall = None
        if self.state == self.STATE_CLOSED:
            return
        self.wasClean = False
        self.wasNotCleanReason = "closing handshake timeout"
        self.wasCloseHandshakeTimeout = True
        self.dropConnection(abort=False)
        grace = self.context.server_limits.shutdown_grace
        self._abort_call = self.context.clock.callLater(grace, self._abort_unread)

    def _abort_unread(self) -> None:
        # Still here: the connection's loss (onClose) cancels this call.
        self._abort_call = None
        if self.transport is not None:
            self.transport.abortConnection()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        if self._admitted:
            metrics = self.context.metrics
            metrics.closed(self.metrics_protocol, "websocket")
            # 1006: the connection was lost without a close frame.
            metrics.closes.labels(self.metrics_protocol, str(code or 1006)).inc()
            self.context.connections.release(self, self._address)
            self._admitted = False
            self._guarded(self.connectionClosed, code)

    # -- internals --------------------------------------------------------------

    def _withinRate(self) -> bool:
        limiter = self._limiter
        if limiter is None:
            return True
        verdict = limiter.check()
        if verdict is RateVerdict.ALLOW:
            return True
        self.context.metrics.rate_limited.labels(self.metrics_protocol, "messages").inc()
        if verdict is RateVerdict.CLOSE and self.state == self.STATE_OPEN:
            self._log.info(
                "{endpoint}: closing {peer} over its rate limit",
                endpoint=self.endpoint,
                peer=self.peer,
            )
            self.closeWith(CloseCode.RATE_LIMITED, "rate limit exceeded")
        elif verdict is RateVerdict.WARN:
            self._guarded(self.rateLimited)
        return False

    def _guarded(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self._hook_failed(hook)

    def _hook_failed(self, hook: Callable[..., Any]) -> None:
        """Log the exception C{hook} raised; close the connection alone with 4011."""
        # Called in the except clause: the failure logged is the exception being handled.
        self._log.failure(
            "{endpoint}: unexpected error in {hook}",
            endpoint=self.endpoint,
            hook=hook.__name__,
        )
        if self.state == self.STATE_OPEN:
            self.closeWith(CloseCode.INTERNAL_ERROR, "internal error")
