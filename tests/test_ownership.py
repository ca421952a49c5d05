"""
The leases that decide which node runs a match or an arena (gameproto.ownership):
the pure rule of L{LeaseWatch}, and one contract held by both lease tables, the
in-process one (on a Clock) and Redis's (a real redis-server).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gameproto.ownership import (
    TOMBSTONE,
    ILeaseTable,
    LeaseWatch,
    MemoryLeaseTable,
    Ownership,
    RedisLeaseTable,
    Verdict,
)
from tests.support import wait_for

TTL_MS = 300


class LeaseWatchTests(SynchronousTestCase):
    """When a watching node may declare the holder of a lease dead."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.watch = LeaseWatch(self.clock, ttl=3.0)

    def test_expired_after_a_full_ttl(self) -> None:
        """A lease last read with 3 s to live and absent after that expired: dead at once."""
        self.assertIs(self.watch.seen("node-a", 3000), Verdict.ALIVE)
        self.clock.advance(2.9)
        self.assertIs(self.watch.seen("node-a", 100), Verdict.ALIVE)
        self.clock.advance(0.2)
        self.assertIs(self.watch.seen(None, -2), Verdict.DEAD)
        self.assertEqual(self.watch.holder, "node-a")

    def test_lost_by_redis_waits_a_full_ttl(self) -> None:
        """
        A lease absent before its expiry (Redis restarted empty) is not dead until it
        has been absent a full TTL: the holder renews it meanwhile.
        """
        self.watch.seen("node-a", 3000)
        self.clock.advance(0.5)
        self.assertIs(self.watch.seen(None, -2), Verdict.ALIVE)
        self.clock.advance(2.9)
        self.assertIs(self.watch.seen(None, -2), Verdict.ALIVE)
        self.assertIs(self.watch.seen("node-a", 3000), Verdict.ALIVE)  # re-created
        self.clock.advance(3.5)
        self.assertIs(self.watch.seen(None, -2), Verdict.DEAD)

    def test_never_seen_waits_a_full_ttl(self) -> None:
        """A watcher that never saw the lease waits a full TTL of absence."""
        self.assertIs(self.watch.seen(None, -2), Verdict.ALIVE)
        self.clock.advance(2.9)
        self.assertIs(self.watch.seen(None, -2), Verdict.ALIVE)
        self.clock.advance(0.1)
        self.assertIs(self.watch.seen(None, -2), Verdict.DEAD)

    def test_outage_declares_nobody_dead(self) -> None:
        """
        The table unreachable past the lease's expiry declares nobody dead; once it
        answers again, the full TTL of absence starts over.
        """
        self.watch.seen("node-a", 3000)
        self.clock.advance(2)
        self.watch.unreachable()
        self.clock.advance(5)
        self.watch.unreachable()
        self.assertIs(self.watch.seen(None, -2), Verdict.ALIVE)
        self.clock.advance(2.9)
        self.assertIs(self.watch.seen(None, -2), Verdict.ALIVE)
        self.assertIs(self.watch.seen("node-a", 2500), Verdict.ALIVE)

    def test_tombstone(self) -> None:
        """A tombstone: another node declared the holder dead."""
        self.watch.seen("node-a", 3000)
        self.assertIs(self.watch.seen(TOMBSTONE, 3_600_000), Verdict.GONE)


