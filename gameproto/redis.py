"""
Connections to Redis for the store and the bus, on txredisapi, with the three
things txredisapi does not do by itself:

- a timeout on every command (during an outage txredisapi would wait forever);
- a reconnect backoff capped at 1 s (its default grows to 10 s), so that traffic
  flows again within about 3 s of Redis coming back;
- one parsed C{redis://HOST:PORT/DB} URL for every connection.

Importing txredisapi installs the global reactor, so it is imported inside the
functions that connect: parsing a URL (C{twistd gameproto --store redis://...})
must not install a reactor before twistd has chosen one.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import attrs
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime

from gameproto import wire
from gameproto.store import StoreError

T = TypeVar("T")

# Redis answers in well under a millisecond; past 1.5 s it is down or unreachable, and
# REST must answer 503 within 2 s during an outage.
COMMAND_TIMEOUT = 1.5
RECONNECT_INITIAL = 0.1
RECONNECT_MAX = 1.0


class RedisUnavailable(StoreError):
    """Redis did not answer in time, or the connection is down."""


@attrs.frozen
class RedisURL:
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> "RedisURL":
        """C{redis://[:password@]HOST[:PORT][/DB]}; C{ValueError} with a message otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"{url!r} is not a redis:// URL")
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError(f"{url!r}: the port is not a number") from None
        path = parts.path.strip("/")
        db = wire.parse_id(path) if path else 0
        if db is None:
            raise ValueError(f"{url!r}: the database must be a number")
        return cls(parts.hostname or "127.0.0.1", port, db, parts.password)

    def __str__(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


def _tune(factory: Any) -> None:
    factory.initialDelay = RECONNECT_INITIAL
    factory.maxDelay = RECONNECT_MAX
    # Only non-lazy connections report through factory.deferred; for lazy ones a
    # failed AUTH or SELECT would otherwise surface as an unhandled error.  The
    # failure is logged by txredisapi and every command times out meanwhile.
    factory.deferred.addErrback(lambda _: None)


# Told of every command a pool sends: its name (C{"GET"}, C{"EVALSHA"}) and the
# Deferred of its reply; returns that Deferred (timed, counted).
CommandObserver = Callable[[str, Deferred[Any]], Deferred[Any]]


def _observed_protocol(observe: CommandObserver) -> type:
    """txredisapi's protocol, each command's reply passed through C{observe}."""
    import txredisapi

    class ObservedRedisProtocol(txredisapi.RedisProtocol):  # type: ignore[misc]
        def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            d = super().execute_command(*args, **kwargs)
            name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            return observe(name.upper(), d)

    return ObservedRedisProtocol


def connection_pool(reactor: Any, url: RedisURL, poolsize: int = 4,
                    observe: CommandObserver | None = None) -> Any:
    """
    A lazy pool for ordinary commands: usable at once, connects in the background.
    With C{observe}, every command's reply goes through it (the metrics' timing).
    """
    import txredisapi

    factory = txredisapi.RedisFactory(
        str(url),
        url.db or None,  # database 0 needs no SELECT
        poolsize,
        isLazy=True,
        handler=txredisapi.ConnectionHandler,
        password=url.password,
        replyTimeout=COMMAND_TIMEOUT,
        convertNumbers=False,
    )
    if observe is not None:
        factory.protocol = _observed_protocol(observe)
    _tune(factory)
    factory.startConnecting(
        endpoints.HostnameEndpoint(reactor, url.host, url.port, timeout=COMMAND_TIMEOUT)
    )
    return factory.handler


def subscriber(reactor: Any, url: RedisURL, protocol: type) -> Any:
    """A lazy pub/sub connection speaking C{protocol} (a SubscriberProtocol subclass)."""
    import txredisapi

    factory = txredisapi.SubscriberFactory(isLazy=True)
    factory.protocol = protocol
    factory.password = url.password
    factory.dbid = url.db or None
    _tune(factory)
    factory.startConnecting(
        endpoints.HostnameEndpoint(reactor, url.host, url.port, timeout=COMMAND_TIMEOUT)
    )
    return factory


def within(d: Deferred[T], clock: IReactorTime, what: str,
           seconds: float = COMMAND_TIMEOUT) -> Deferred[T]:
    """C{d}, failing with L{RedisUnavailable} after C{seconds} or on a lost connection."""

    import txredisapi

    def unavailable(failure: Any) -> Any:
        if failure.check(DeferredTimeout, txredisapi.ConnectionError):
            raise RedisUnavailable(f"redis: {what}: {failure.getErrorMessage()}")
        return failure

    d.addTimeout(seconds, clock)
    return d.addErrback(unavailable)
