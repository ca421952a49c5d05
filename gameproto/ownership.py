"""
Who runs each match or arena: exactly one node at a time, under a lease.

A lease is a key naming its holder, with a TTL of 3 s that the holder renews every
second (L{LEASE_RENEW_INTERVAL}).  The same rule decides, for matches and arenas
alike, when a holder is dead (L{LeaseWatch}): only when the leases' table answers
and the lease went unrenewed for a full TTL.  The first node to see it replaces the
lease by a tombstone, atomically with the check (L{ILeaseTable.declare_dead}): that
node alone is told L{Verdict.DEAD} and acts on it (a match is aborted; an arena is
taken over, L{Ownership.take_over}); the others see L{Verdict.GONE}.  A stalled
ex-holder can never renew past a tombstone or another node's lease: it gives up as
soon as it tries.

The leases live in a table: L{RedisLeaseTable} (compare-and-set Lua scripts) when
several nodes share a Redis, L{MemoryLeaseTable} on a single node.  The services
run the same code either way; C{tests/test_ownership.py} holds both tables to one
contract.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Protocol

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

LEASE_TTL_MS = 3000
LEASE_RENEW_INTERVAL = 1.0
# How long the mark left by a node that declared a lease's holder dead stays: far
# longer than any stall, so the stalled ex-holder finds it and gives up.
LEASE_TOMBSTONE_TTL = 3600
TOMBSTONE = "dead"


class ILeaseTable(Protocol):
    """
    Leases by key.  Every call is atomic; with Redis, every call fails with
    L{gameproto.redis.RedisUnavailable} within 1.5 s when Redis does not answer.
    """

    def renew(self, key: str, node: str, ttl_ms: int) -> Deferred[bool]:
        """
        Hold C{key} for C{ttl_ms} more if C{node} holds it or nobody does (a Redis
        restarted empty); never over another node's lease nor a tombstone.
        """

    def release(self, key: str, node: str) -> Deferred[bool]:
        """Delete the lease if C{node} holds it."""

    def read(self, key: str) -> Deferred[tuple[str | None, int]]:
        """The holder (C{None} if absent) and the milliseconds left (-2 absent)."""

    def declare_dead(self, key: str) -> Deferred[bool]:
        """Put a tombstone where the lease is absent: C{True} if this call did."""

    def take_over(self, key: str, node: str, ttl_ms: int) -> Deferred[bool]:
        """Hold C{key} if it is absent or a tombstone: C{True} if C{node} holds it now."""

    def resign(self, key: str, node: str) -> Deferred[bool]:
        """Replace C{node}'s lease by a tombstone (C{True}), if C{node} holds it."""


# KEYS: the lease.  ARGV: node id, TTL in ms.  Returns 1 held, 0 held by another.
LEASE_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""