class LeaseTableContract:
    """What every lease table does; a subclass provides C{table}, C{clock} and C{expire}."""

    table: ILeaseTable
    clock: Clock

    async def expire(self, key: str) -> None:
        """Let C{key}'s lease run out (a full TTL without renewal)."""
        raise NotImplementedError

    def play(self, scenario: Any) -> Deferred[None]:
        return ensureDeferred(scenario())

    def test_one_holder(self) -> Deferred[None]:
        """A holds the lease: B can neither take nor renew nor release it."""
        async def scenario() -> None:
            t = self.table
            self.assertTrue(await t.renew("k", "a", TTL_MS))
            self.assertFalse(await t.renew("k", "b", TTL_MS))
            self.assertFalse(await t.take_over("k", "b", TTL_MS))
            self.assertTrue(await t.renew("k", "a", TTL_MS))
            holder, left = await t.read("k")
            self.assertEqual(holder, "a")
            self.assertTrue(0 < left <= TTL_MS, left)
            self.assertFalse(await t.release("k", "b"))
            self.assertTrue(await t.release("k", "a"))
            self.assertEqual(await t.read("k"), (None, -2))
            self.assertTrue(await t.renew("k", "b", TTL_MS))
        return self.play(scenario)

    def test_expiry(self) -> Deferred[None]:
        """An unrenewed lease is gone after its TTL; its holder's renewal writes it again."""
        async def scenario() -> None:
            t = self.table
            self.assertTrue(await t.renew("k", "a", TTL_MS))
            await self.expire("k")
            self.assertEqual(await t.read("k"), (None, -2))
            self.assertTrue(await t.renew("k", "a", TTL_MS))
            self.assertEqual((await t.read("k"))[0], "a")
        return self.play(scenario)

    def test_tombstone_stops_the_stalled_holder(self) -> Deferred[None]:
        """
        A live lease cannot be declared dead; an expired one can, once: the stalled
        ex-holder's renewal fails for good, and another node takes it over.
        """
        async def scenario() -> None:
            t = self.table
            self.assertTrue(await t.renew("k", "a", TTL_MS))
            self.assertFalse(await t.declare_dead("k"))
            await self.expire("k")
            self.assertTrue(await t.declare_dead("k"))
            self.assertFalse(await t.declare_dead("k"))
            self.assertEqual((await t.read("k"))[0], TOMBSTONE)
            self.assertFalse(await t.renew("k", "a", TTL_MS))
            self.assertTrue(await t.take_over("k", "b", TTL_MS))
            self.assertFalse(await t.renew("k", "a", TTL_MS))
            self.assertEqual((await t.read("k"))[0], "b")
        return self.play(scenario)

    def test_dead_holder_declared_by_one_node(self) -> Deferred[None]:
        """
        Through L{Ownership}: while A renews, B and C see it alive; once A stops for a
        full TTL, the first of B and C to check is told DEAD, the other GONE, and A's
        renewal fails.
        """
        async def scenario() -> None:
            a, b, c = (Ownership(self.table, n, self.clock, "arena", ttl_ms=TTL_MS)
                       for n in "abc")
            self.assertTrue(await a.claim("x"))
            self.assertFalse(await b.claim("x"))
            self.assertEqual(await b.check("x"), _holding("a", Verdict.ALIVE))
            self.assertEqual(await c.check("x"), _holding("a", Verdict.ALIVE))
            self.assertEqual(await a.check("x"), _holding("a", Verdict.MINE))
            await self.expire(a.key("x"))
            self.assertEqual(await b.check("x"), _holding("a", Verdict.DEAD))
            self.assertEqual(await c.check("x"), _holding(None, Verdict.GONE))
            self.assertFalse(await a.renew("x"))
            self.assertIsNone(await c.holder("x"))
            self.assertTrue(await c.take_over("x"))
            self.assertEqual(await b.holder("x"), "c")
        return self.play(scenario)

    def test_resigned_lease_is_taken_over_at_once(self) -> Deferred[None]:
        """
        A holder that resigns (it shuts down) leaves a tombstone: only its holder can
        resign, its renewal then fails, and another node's check says GONE at once, with
        no TTL to wait, and it takes the lease over.
        """
        async def scenario() -> None:
            t = self.table
            self.assertTrue(await t.renew("k", "a", TTL_MS))
            self.assertFalse(await t.resign("k", "b"))
            self.assertTrue(await t.resign("k", "a"))
            self.assertFalse(await t.resign("k", "a"))
            self.assertEqual((await t.read("k"))[0], TOMBSTONE)
            self.assertFalse(await t.renew("k", "a", TTL_MS))
            a, b = (Ownership(self.table, n, self.clock, "arena", ttl_ms=TTL_MS) for n in "ab")
            self.assertTrue(await a.claim("x"))
            await a.resign("x")
            self.assertEqual(await b.check("x"), _holding(None, Verdict.GONE))
            self.assertTrue(await b.take_over("x"))
            self.assertEqual(await a.holder("x"), "b")
        return self.play(scenario)

    def test_keys_by_kind(self) -> Deferred[None]:
        """A match and an arena with the same id are different leases."""
        async def scenario() -> None:
            match = Ownership(self.table, "a", self.clock, "match", ttl_ms=TTL_MS)
            arena = Ownership(self.table, "b", self.clock, "arena", ttl_ms=TTL_MS)
            self.assertEqual(match.key(7), "gp:match:7:lease")
            self.assertTrue(await match.claim(7))
            self.assertTrue(await arena.claim(7))
            await match.release(7)
            self.assertIsNone(await match.holder(7))
            self.assertEqual(await arena.holder(7), "b")
        return self.play(scenario)


def _holding(holder: str | None, verdict: Verdict) -> Any:
    from gameproto.ownership import Holding

    return Holding(holder, verdict)


class MemoryLeaseTableTests(LeaseTableContract, TestCase):
    """The single node's table, on a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.table = MemoryLeaseTable(self.clock)

    async def expire(self, key: str) -> None:
        self.clock.advance(TTL_MS / 1000)

    def test_local_ownership_holds_what_it_claims(self) -> None:
        """A single node's ownership: claims succeed, and a lease held is MINE."""
        ownership = Ownership.local(self.clock, "match")
        self.assertTrue(self.successResultOf(ownership.claim(1)))
        self.assertEqual(self.successResultOf(ensureDeferred(ownership.check(1))).verdict,
                         Verdict.MINE)


class RedisLeaseTableTests(LeaseTableContract, TestCase):
    """The nodes' table in a real redis-server; a Clock times the watches."""

    timeout = 30

    def setUp(self) -> Deferred[None]:
        from gameproto.redis import RedisURL, connection_pool
        from tests.redisserver import started_redis

        self.clock = Clock()
        self.clock.advance(1000)

        async def start() -> None:
            server = await started_redis(self)
            self.pool = connection_pool(reactor, RedisURL.parse(server.url))
            self.addCleanup(self.pool.disconnect)
            await self.pool.ping()
            self.table = RedisLeaseTable(reactor, lambda: self.pool)

        return ensureDeferred(start())

    async def expire(self, key: str) -> None:
        # Redis expires the key on its own clock: wait for that (it has no
        # notification), then move the watches' clock past the TTL too.
        absent = [False]

        async def read() -> None:
            absent[0] = (await self.table.read(key))[0] is None

        await wait_for(lambda: absent[0], deadline=5, poll=0.02, action=read)
        self.clock.advance(TTL_MS / 1000)
