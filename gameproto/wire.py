"""
Plumbing shared by every gameproto WebSocket protocol.

- the JSON codec (orjson) and its two failure modes;
- the one parser of the ids clients write in paths and messages;
- the close-code table of DESIGN.md §2;
- per-endpoint limits and the Autobahn factory options, set in one place;
- the origin policy, the per-address connection cap and the registry of open
  connections used for a graceful shutdown;
- token buckets: a connection's message rate (L{RateLimiter}) and the per-key tables
  of request rates (L{Rate}, L{RateTable});
- L{JSONProtocol}, the base class that turns every malformed frame into one call
  the concrete protocol answers with its own documented error.

A concrete protocol (match, arena, processor) is a thin adapter: it implements
the hooks at the bottom of L{JSONProtocol} and delegates to its state machine.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from typing import Any, Callable, ClassVar, Protocol
from urllib.parse import urlsplit

import attrs
import orjson
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure


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


# ---------------------------------------------------------------------------
# Limits


KiB = 1024
MiB = 1024 * KiB


@attrs.frozen
class EndpointLimits:
    """
    What one client may send on one endpoint.  C{messages_per_second=None} exempts
    the endpoint from rate limiting (the processor is paced by its own engine calls).
    """

    max_message_size: int
    messages_per_second: float | None = 200.0
    burst: int = 400
    # Off for endpoints whose protocol has a heartbeat of its own (Engine.IO).
    auto_ping: bool = True


@attrs.frozen
class ServerLimits:
    """Limits that apply to every WebSocket endpoint of one server."""

    open_handshake_timeout: float = 5.0
    auto_ping_interval: float = 30.0
    auto_ping_timeout: float = 10.0
    close_handshake_timeout: float = 1.0
    connections_per_address: int = 1000
    # A client over its rate for this long without pause is disconnected (4008).
    rate_limit_grace: float = 5.0
    # How long a graceful shutdown waits for clients to acknowledge the close.
    shutdown_grace: float = 2.0


class Malformed(enum.Enum):
    """Why a frame could not become a JSON object for the protocol."""

    BINARY = "binary frames are not accepted"
    INVALID_JSON = "invalid JSON"
    NOT_AN_OBJECT = "a frame must be one JSON object"


# ---------------------------------------------------------------------------
# Origins


def _origin_key(scheme: str, host: str, port: int | None) -> tuple[str, int]:
    secure = scheme in ("https", "wss")
    return host.lower(), port if port is not None else (443 if secure else 80)


@attrs.frozen
class OriginPolicy:
    """
    Same-origin by default: a browser page may open a socket only if its Origin names
    the host it connects to.  Clients that send no Origin (bots, native clients) are
    always allowed.  C{allowed} adds origins (C{scheme://host[:port]}, or C{null});
    C{"*"} allows every origin and, since any page could then ride on a visitor's
    cookie, disables cookie authentication.
    """

    allowed: frozenset[str] = frozenset()

    @classmethod
    def from_list(cls, origins: list[str]) -> "OriginPolicy":
        return cls(frozenset(normalise_origin(o) for o in origins))

    @property
    def allow_all(self) -> bool:
        return "*" in self.allowed

    @property
    def cookies_allowed(self) -> bool:
        return not self.allow_all

    def allows(self, origin: str | None, host_header: str | None) -> bool:
        if not origin:
            return True
        if self.allow_all:
            return True
        normalised = normalise_origin(origin)
        if normalised in self.allowed:
            return True
        if normalised == "null" or not host_header:
            return False
        try:
            o = urlsplit(normalised)
            h = urlsplit("//" + host_header.strip())
            return _origin_key(o.scheme, o.hostname or "", o.port) == _origin_key(
                o.scheme, h.hostname or "", h.port
            )
        except ValueError:  # a port that is not a number, a broken IPv6 literal
            return False


def normalise_origin(origin: str) -> str:
    """C{HTTP://Example.org:80/} and C{http://example.org:80} both give C{http://example.org:80}."""
    origin = origin.strip()
    if origin in ("*", "null"):
        return origin
    return origin.rstrip("/").lower()


# ---------------------------------------------------------------------------
# Rate limiting


@attrs.define
class TokenBucket:
    """C{rate} tokens per second up to C{burst}; a message (or a request) costs one token."""

    rate: float
    burst: int
    clock: IReactorTime
    _tokens: float = attrs.field(init=False)
    _updated: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._updated = self.clock.seconds()

    def _refill(self) -> None:
        now = self.clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def give_back(self) -> None:
        """Return a token taken for something that, after all, does not count."""
        self._refill()
        self._tokens = min(self.burst, self._tokens + 1)

    def wait(self) -> float:
        """Seconds until the next token (0 if there is one now)."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)

    @property
    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.burst


_PERIOD_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"\s*([0-9]{1,9})\s*/\s*([0-9]{0,9}(?:\.[0-9]+)?)\s*([smhd]?)\s*\Z")


@attrs.frozen
class Rate:
    """
    C{count} actions per C{period} seconds: a token bucket of C{count} tokens refilled
    evenly over the period, so C{count} may happen at once and then one every
    C{period / count} seconds.
    """

    count: int
    period: float

    @classmethod
    def parse(cls, text: str) -> "Rate":
        """C{10/h}, C{30/m}, C{20/10m}, C{5/90s} or C{100/3600} (seconds); else L{ValueError}."""
        match = _RATE.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a rate such as 10/h, 30/m or 20/10m")
        count, number, unit = match.groups()
        period = float(number or 1) * _PERIOD_UNITS[unit or "s"]
        if int(count) <= 0 or period <= 0:
            raise ValueError(f"{text!r}: the count and the period must be greater than 0")
        return cls(int(count), period)

    def __str__(self) -> str:
        for unit in ("d", "h", "m"):
            size = _PERIOD_UNITS[unit]
            if self.period % size == 0:
                multiple = int(self.period // size)
                return f"{self.count}/{'' if multiple == 1 else multiple}{unit}"
        return f"{self.count}/{self.period:g}s"

    def bucket(self, clock: IReactorTime) -> TokenBucket:
        return TokenBucket(self.count / self.period, self.count, clock)


class RateTable:
    """
    One L{TokenBucket} per key (a client address, an account) at one L{Rate}.  A bucket
    that has refilled is forgotten, so the table holds only the keys active within the
    last period, however many keys a client makes up.
    """

    def __init__(self, rate: Rate, clock: IReactorTime) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._sweep_at = 1024

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep()
            bucket = self._buckets[key] = self.rate.bucket(self.clock)
        return bucket.take()

    def give_back(self, key: str) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.give_back()

    def wait(self, key: str) -> float:
        """Seconds until C{key} may act again (0 if it may now)."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait()

    def _sweep(self) -> None:
        self._buckets = {key: b for key, b in self._buckets.items() if not b.full}
        # Sweep again once the table doubles: amortised constant time per new key.
        self._sweep_at = max(1024, 2 * len(self._buckets))


class RateVerdict(enum.Enum):
    ALLOW = "allow"
    DROP = "drop"  # over the limit: drop the message silently
    WARN = "warn"  # over the limit: drop it and tell the client (at most once a second)
    CLOSE = "close"  # over the limit for the whole grace period: disconnect


@attrs.define
class RateLimiter:
    """
    The rate rule of every endpoint: a token bucket, and an episode of excess that
    lasts while messages keep being dropped less than a second apart.  A client
    sending at three times its rate is over the limit for good, even though a third
    of its messages still get through; past C{grace} seconds it is disconnected.
    """

    bucket: TokenBucket
    grace: float
    _over_limit_since: float | None = None
    _last_drop: float = float("-inf")
    _last_warning: float = float("-inf")

    @classmethod
    def per_second(cls, rate: float, burst: int, grace: float,
                   clock: IReactorTime) -> "RateLimiter":
        return cls(TokenBucket(rate, burst, clock), grace)

    def check(self) -> RateVerdict:
        if self.bucket.take():
            return RateVerdict.ALLOW
        now = self.bucket.clock.seconds()
        if self._over_limit_since is None or now - self._last_drop > 1.0:
            self._over_limit_since = now
        self._last_drop = now
        if now - self._over_limit_since >= self.grace:
            return RateVerdict.CLOSE
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            return RateVerdict.WARN
        return RateVerdict.DROP


class ManagedConnection(Protocol):
    """What L{Connections} needs of a connection: WebSockets, Engine.IO polling sessions."""

    def serverShuttingDown(self) -> None: ...

    def dropConnection(self, abort: bool = False) -> None: ...


# ---------------------------------------------------------------------------
# Open connections


class Connections:
    """
    Every open gameproto WebSocket of one server, whatever its endpoint: enforces the
    per-address cap and closes them all on shutdown.
    """

    _log = Logger()

    def __init__(self, limits: ServerLimits, clock: IReactorTime) -> None:
        self.limits = limits
        self.clock = clock
        self._open: set[ManagedConnection] = set()
        self._per_address: Counter[str] = Counter()
        self._closed_waiters: dict[ManagedConnection, Deferred[None]] = {}
        self.shutting_down = False

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, proto: ManagedConnection, address: str) -> bool:
        """Count C{proto} against C{address}; C{False} if that address is at its cap."""
        if self.shutting_down:
            return False
        if self._per_address[address] >= self.limits.connections_per_address:
            return False
        self._per_address[address] += 1
        self._open.add(proto)
        return True

    def release(self, proto: ManagedConnection, address: str) -> None:
        if proto in self._open:
            self._open.discard(proto)
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]
        waiter = self._closed_waiters.pop(proto, None)
        if waiter is not None:
            waiter.callback(None)

    def close_all(self) -> Deferred[None]:
        """
        Tell every open connection the server is going away and wait until each has
        closed, or until the shutdown grace period ends.
        """
        self.shutting_down = True
        waits = []
        for proto in list(self._open):
            waiter: Deferred[None] = Deferred()
            self._closed_waiters[proto] = waiter
            waits.append(waiter)
            try:
                proto.serverShuttingDown()
            except Exception:
                self._log.failure("Closing {proto!r} for shutdown", proto=proto)
                proto.dropConnection(abort=True)
        if not waits:
            return succeed(None)
        self._log.info("Closing {count} WebSocket connection(s)", count=len(waits))
        done: Deferred[Any] = DeferredList(waits)
        done.addTimeout(self.limits.shutdown_grace, self.clock)
        done.addErrback(lambda _: None)  # stragglers are dropped with the listening port
        return done.addCallback(lambda _: None)


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
    return factory


# ---------------------------------------------------------------------------
# The base protocol


def peer_address(peer: str) -> str:
    """C{tcp4:127.0.0.1:5555} → C{127.0.0.1}; C{tcp6:::1:5555} → C{::1}."""
    kind, _, rest = peer.partition(":")
    if kind in ("tcp4", "tcp6"):
        return rest.rpartition(":")[0]
    return peer


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

    user: Any = None
    # The path below the resource that serves the endpoint (set by
    # gameproto.web.WebSocketEndpoint): where path parameters are read, whatever prefix
    # an application mounts the server under.
    postpath: tuple[bytes, ...] = ()
    _admitted = False
    _address = ""
    _abort_call: IDelayedCall | None = None

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

    def closeWith(self, code: CloseCode, reason: str) -> None:
        self.sendClose(code=int(code), reason=reason)

    @property
    def context(self) -> WireContext:
        return self.factory.context

    # -- Autobahn callbacks -------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> Deferred[None]:
        context = self.context
        if not context.origins.allows(request.origin, request.headers.get("host")):
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
        if not self._admitted:
            self.closeWith(CloseCode.BUSY, "too many connections")
            return
        self._guarded(self.connectionOpened)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not self._admitted or not self._withinRate():
            return
        if isBinary:
            self._guarded(self.binaryReceived, payload)
        else:
            self._guarded(self.textReceived, payload)

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
            self.context.connections.release(self, self._address)
            self._admitted = False
            self._guarded(self.connectionClosed, code)

    # -- internals --------------------------------------------------------------

    def _withinRate(self) -> bool:
        verdict = RateVerdict.ALLOW if self._limiter is None else self._limiter.check()
        if verdict is RateVerdict.CLOSE and self.state == self.STATE_OPEN:
            self._log.info(
                "{endpoint}: closing {peer} over its rate limit",
                endpoint=self.endpoint,
                peer=self.peer,
            )
            self.closeWith(CloseCode.RATE_LIMITED, "rate limit exceeded")
        elif verdict is RateVerdict.WARN:
            self._guarded(self.rateLimited)
        return verdict is RateVerdict.ALLOW

    def _guarded(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self._log.failure(
                "{endpoint}: unexpected error in {hook}",
                endpoint=self.endpoint,
                hook=hook.__name__,
            )
            if self.state == self.STATE_OPEN:
                self.closeWith(CloseCode.INTERNAL_ERROR, "internal error")