# KEYS: the lease.  ARGV: node id.
LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Atomic with the check, so that a holder renewing at the same moment wins.
# KEYS: the lease.  ARGV: tombstone, its TTL in s.
LEASE_DECLARE_DEAD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS: the lease.  ARGV: node id, TTL in ms, tombstone.
LEASE_TAKE_OVER = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder or holder == ARGV[3] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
"""

# KEYS: the lease.  ARGV: node id, tombstone, its TTL in s.
LEASE_RESIGN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""

LEASE_READ = """
return {redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
"""


class RedisLeaseTable:
    """The leases in Redis.  C{pool} is called for the connection pool each time (it
    is opened when the node starts, after this object is built)."""

    def __init__(self, clock: IReactorTime, pool: Callable[[], Any]) -> None:
        self.clock = clock
        self._pool = pool

    def _eval(self, what: str, script: str, key: str, args: list[str]) -> Deferred[Any]:
        from gameproto import redis

        return redis.within(self._pool().eval(script, [key], args), self.clock, what)

    def renew(self, key: str, node: str, ttl_ms: int) -> Deferred[bool]:
        d = self._eval("lease renewal", LEASE_RENEW, key, [node, str(ttl_ms)])
        return d.addCallback(lambda n: int(n) == 1)

    def release(self, key: str, node: str) -> Deferred[bool]:
        d = self._eval("lease release", LEASE_RELEASE, key, [node])
        return d.addCallback(lambda n: int(n) == 1)

    def read(self, key: str) -> Deferred[tuple[str | None, int]]:
        d = self._eval("lease read", LEASE_READ, key, [])
        return d.addCallback(lambda r: (r[0] or None, int(r[1])))

    def declare_dead(self, key: str) -> Deferred[bool]:
        d = self._eval("lease tombstone", LEASE_DECLARE_DEAD, key,
                       [TOMBSTONE, str(LEASE_TOMBSTONE_TTL)])
        return d.addCallback(lambda n: int(n) == 1)

    def take_over(self, key: str, node: str, ttl_ms: int) -> Deferred[bool]:
        d = self._eval("lease take-over", LEASE_TAKE_OVER, key, [node, str(ttl_ms), TOMBSTONE])
        return d.addCallback(lambda n: int(n) == 1)

    def resign(self, key: str, node: str) -> Deferred[bool]:
        d = self._eval("lease resignation", LEASE_RESIGN, key,
                       [node, TOMBSTONE, str(LEASE_TOMBSTONE_TTL)])
        return d.addCallback(lambda n: int(n) == 1)


class MemoryLeaseTable:
    """
    The leases of one process, timed by C{clock}: a single node's table (every
    service on it holds what it runs), and several services' shared table in tests
    of several nodes in one process.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._leases: dict[str, tuple[str, float]] = {}

    def _holder(self, key: str) -> str | None:
        entry = self._leases.get(key)
        if entry is None:
            return None
        if self.clock.seconds() >= entry[1]:
            del self._leases[key]
            return None
        return entry[0]

    def _set(self, key: str, node: str, ttl_ms: int) -> None:
        self._leases[key] = (node, self.clock.seconds() + ttl_ms / 1000)

    def renew(self, key: str, node: str, ttl_ms: int) -> Deferred[bool]:
        holder = self._holder(key)
        if holder is not None and holder != node:
            return succeed(False)
        self._set(key, node, ttl_ms)
        return succeed(True)

    def release(self, key: str, node: str) -> Deferred[bool]:
        if self._holder(key) != node:
            return succeed(False)
        del self._leases[key]
        return succeed(True)

    def read(self, key: str) -> Deferred[tuple[str | None, int]]:
        holder = self._holder(key)
        if holder is None:
            return succeed((None, -2))
        left = self._leases[key][1] - self.clock.seconds()
        return succeed((holder, max(0, round(left * 1000))))

    def declare_dead(self, key: str) -> Deferred[bool]:
        if self._holder(key) is not None:
            return succeed(False)
        self._set(key, TOMBSTONE, LEASE_TOMBSTONE_TTL * 1000)
        return succeed(True)

    def take_over(self, key: str, node: str, ttl_ms: int) -> Deferred[bool]:
        holder = self._holder(key)
        if holder not in (None, node, TOMBSTONE):
            return succeed(False)
        self._set(key, node, ttl_ms)
        return succeed(True)

    def resign(self, key: str, node: str) -> Deferred[bool]:
        if self._holder(key) != node:
            return succeed(False)
        self._set(key, TOMBSTONE, LEASE_TOMBSTONE_TTL * 1000)
        return succeed(True)


class Verdict(enum.Enum):
    """What a node makes of a lease it checks (L{Ownership.check})."""

    MINE = "mine"
    ALIVE = "alive"  # another node holds it, or may still
    DEAD = "dead"  # its holder is dead, and this node declared it: act on it
    GONE = "gone"  # its holder was declared dead by another node


@attrs.frozen
class Holding:
    holder: str | None
    verdict: Verdict


class LeaseWatch:
    """
    Whether the holder of one lease is dead, from the successive reads of a node
    that watches it (pure logic: the caller reads the lease and reports here).

    The holder is dead only when the table answers and the lease has gone
    unrenewed for a full TTL:

      - the key is absent after the expiry this watcher last read with it (it
        expired: nobody renewed it for a full TTL); or
      - the key is absent and has been seen absent for a full TTL (Redis lost it,
        say restarted empty, or this watcher never saw it: the holder had a full
        TTL, more than its renewal interval, to write it again);
      - a tombstone: another node declared the holder dead.

    A failed read (Redis unreachable) forgets everything: an outage alone declares
    nobody dead, and after it the full TTL of absence starts again.
    """

    def __init__(self, clock: IReactorTime, ttl: float = LEASE_TTL_MS / 1000) -> None:
        self.clock = clock
        self.ttl = ttl
        self.holder: str | None = None
        self._expires: float | None = None
        self._absent_since: float | None = None

    def unreachable(self) -> None:
        self._expires = None
        self._absent_since = None

    def seen(self, holder: str | None, pttl_ms: int) -> Verdict:
        """Report a read: L{Verdict.ALIVE}, L{Verdict.DEAD} (absent long enough:
        declare it) or L{Verdict.GONE} (a tombstone: already declared)."""
        now = self.clock.seconds()
        if holder == TOMBSTONE:
            return Verdict.GONE
        if holder is not None:
            self.holder = holder
            self._absent_since = None
            self._expires = now + pttl_ms / 1000 if pttl_ms >= 0 else None
            return Verdict.ALIVE
        if self._expires is not None and now >= self._expires:
            return Verdict.DEAD
        if self._absent_since is None:
            self._absent_since = now
            self._expires = None
        if now - self._absent_since >= self.ttl:
            return Verdict.DEAD
        return Verdict.ALIVE


