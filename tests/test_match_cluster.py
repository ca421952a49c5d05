"""
The pieces of matches across nodes (gameproto.match.cluster): the lease watch on a
Clock, the lease scripts and the match scripts of the Redis store on a real
redis-server (a port of its own).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gameproto.bus.local import LocalBus
from gameproto.cluster import TOMBSTONE, Lease, LeaseWatch
from gameproto.match.cluster import CHANGED, ELSEWHERE, GONE, NOT_MINE, Outbox
from gameproto.store import User

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


class LeaseWatchTests(SynchronousTestCase):
    """When a watching node may declare the owner of a lease dead."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.watch = LeaseWatch(self.clock, ttl=3.0)

    def test_expired_after_a_full_ttl(self) -> None:
        """A lease last read with 3 s to live and absent after that expired: dead at once."""
        self.assertEqual(self.watch.seen("node-a", 3000), "alive")
        self.clock.advance(2.9)
        self.assertEqual(self.watch.seen("node-a", 100), "alive")
        self.clock.advance(0.2)
        self.assertEqual(self.watch.seen(None, -2), "dead")
        self.assertEqual(self.watch.holder, "node-a")

    def test_lost_by_redis_waits_a_full_ttl(self) -> None:
        """
        A lease absent before its expiry (Redis restarted empty) is not dead until it
        has been absent a full TTL: the owner renews it meanwhile.
        """
        self.watch.seen("node-a", 3000)
        self.clock.advance(0.5)
        self.assertEqual(self.watch.seen(None, -2), "alive")
        self.clock.advance(2.9)
        self.assertEqual(self.watch.seen(None, -2), "alive")
        self.assertEqual(self.watch.seen("node-a", 3000), "alive")  # re-created
        self.clock.advance(3.5)
        self.assertEqual(self.watch.seen(None, -2), "dead")

    def test_never_seen_waits_a_full_ttl(self) -> None:
        """A watcher that never saw the lease waits a full TTL of absence."""
        self.assertEqual(self.watch.seen(None, -2), "alive")
        self.clock.advance(2.9)
        self.assertEqual(self.watch.seen(None, -2), "alive")
        self.clock.advance(0.1)
        self.assertEqual(self.watch.seen(None, -2), "dead")

    def test_outage_aborts_nothing(self) -> None:
        """
        Redis unreachable past the lease's expiry declares nobody dead; once it
        answers again, the full TTL of absence starts over.
        """
        self.watch.seen("node-a", 3000)
        self.clock.advance(2)
        self.watch.unreachable()
        self.clock.advance(5)
        self.watch.unreachable()
        self.assertEqual(self.watch.seen(None, -2), "alive")
        self.clock.advance(2.9)
        self.assertEqual(self.watch.seen(None, -2), "alive")
        self.assertEqual(self.watch.seen("node-a", 2500), "alive")

    def test_tombstone(self) -> None:
        """A tombstone: another node declared the owner dead."""
        self.watch.seen("node-a", 3000)
        self.assertEqual(self.watch.seen(TOMBSTONE, 3_600_000), "gone")


class OutboxTests(SynchronousTestCase):
    """Frames relayed between nodes keep their order and are batched per reactor turn."""

    def test_order_and_batches(self) -> None:
        """
        What is queued in one turn goes out as one message; the next batch waits
        until the bus took the previous one.
        """
        clock = Clock()
        bus = LocalBus(clock)
        got: list[Any] = []
        bus.subscribe("c", lambda raw: got.append(__import__("json").loads(raw)))
        published: list[Deferred[int]] = []
        real = bus.publish

        def slow(channel: str, message: str) -> Deferred[int]:
            real(channel, message)
            d: Deferred[int] = Deferred()
            published.append(d)
            return d

        bus.publish = slow  # type: ignore[method-assign]
        box = Outbox(bus, clock, "c", "node-a")
        box.put({"n": 1})
        box.put({"n": 2})
        clock.advance(0)
        box.put({"n": 3})
        clock.advance(0)
        self.assertEqual(len(published), 1)  # 3 waits for the first publish
        published[0].callback(1)
        clock.advance(0)
        self.assertEqual([m["items"] for m in got], [[{"n": 1}, {"n": 2}], [{"n": 3}]])
        self.assertEqual({m["node"] for m in got}, {"node-a"})


