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

from gameproto import wire
from gameproto.bus.local import LocalBus
from gameproto.cluster import TOMBSTONE, Lease, LeaseWatch
from gameproto.match.cluster import CHANGED, ELSEWHERE, GONE, NOT_MINE
from gameproto.match.pong import PaddleCommand
from gameproto.store import User
from tests.support import WALL_CLOCK_SLACK

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
            # PX 3000, less the time between the renewal and this read.
            self.assertTrue(3000 - WALL_CLOCK_SLACK * 1000 < pttl <= 3000, pttl)
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
            codes = {"cole": await first, "carl": await second}
            # The pool's connections may run them in either order: one wins.
            winner, loser = sorted(codes, key=lambda name: codes[name], reverse=True)
            self.assertGreater(codes[winner], 0)
            self.assertEqual(codes[loser], CHANGED)
            self.assertEqual((await store.get_ongoing_match(match.id)).challenger, winner)
            self.assertEqual(await store.match_role(loser), None)
            self.assertEqual((await store.match_role(winner.upper())).split("|")[:2],
                             [str(match.id), "challenger"])

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




# ---------------------------------------------------------------------------
# Two nodes on one Clock and one LocalBus, with in-memory stand-ins for Redis.


class FakeClusterStore:
    """A MemoryStore with the Redis store's match scripts, as plain Python."""

    def __init__(self) -> None:
        from gameproto.store.memory import MemoryStore

        self.memory = MemoryStore()
        self.roles: dict[str, str] = {}
        self.seq = 0
        self.pool = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.memory, name)

    def _live(self, held: str | None) -> bool:
        return held is not None and int(held.split("|")[0]) in self.memory._ongoing

    def create_hosted_match(self, host: str, created: datetime) -> Deferred[Any]:
        from twisted.internet.defer import succeed

        if self._live(self.roles.get(host.lower())):
            return succeed(None)
        match = self.successful(self.memory.create_ongoing_match(host, created))
        self.roles[host.lower()] = f"{match.id}|host|"
        return succeed(match)

    @staticmethod
    def successful(d: Deferred[Any]) -> Any:
        result: list[Any] = []
        d.addCallback(result.append)
        return result[0]

    def change_ongoing_match(self, match_id: int, expected: Any, mode: str, new: Any,
                             roles: list[tuple[str, str, str]]) -> Deferred[int]:
        from twisted.internet.defer import succeed

        current = self.memory._ongoing.get(match_id)
        if current is None:
            return succeed(GONE)
        if expected is not None and current != expected:
            return succeed(CHANGED)
        for op, user, value in roles:
            held = self.roles.get(user.lower())
            if op == "claim":
                if held is not None and held != value and self._live(held) and \
                        held.split("|")[:2] != value.split("|")[:2]:
                    return succeed(ELSEWHERE)
            elif op != "free" and held != value:
                return succeed(NOT_MINE)
        for op, user, value in roles:
            key = user.lower()
            if op == "claim":
                self.roles[key] = value
            elif op == "release":
                del self.roles[key]
            elif op == "vacate":
                self.roles[key] = "|".join(value.split("|")[:2]) + "|"
            elif op == "free" and self.roles.get(key, "").startswith(value):
                del self.roles[key]
        if mode == "set":
            self.memory._ongoing[match_id] = new
        elif mode == "delete":
            del self.memory._ongoing[match_id]
        self.seq += 1
        return succeed(self.seq)

    def match_role(self, username: str) -> Deferred[str | None]:
        from twisted.internet.defer import succeed

        held = self.roles.get(username.lower())
        return succeed(held if self._live(held) else None)


