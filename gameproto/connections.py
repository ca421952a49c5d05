"""
Who may hold a WebSocket open on a gameproto server, and for how long.

- L{OriginPolicy}: which web pages may open a socket (same-origin by default);
- L{Connections}: every open connection of one server, whatever its endpoint: the
  per-address cap, and the graceful close of them all on shutdown.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from gameproto.limits import ServerLimits


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