class RedisLeaseTests(TestCase):
    """The lease scripts on a real redis-server."""

    timeout = 30

    async def leases(self, ttl_ms: int = 3000) -> tuple[Lease, Lease, Any]:
        from gameproto.redis import RedisURL, connection_pool
        from tests.redisserver import started_redis

        server = await started_redis(self)
        pool = connection_pool(reactor, RedisURL.parse(server.url))
        self.addCleanup(pool.disconnect)
        return (Lease(reactor, "node-a", lambda: pool, ttl_ms),
                Lease(reactor, "node-b", lambda: pool, ttl_ms), pool)

    async def absent(self, lease: Lease, key: str) -> None:
        """Wait (at most 5 s) until the key has expired."""
        for _ in range(500):
            if (await lease.read(key))[0] is None:
                return
            await deferLater(reactor, 0.01, lambda: None)
        self.fail("the lease never expired")

    def test_one_holder(self) -> Deferred[None]:
        """A holds the lease: B can neither take nor renew it; A renews it."""

        async def scenario() -> None:
            a, b, _ = await self.leases()
            self.assertTrue(await a.acquire("k"))
            self.assertFalse(await b.acquire("k"))
            self.assertFalse(await b.renew("k"))
            self.assertTrue(await a.renew("k"))
            holder, pttl = await a.read("k")
            self.assertEqual(holder, "node-a")
            self.assertTrue(2000 < pttl <= 3000, pttl)
            self.assertFalse(await b.release("k"))
            self.assertTrue(await a.release("k"))
            self.assertEqual((await a.read("k"))[0], None)

        return ensureDeferred(scenario())

    def test_stalled_ex_owner_cannot_renew(self) -> Deferred[None]:
        """
        A stops renewing (stalled) until its lease expires; B declares it dead: A's
        next renewal fails for good, and nobody can declare it twice.
        """

        async def scenario() -> None:
            a, b, _ = await self.leases(ttl_ms=200)
            self.assertTrue(await a.acquire("k"))
            self.assertFalse(await b.declare_dead("k"))  # alive: refused
            await self.absent(b, "k")
            self.assertTrue(await b.declare_dead("k"))
            self.assertFalse(await a.renew("k"))
            self.assertFalse(await a.acquire("k"))
            self.assertFalse(await b.declare_dead("k"))
            self.assertEqual((await b.read("k"))[0], TOMBSTONE)

        return ensureDeferred(scenario())

    def test_renewal_recreates_a_lost_lease(self) -> Deferred[None]:
        """A lease Redis lost (restarted empty) is written again by its owner's renewal."""

        async def scenario() -> None:
            a, b, pool = await self.leases()
            self.assertTrue(await a.acquire("k"))
            await pool.delete(["k"])
            self.assertTrue(await a.renew("k"))
            self.assertEqual((await b.read("k"))[0], "node-a")

        return ensureDeferred(scenario())