class Ownership:
    """
    The leases of one kind of thing (C{kind}: C{"match"}, C{"arena"}) for one node,
    keyed C{{prefix}{kind}:{id}:lease}.  The service renews what it runs every
    L{LEASE_RENEW_INTERVAL} and L{check}s what runs elsewhere; a failed call on
    Redis raises L{gameproto.store.StoreError} (an outage decides nothing).
    """

    _log = Logger()

    def __init__(self, table: ILeaseTable, node_id: str, clock: IReactorTime, kind: str,
                 prefix: str = "gp:", ttl_ms: int = LEASE_TTL_MS) -> None:
        self.table = table
        self.node_id = node_id
        self.clock = clock
        self.kind = kind
        self.prefix = prefix
        self.ttl_ms = ttl_ms
        self._watches: dict[str, LeaseWatch] = {}

    @classmethod
    def local(cls, clock: IReactorTime, kind: str) -> "Ownership":
        """A single node's: every lease it asks for is free, unless it holds it already."""
        return cls(MemoryLeaseTable(clock), "local", clock, kind)

    def key(self, thing: str | int) -> str:
        return f"{self.prefix}{self.kind}:{thing}:lease"

    def claim(self, thing: str | int) -> Deferred[bool]:
        """Hold C{thing} if nobody does (or this node does): C{True} if held now."""
        return self.renew(thing)

    def renew(self, thing: str | int) -> Deferred[bool]:
        """C{False}: another node holds it now (or a tombstone): stop running it."""
        return self.table.renew(self.key(thing), self.node_id, self.ttl_ms)

    def take_over(self, thing: str | int) -> Deferred[bool]:
        """Hold C{thing} whose holder is dead (or absent): C{True} if held now."""
        return self.table.take_over(self.key(thing), self.node_id, self.ttl_ms)

    def release(self, thing: str | int) -> Deferred[None]:
        """Give C{thing} up; never fails (unreleased, a lease expires by itself)."""
        self.forget(thing)
        d = self.table.release(self.key(thing), self.node_id)

        def failed(failure: Any) -> None:
            self._log.warn("{kind} {thing}: releasing the lease: {why}", kind=self.kind,
                           thing=thing, why=failure.getErrorMessage())

        return d.addCallbacks(lambda _: None, failed)

    def resign(self, thing: str | int) -> Deferred[None]:
        """
        Give C{thing} up to the other nodes at once (this node shuts down): its lease
        becomes a tombstone, so that the next node to L{check} it is told L{Verdict.GONE}
        and takes it over without waiting for a TTL.  Never fails (unresigned, a lease
        expires by itself).
        """
        self.forget(thing)
        d = self.table.resign(self.key(thing), self.node_id)

        def failed(failure: Any) -> None:
            self._log.warn("{kind} {thing}: resigning the lease: {why}", kind=self.kind,
                           thing=thing, why=failure.getErrorMessage())

        return d.addCallbacks(lambda _: None, failed)

    async def holder(self, thing: str | int) -> str | None:
        """The node holding C{thing} now (C{None}: nobody, or a tombstone)."""
        holder, _ = await self.table.read(self.key(thing))
        return None if holder == TOMBSTONE else holder

    async def check(self, thing: str | int) -> Holding:
        """
        Read C{thing}'s lease and judge its holder by the rule of this module.  On
        L{Verdict.DEAD} this node has put the tombstone, and is the only one told.
        """
        watch = self._watches.get(str(thing))
        if watch is None:
            watch = self._watches[str(thing)] = LeaseWatch(self.clock, self.ttl_ms / 1000)
        try:
            holder, pttl = await self.table.read(self.key(thing))
        except Exception:
            watch.unreachable()
            raise
        if holder == self.node_id:
            watch.seen(holder, pttl)
            return Holding(holder, Verdict.MINE)
        verdict = watch.seen(holder, pttl)
        if verdict is Verdict.DEAD:
            self.forget(thing)
            declared = await self.table.declare_dead(self.key(thing))
            return Holding(watch.holder, Verdict.DEAD if declared else Verdict.ALIVE)
        if verdict is Verdict.GONE:
            self.forget(thing)
        return Holding(None if verdict is Verdict.GONE else holder, verdict)

    def forget(self, thing: str | int) -> None:
        """Stop watching C{thing} (it ended, or this node runs it)."""
        self._watches.pop(str(thing), None)
