"""
What one client may send to a gameproto server, and how fast.

- L{EndpointLimits} (per endpoint: message size, message rate) and L{ServerLimits}
  (per server: handshake and ping timeouts, connections per address, the grace
  periods);
- token buckets: a connection's message rate (L{RateLimiter}) and the per-key tables
  of request rates (L{Rate}, L{RateTable}) of gameproto.throttle.

Nothing here touches a connection: L{gameproto.wire.JSONProtocol} applies the verdicts.
"""

from __future__ import annotations

import enum
import re

import attrs
from twisted.internet.interfaces import IReactorTime


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
        # Every message of every connection takes a token: _refill is inlined, and the
        # refilled count stays in a local.
        now = self.clock.seconds()
        tokens = self._tokens + (now - self._updated) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self._updated = now
        if tokens >= 1:
            self._tokens = tokens - 1
            return True
        self._tokens = tokens
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