class RedisMatchScriptTests(TestCase):
    """The compare-and-set of ongoing matches and roles in the Redis store."""

    timeout = 30

    async def store(self) -> Any:
        from gameproto.redis import RedisURL
        from gameproto.store.redis import RedisStore
        from tests.redisserver import started_redis

        server = await started_redis(self)
        store = RedisStore(reactor, RedisURL.parse(server.url))
        await store.start()
        self.addCleanup(store.close)
        for name in ("hana", "cole", "carl", "sam"):
            await store.create_user(User(name, "x", NOW))
        return store

    def test_challenger_slot_goes_to_one(self) -> Deferred[None]:
        """
        Two nodes admit a challenger to one match at once from the same record: one
        change applies, the other finds the record changed and, reading it again,
        the slot taken.
        """

        async def scenario() -> None:
            store = await self.store()
            match = await store.create_hosted_match("hana", NOW)
            cole = attrs.evolve(match, challenger="cole")
            carl = attrs.evolve(match, challenger="carl")
            first = store.change_ongoing_match(match.id, match, "set", cole,
                                               [("claim", "cole", f"{match.id}|challenger|a:1")])
            second = store.change_ongoing_match(match.id, match, "set", carl,
                                                [("claim", "carl", f"{match.id}|challenger|b:1")])
            codes = [await first, await second]
            self.assertGreater(codes[0], 0)
            self.assertEqual(codes[1], CHANGED)
            self.assertEqual((await store.get_ongoing_match(match.id)).challenger, "cole")
            self.assertEqual(await store.match_role("carl"), None)
            self.assertEqual(await store.match_role("COLE"), f"{match.id}|challenger|a:1")

        return ensureDeferred(scenario())

    def test_one_match_per_user(self) -> Deferred[None]:
        """
        A user with a role in one match can neither host nor join another, nor take
        another role in the same one; once the match is gone the role is free.
        """

        async def scenario() -> None:
            store = await self.store()
            one = await store.create_hosted_match("hana", NOW)
            two = await store.create_hosted_match("cole", NOW)
            self.assertIsNone(await store.create_hosted_match("hana", NOW))
            watched = attrs.evolve(one, spectators=("sam",))
            self.assertGreater(await store.change_ongoing_match(
                one.id, one, "set", watched, [("claim", "sam", f"{one.id}|spectator|a:1")]), 0)
            self.assertEqual(await store.change_ongoing_match(
                two.id, two, "keep", None, [("claim", "sam", f"{two.id}|spectator|b:1")]),
                ELSEWHERE)
            self.assertEqual(await store.change_ongoing_match(
                one.id, watched, "keep", None, [("claim", "sam", f"{one.id}|challenger|b:2")]),
                ELSEWHERE)
            # The same role of the same match is taken over by a newer socket.
            self.assertGreater(await store.change_ongoing_match(
                one.id, watched, "keep", None, [("claim", "sam", f"{one.id}|spectator|b:3")]), 0)
            self.assertTrue(await store.delete_ongoing_match(one.id))
            self.assertGreater(await store.change_ongoing_match(
                two.id, two, "keep", None, [("claim", "sam", f"{two.id}|spectator|b:4")]), 0)
            self.assertIsNotNone(await store.create_hosted_match("hana", NOW))
            self.assertEqual(await store.change_ongoing_match(
                one.id, None, "keep", None, []), GONE)

        return ensureDeferred(scenario())

    def test_leave_of_a_replaced_socket_frees_nothing(self) -> Deferred[None]:
        """
        The challenger reconnected on another node: the older socket's leave finds
        its seat taken by the newer one and changes nothing.
        """

        async def scenario() -> None:
            store = await self.store()
            match = await store.create_hosted_match("hana", NOW)
            joined = attrs.evolve(match, challenger="cole")
            await store.change_ongoing_match(match.id, match, "set", joined,
                                             [("claim", "cole", f"{match.id}|challenger|a:1")])
            await store.change_ongoing_match(match.id, joined, "keep", None,
                                             [("claim", "cole", f"{match.id}|challenger|b:1")])
            left = attrs.evolve(joined, challenger=None)
            self.assertEqual(await store.change_ongoing_match(
                match.id, joined, "set", left, [("release", "cole", f"{match.id}|challenger|a:1")]),
                NOT_MINE)
            self.assertEqual(await store.get_ongoing_match(match.id), joined)
            # A host with no socket keeps the role, with no seat.
            await store.change_ongoing_match(match.id, None, "keep", None,
                                             [("claim", "hana", f"{match.id}|host|a:2")])
            await store.change_ongoing_match(match.id, None, "keep", None,
                                             [("vacate", "hana", f"{match.id}|host|a:2")])
            self.assertEqual(await store.match_role("hana"), f"{match.id}|host|")

        return ensureDeferred(scenario())


