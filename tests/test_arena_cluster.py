"""
Arenas across nodes (gameproto.arena.cluster): the lease and routing logic with two
simulated nodes on one Clock, the in-process bus, an in-memory lease table and one
memory store; and the lease scripts against a real redis-server.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gameproto.arena.cluster import (
    ArenaCluster,
    RedisLeases,
    RemoteArena,
    command_json,
)
from gameproto.arena.commands import (
    MovePlayerCommand,
    RegisterPlayerCommand,
    StartGameCommand,
    parse_command,
)
from gameproto.arena.config import ArenaConfig
from gameproto.arena.service import (
    DEFAULT_ARENA,
    Arena,
    ArenaExists,
    ArenaLimitReached,
    ArenaService,
    ServerFull,
)
from gameproto.bus.local import LocalBus
from gameproto.store.memory import MemoryStore
from tests.arenasupport import TICK, LeaseTable, RecordingSocket, TableLeases
from tests.support import WALL_CLOCK_SLACK
# The close reasons of docs/arena.md, "Several nodes".
RESTARTED = "the arena's node was lost: the arena restarted empty, connect again"
MOVED = "the arena is now run by another node: it restarted empty, connect again"


class CommandJSONTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """Every kind of command survives command_json then parse_command unchanged."""
        for message in [
            {"type": "RegisterPlayerCommand"},
            {"type": "PlayerShootComman"},
            {"type": "StartGameCommand"},
            {"type": "MovePlayerCommand", "data": [{"rotate": 60.5}, {"move": "backward"}]},
            {"type": "ConfigurePlayerCommand",
             "data": [{"op": "radarType", "args": ["long_range_scan"]},
                      {"op": "radarType", "args": "circular_scan"}]},
        ]:
            command = parse_command(message)
            self.assertEqual(parse_command(command_json(command)), command, message)


class TwoNodesTests(SynchronousTestCase):
    """Nodes a and b sharing a bus, a lease table and a store, on one Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.bus = LocalBus(self.clock)
        self.table = LeaseTable(self.clock)
        self.store = MemoryStore()
        self.a = self.node("a")
        self.b = self.node("b")

    def node(self, name: str, **options: Any) -> ArenaService:
        cluster = ArenaCluster(self.clock, self.bus, TableLeases(self.table, name), self.store)
        service = ArenaService(self.clock, cluster=cluster, rng=random.Random(7), **options)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def settle(self) -> None:
        """Let the bus and the outboxes deliver what is queued (later reactor turns)."""
        for _ in range(10):
            self.clock.advance(0)

    def advance(self, seconds: float, step: float = TICK) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.settle()

    def create(self, service: ArenaService, arena_id: str, owner: str = "ann") -> Any:
        config = ArenaConfig.from_dict({"spawn_points": [[100, 100, 0], [300, 100, 0]]})
        return self.successResultOf(ensureDeferred(service.create(owner, config, arena_id)))

    def resolve(self, service: ArenaService, arena_id: str) -> Any:
        return self.successResultOf(ensureDeferred(service.resolve(arena_id)))

    def remote_player(self, arena_id: str = "x") -> tuple[RemoteArena, RecordingSocket]:
        handle = self.resolve(self.b, arena_id)
        self.assertIsInstance(handle, RemoteArena)
        socket = RecordingSocket()
        handle.add_player(socket)
        return handle, socket

    # -- ownership --------------------------------------------------------------------

    def test_one_owner_per_arena(self) -> None:
        """
        The default arena runs on the node that started first, a created arena on the
        node that created it; the other node resolves both to the owner over the bus.
        """
        self.assertIsInstance(self.a.get(DEFAULT_ARENA), Arena)
        self.assertIsNone(self.b.get(DEFAULT_ARENA))
        self.create(self.b, "x")
        self.assertIsNone(self.a.get("x"))
        self.assertTrue(self.b.get("x").running)
        handle = self.resolve(self.a, "x")
        self.assertEqual((handle.node, handle.owner), ("b", "ann"))
        self.assertEqual(self.resolve(self.b, DEFAULT_ARENA).node, "a")
        self.assertIsNone(self.resolve(self.b, "nothing"))

    def test_records_shared(self) -> None:
        """Duplicate ids and the per-user and global limits are counted across nodes."""
        a = self.node("c", max_per_user=2, max_arenas=4)
        b = self.node("d", max_per_user=2, max_arenas=4)
        self.create(a, "one")
        self.failureResultOf(ensureDeferred(b.create("bob", ArenaConfig(), "one")), ArenaExists)
        self.failureResultOf(ensureDeferred(b.create("bob", ArenaConfig(), DEFAULT_ARENA)),
                             ArenaExists)
        self.create(b, "two", owner="ANN")
        self.failureResultOf(ensureDeferred(a.create("Ann", ArenaConfig(), "three")),
                             ArenaLimitReached)
        self.create(a, "three", owner="bob")
        self.failureResultOf(ensureDeferred(b.create("cat", ArenaConfig())), ServerFull)
        listed = ensureDeferred(b.describe_all(10, 0))
        self.settle()  # the live views come from the owners over the bus
        views = self.successResultOf(listed)
        self.assertEqual([v["id"] for v in views], [DEFAULT_ARENA, "one", "two", "three"])

    # -- routing ------------------------------------------------------------------------

    def test_remote_player_and_controller(self) -> None:
        """
        A player on b registers in an arena run by a (its command, sent before the owner
        acknowledged the join, waits for it) and gets its ack at a's next tick; a
        controller on b starts the game, the player gets StartGameOrder, and the controller
        gets a snapshot every tick.
        """
        self.create(self.a, "x")
        handle, player = self.remote_player()
        handle.submit(player, RegisterPlayerCommand())
        self.advance(TICK * 2)
        self.assertIn("RegisterPlayerAck", player.types())
        self.assertEqual(len(self.a.get("x").engine.player_ids()), 1)

        control = RecordingSocket()
        controller = self.resolve(self.b, "x")
        controller.set_controller(control)
        self.settle()
        controller.control(control, StartGameCommand())
        self.advance(TICK * 3)
        kinds = control.types()
        self.assertEqual(kinds.count("StartGameAck"), 1)
        self.assertGreaterEqual(kinds.count("GameSnapshotNotification"), 2)
        self.assertIn("StartGameOrder", player.types())
        handle.submit(player, MovePlayerCommand(parse_command(
            {"type": "MovePlayerCommand", "data": [{"move": "forward"}]}).steps))
        self.advance(TICK * 2)
        [ack] = [f.message for f in player.frames if f.type == "MovePlayerAck"]
        self.assertEqual(ack["data"], {"x": 102.0, "y": 100.0, "rotation": 0,
                                       "shooting": {"tokens": 40, "cost": 6}})

    def test_remote_leave(self) -> None:
        """A remote socket that goes is removed from the owner's arena."""
        self.create(self.a, "x")
        handle, player = self.remote_player()
        self.settle()
        self.assertEqual(self.a.get("x").connections, 1)
        handle.remove_player(player)
        self.settle()
        self.assertEqual(self.a.get("x").connections, 0)

    def test_delete_on_other_node(self) -> None:
        """DELETE on b removes the record; a closes the arena and b's socket is told."""
        self.create(self.a, "x")
        handle, player = self.remote_player()
        self.settle()
        arena = self.a.get("x")
        self.successResultOf(ensureDeferred(self.b.remove("x", "Ann")))
        self.settle()
        self.assertIsNone(self.a.get("x"))
        self.assertFalse(arena.running)
        self.assertEqual(player.closed, ["the arena was deleted"])
        self.assertIsNone(self.successResultOf(self.store.get_arena("x")))
        self.assertIsNone(self.table.get("x"))

    # -- failures ---------------------------------------------------------------------

    def test_owner_dies_other_node_takes_over(self) -> None:
        """
        a stops renewing (dead or stalled): once the lease has been absent for its TTL, b
        takes it, runs the arena empty and closes its sockets with RESTARTED; a, when it
        renews again, finds b's id and stops ticking the arena at once.
        """
        self.create(self.a, "x")
        handle, player = self.remote_player()
        handle.submit(player, RegisterPlayerCommand())
        self.advance(0.2)
        old = self.a.get("x")
        self.a.cluster._loop.stop()  # type: ignore[union-attr]
        start = self.clock.seconds()
        while not player.closed:
            self.advance(0.1, step=0.1)
            self.assertLess(self.clock.seconds() - start, 3 + 1 + 0.2)
        self.assertEqual(player.closed, [RESTARTED])
        self.assertGreaterEqual(self.clock.seconds() - start, 3 - 1)
        taken = self.b.get("x")
        self.assertEqual((taken.running, taken.engine.player_ids()), (True, []))
        self.assertTrue(old.running)  # a has not noticed yet
        self.successResultOf(ensureDeferred(self.a.cluster.renew_and_watch()))  # type: ignore[union-attr]
        self.assertFalse(old.running)
        self.assertIsNone(self.a.get("x"))
        self.assertEqual(self.table.get("x"), "b")

    def test_lost_lease_closes_local_sockets(self) -> None:
        """Another node holding the lease at a renewal stops the arena; its sockets hear MOVED."""
        arena = self.create(self.a, "x")
        local = RecordingSocket()
        arena.add_player(local)
        self.table.set("x", "c")
        self.advance(1.2, step=0.1)
        self.assertFalse(arena.running)
        self.assertEqual(local.closed, [MOVED])

    def test_outage_stops_nothing(self) -> None:
        """
        With Redis unreachable for longer than the lease TTL, the owner keeps ticking and
        the remote sockets stay attached; when Redis is back the owner still runs the arena.
        """
        arena = self.create(self.a, "x")
        handle, player = self.remote_player()
        self.settle()
        self.table.available = False
        ticks = arena.ticks
        self.advance(5.0, step=0.1)
        self.assertGreaterEqual(arena.ticks, ticks + 50)  # one tick per 0.1 s step
        self.assertEqual(player.closed, [])
        self.table.available = True
        self.advance(2.0, step=0.1)
        self.assertEqual((player.closed, self.table.get("x"), self.a.get("x")),
                         ([], "a", arena))
        self.assertIsNone(self.b.get("x"))

    def test_connecting_to_an_orphan_takes_it(self) -> None:
        """An arena whose lease is absent is taken, empty, by the node a socket connects to."""
        self.create(self.a, "x")
        self.a.cluster._loop.stop()  # type: ignore[union-attr]
        self.advance(3.2, step=0.1)
        self.assertIsNone(self.table.get("x"))
        arena = self.resolve(self.b, "x")
        self.assertIsInstance(arena, Arena)
        self.assertIs(self.b.get("x"), arena)
        self.assertEqual(self.table.get("x"), "b")


