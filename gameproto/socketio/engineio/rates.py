"""
Packet rates per client: every packet a client sends, over all its sessions and
both transports, draws on one token bucket (L{wire.RateLimiter}) of its user's, or
else of its address's, kept across reconnects.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.interfaces import IReactorTime

from gameproto import wire


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
        # Oldest first, and only as far as the first one still kept: the cost is the
        # number forgotten, not the number of clients (copying the whole table each
        # time made thousands of sessions ending together quadratic).
        idle = self._idle
        while idle:
            key, since = next(iter(idle.items()))
            if now - since < self._keep_idle:
                break
            del idle[key]
            del self._limiters[key]

    def stop(self) -> None:
        """Forget every client."""
        self._limiters.clear()
        self._sessions.clear()
        self._idle.clear()
