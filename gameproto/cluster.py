"""
Leases in Redis for matches and arenas (being replaced by L{gameproto.ownership}).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gameproto import redis


# ---------------------------------------------------------------------------
# Leases: one node at a time runs something (a match's game loop, an arena).

LEASE_TTL_MS = 3000
LEASE_RENEW_INTERVAL = 1.0
# How long the mark left by a node that declared a lease's holder dead stays: far
# longer than any stall, so the stalled ex-holder finds it and gives up.
LEASE_TOMBSTONE_TTL = 3600

# Extend this node's lease, or re-create it when absent (a Redis restarted empty);
# never take another node's, nor a tombstone.
# KEYS: the lease.  ARGV: node id, TTL in ms.  Returns 1 held, 0 held by another.
LEASE_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""

# Delete the lease only if this node holds it.  KEYS: the lease.  ARGV: node id.
LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# The holder is dead: replace an absent lease by a tombstone, atomically with the
# check, so that a holder renewing at the same moment wins and a stalled ex-holder
# can never renew afterwards.  KEYS: the lease.  ARGV: tombstone, its TTL in s.
# Returns 1 declared now, 0 the lease is present (the value is not a tombstone:
# alive after all; or a tombstone: declared by someone else).
LEASE_DECLARE_DEAD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# The holder and the remaining time in ms (-2 absent) in one round trip.
LEASE_READ = """
return {redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
"""

TOMBSTONE = "dead"


class Lease:
    """
    Leases in Redis, by key, for one node: C{acquire} (C{SET NX PX}), C{renew} (the
    compare-and-set script L{LEASE_RENEW}: a node that lost its lease to a tombstone
    or another node gets C{False} and must stop), C{release}, C{read} and
    C{declare_dead}.  Every call fails with L{redis.RedisUnavailable} within 1.5 s.
    C{pool} is called for the connection pool each time (it may be opened after
    this object is built).
    """

    _log = Logger()

    def __init__(self, clock: Any, node_id: str, pool: Callable[[], Any],
                 ttl_ms: int = LEASE_TTL_MS) -> None:
        self.clock = clock
        self.node_id = node_id
        self._pool = pool
        self.ttl_ms = ttl_ms

    def _eval(self, what: str, script: str, key: str, args: list[str]) -> Deferred[Any]:
        return redis.within(self._pool().eval(script, [key], args), self.clock, what)

    def acquire(self, key: str) -> Deferred[bool]:
        """Take the lease if nobody holds it (or this node does): C{True} if held now."""
        return self.renew(key)

    def renew(self, key: str) -> Deferred[bool]:
        d = self._eval("lease renewal", LEASE_RENEW, key, [self.node_id, str(self.ttl_ms)])
        return d.addCallback(lambda n: int(n) == 1)

    def release(self, key: str) -> Deferred[bool]:
        d = self._eval("lease release", LEASE_RELEASE, key, [self.node_id])
        return d.addCallback(lambda n: int(n) == 1)

    def read(self, key: str) -> Deferred[tuple[str | None, int]]:
        """The holder (C{None} if absent) and the milliseconds left."""
        d = self._eval("lease read", LEASE_READ, key, [])
        return d.addCallback(lambda r: (r[0] or None, int(r[1])))

    def declare_dead(self, key: str) -> Deferred[bool]:
        d = self._eval("lease tombstone", LEASE_DECLARE_DEAD, key,
                       [TOMBSTONE, str(LEASE_TOMBSTONE_TTL)])
        return d.addCallback(lambda n: int(n) == 1)


class LeaseWatch:
    """
    Whether the holder of one lease is dead, from the successive reads of a node
    that watches it (pure logic: the caller reads the lease and reports here).

    The holder is dead only when Redis answers and the lease has gone unrenewed for
    a full TTL:

      - the key is absent after the expiry this watcher last read with it (it
        expired: nobody renewed it for a full TTL); or
      - the key is absent and has been seen absent for a full TTL (Redis lost it,
        say restarted empty, or this watcher never saw it: the holder had a full
        TTL, more than its renewal interval, to write it again);
      - a tombstone: another node declared the holder dead.

    A failed read (Redis unreachable) forgets everything: an outage alone declares
    nobody dead, and after it the full TTL of absence starts again.
    """

    def __init__(self, clock: Any, ttl: float = LEASE_TTL_MS / 1000) -> None:
        self.clock = clock
        self.ttl = ttl
        self.holder: str | None = None
        self._expires: float | None = None
        self._absent_since: float | None = None

    def unreachable(self) -> None:
        self._expires = None
        self._absent_since = None

    def seen(self, holder: str | None, pttl_ms: int) -> str:
        """
        Report a read: C{"alive"}, C{"dead"} (absent long enough: declare it) or
        C{"gone"} (a tombstone: already declared).
        """
        now = self.clock.seconds()
        if holder == TOMBSTONE:
            return "gone"
        if holder is not None:
            self.holder = holder
            self._absent_since = None
            self._expires = now + pttl_ms / 1000 if pttl_ms >= 0 else None
            return "alive"
        if self._expires is not None and now >= self._expires:
            return "dead"
        if self._absent_since is None:
            self._absent_since = now
            self._expires = None
        if now - self._absent_since >= self.ttl:
            return "dead"
        return "alive"