class TableLease:
    """The lease operations of one node on a dict with expiry on a Clock."""

    def __init__(self, clock: Clock, table: dict[str, tuple[str, float]], node_id: str) -> None:
        self.clock, self.table, self.node_id = clock, table, node_id

    def _get(self, key: str) -> tuple[str, float] | None:
        entry = self.table.get(key)
        if entry is not None and entry[1] <= self.clock.seconds():
            del self.table[key]
            return None
        return entry

    def _answer(self, value: Any) -> Deferred[Any]:
        from twisted.internet.defer import succeed

        return succeed(value)

    def acquire(self, key: str) -> Deferred[bool]:
        return self.renew(key)

    def renew(self, key: str) -> Deferred[bool]:
        entry = self._get(key)
        if entry is not None and entry[0] != self.node_id:
            return self._answer(False)
        self.table[key] = (self.node_id, self.clock.seconds() + 3.0)
        return self._answer(True)

    def release(self, key: str) -> Deferred[bool]:
        entry = self._get(key)
        if entry is not None and entry[0] == self.node_id:
            del self.table[key]
            return self._answer(True)
        return self._answer(False)

    def read(self, key: str) -> Deferred[tuple[str | None, int]]:
        entry = self._get(key)
        if entry is None:
            return self._answer((None, -2))
        return self._answer((entry[0], int((entry[1] - self.clock.seconds()) * 1000)))

    def declare_dead(self, key: str) -> Deferred[bool]:
        if self._get(key) is not None:
            return self._answer(False)
        self.table[key] = (TOMBSTONE, self.clock.seconds() + 3600)
        return self._answer(True)


@attrs.define
class FakeNode:
    node_id: str

    def is_alive(self, node_id: str) -> Deferred[bool]:
        from twisted.internet.defer import succeed

        return succeed(True)


class RecordingSocket:
    """A match socket that keeps every frame it is sent and how it was closed."""

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.started = False
        self.over = False
        self.closed: int | None = None

    def sendObject(self, message: Any) -> bool:
        self.frames.append(message)
        return True

    def prepare(self, payload: bytes) -> Any:
        return payload

    def sendPrepared(self, prepared: Any) -> None:
        self.frames.append(wire.decode(prepared))

    def gameStarted(self) -> None:
        self.started = True

    def matchOver(self) -> None:
        self.over = True

    def farewell(self, prepared: Any) -> None:
        self.sendPrepared(prepared)
        self.closed = 1000

    def replaced(self) -> None:
        self.closed = 4009

    def of_type(self, kind: str) -> list[Any]:
        return [f for f in self.frames if f.get("message_type") == kind]