class RedisLeaseTests(TestCase):
    """The lease scripts on a real redis-server."""

    timeout = 60

    def setUp(self) -> Deferred[None]:
        from tests.redisserver import started_redis

        async def start() -> None:
            from gameproto.redis import RedisURL, connection_pool

            self.redis = await started_redis(self)
            self.pool = connection_pool(reactor, RedisURL.parse(self.redis.url))
            self.addCleanup(lambda: self.pool.disconnect())

        return ensureDeferred(start())

    def leases(self, node: str, ttl_ms: int = 3000) -> RedisLeases:
        return RedisLeases(reactor, node, lambda: self.pool, ttl_ms=ttl_ms)

    def test_compare_and_set(self) -> Deferred[None]:
        """
        SET NX: one holder at a time; the holder renews (PX 3000), another node cannot;
        after a takeover the stalled ex-owner's renewal fails and its release deletes
        nothing.
        """

        async def check() -> None:
            a, b = self.leases("a"), self.leases("b")
            self.assertTrue(await a.acquire("x"))
            self.assertFalse(await b.acquire("x"))
            self.assertFalse(await b.renew("x"))
            self.assertEqual(await a.holder("x"), "a")
            self.assertTrue(await a.renew("x"))
            ttl = int(await self.pool.execute_command("PTTL", a.key("x")))
            # PX 3000, less the time between the renewal and this read.
            self.assertTrue(3000 - WALL_CLOCK_SLACK * 1000 < ttl <= 3000, ttl)
            # a stalls past its TTL (here: its key goes) and b takes over.
            await self.pool.delete([a.key("x")])
            self.assertTrue(await b.acquire("x"))
            self.assertFalse(await a.renew("x"))
            a.release("x")
            self.assertEqual(await a.holder("x"), "b")
            b.release("x")
            await self.pool.ping()  # the release has been applied
            self.assertIsNone(await b.holder("x"))

        return ensureDeferred(check())

    def test_expiry(self) -> Deferred[None]:
        """A lease not renewed expires after its TTL; another node can then take it."""
        from tests.support import wait_for

        async def check() -> None:
            a, b = self.leases("a", ttl_ms=200), self.leases("b", ttl_ms=200)
            self.assertTrue(await a.acquire("x"))
            holders: list[Any] = ["a"]

            async def probe() -> None:
                holders.append(await b.holder("x"))

            await wait_for(lambda: holders[-1] is None, 3, poll=0.05, action=probe)
            self.assertTrue(await b.acquire("x"))

        return ensureDeferred(check())

    def test_renewal_recreates_after_empty_restart(self) -> Deferred[None]:
        """After Redis restarts empty, the owner's next renewal writes its lease back."""
        from tests.support import wait_for

        async def check() -> None:
            a = self.leases("a")
            self.assertTrue(await a.acquire("x"))
            await self.redis.stop()
            await self.redis.start()
            renewed: list[bool] = []

            async def renew() -> None:
                renewed.append(await a.renew("x"))

            await wait_for(lambda: bool(renewed), 5, poll=0.1, action=renew)
            self.assertEqual(renewed, [True])
            self.assertEqual(await a.holder("x"), "a")

        return ensureDeferred(check())