class TwoNodeRelayTests(SynchronousTestCase):
    """
    Two cluster match services on one Clock and one LocalBus, sharing an in-memory
    store and lease table: the relay and the lease logic without Redis.
    """

    def setUp(self) -> None:
        from gameproto.match.cluster import ClusterMatchService

        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.bus = LocalBus(self.clock)
        self.store = FakeClusterStore()
        self.table: dict[str, tuple[str, float]] = {}
        self.nodes = {}
        for name in ("a", "b"):
            service = ClusterMatchService(
                self.store, self.clock, lambda name=name: FakeNode(name), self.bus,
                leases=lambda node_id: TableLease(self.clock, self.table, node_id))
            self.successResultOf(service.startService())
            self.nodes[name] = service

    def tearDown(self) -> None:
        for service in self.nodes.values():
            for loop, _ in service._loops:
                if loop.running:
                    loop.stop()
            for match in service.matches.values():
                if match.loop is not None and match.loop.running:
                    match.loop.stop()

    def join(self, node: str, match_id: int, user: str, role: Any) -> tuple[Any, RecordingSocket]:
        socket = RecordingSocket()
        seat = self.successResultOf(self.nodes[node].join(str(match_id), user, role, socket))
        seat.welcome()
        self.clock.advance(0)
        return seat, socket

    def started(self) -> tuple[int, Any, RecordingSocket, Any, RecordingSocket, RecordingSocket]:
        """hana hosts on A; cole (challenger) and sam (spectator) are on B; started."""
        from gameproto.match.frames import Role

        match_id = self.successResultOf(self.nodes["a"].create_match("hana")).id
        host_seat, host = self.join("a", match_id, "hana", Role.HOST)
        seat, challenger = self.join("b", match_id, "cole", Role.CHALLENGER)
        _, spectator = self.join("b", match_id, "sam", Role.SPECTATOR)
        self.assertEqual(host.of_type("lobby")[-1]["challenger"], "cole")
        self.assertEqual(host.of_type("lobby")[-1]["spectators"], 1)
        seat.ready()
        self.clock.advance(0)
        self.assertTrue(host.of_type("lobby")[-1]["challenger_ready"])
        self.assertTrue(host_seat.start_match())
        self.clock.advance(0)
        return match_id, host_seat, host, seat, challenger, spectator

    def test_relay_of_frames_and_inputs(self) -> None:
        """
        The game runs on A, which got start_match: B's challenger is told the game
        started and gets init and every status; its paddle commands travel to A's
        game; the spectator on B sees the same statuses as the host on A.
        """
        match_id, _, host, seat, challenger, spectator = self.started()
        self.assertTrue(self.nodes["a"].matches[match_id].owner)
        self.assertIsNone(self.nodes["b"].matches[match_id].game)
        self.assertTrue(challenger.started)
        self.assertEqual(len(challenger.of_type("init")), 1)
        self.assertEqual(self.table[f"gp:match:{match_id}:lease"][0], "a")
        for _ in range(20):
            seat.command(PaddleCommand.FAST_UP)
            self.clock.advance(0.01 + 1e-6)
            self.clock.advance(0)
        last = challenger.of_type("status")[-1]
        self.assertLess(last["right_paddle_y"], 0.5)
        self.assertEqual(spectator.of_type("status"), host.of_type("status"))

    def test_owner_dies_then_comes_back(self) -> None:
        """
        A stops dead (no renewal, no ticks): B aborts its sockets within the TTL plus
        a watch interval, drops the match and frees the roles; when A wakes up its
        renewal fails on the tombstone and its own host gets the aborted frame too.
        """
        from gameproto.match.frames import ABORTED_LOST

        match_id, _, host, _, challenger, spectator = self.started()
        a = self.nodes["a"]
        for loop, _ in a._loops:
            loop.stop()
        a.matches[match_id].loop.stop()
        dead = self.clock.seconds()
        while challenger.closed is None and self.clock.seconds() - dead < 10:
            self.clock.advance(0.1)
        self.assertLessEqual(self.clock.seconds() - dead, 3.0 + 0.5 + 0.1)
        for socket in (challenger, spectator):
            self.assertEqual((socket.frames[-1], socket.closed), (ABORTED_LOST, 1000))
        self.assertIsNone(self.successResultOf(self.store.get_ongoing_match(match_id)))
        self.assertIsNone(self.successResultOf(self.store.match_role("cole")))
        self.assertIsNone(host.closed)
        self.successResultOf(ensureDeferred(a.renew_leases()))
        self.assertEqual((host.frames[-1], host.closed), (ABORTED_LOST, 1000))
        self.assertIsNotNone(self.successResultOf(self.nodes["b"].create_match("hana")))

    def test_outage_aborts_nothing(self) -> None:
        """While the lease cannot be read, nothing is aborted, for longer than a TTL."""
        match_id, _, host, _, challenger, _ = self.started()
        b = self.nodes["b"]
        from gameproto.redis import RedisUnavailable
        from twisted.internet.defer import fail

        real = b.leases.read
        b.leases.read = lambda key: fail(RedisUnavailable("down"))  # type: ignore[union-attr]
        self.clock.pump([0.1] * 60)
        self.assertIsNone(challenger.closed)
        b.leases.read = real  # type: ignore[union-attr]
        self.clock.pump([0.1] * 20)
        self.assertIsNone(challenger.closed)
        self.assertTrue(challenger.of_type("status"))
