"""
Arenas across nodes (gameproto.arena.service with gameproto.arena.relay.BusRelay): the
ownership and routing logic with two nodes on one Clock, the in-process bus, one lease
table (a MemoryLeaseTable, which can be cut off) and one memory store.  The lease tables
themselves are held to one contract with Redis in tests/test_ownership.py.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto.arena.arena import Arena
from gameproto.arena.commands import (
    MovePlayerCommand,
    RegisterPlayerCommand,
    StartGameCommand,
    command_json,
    parse_command,
)
from gameproto.arena.config import ArenaConfig
from gameproto.arena.directory import ArenaDirectory
from gameproto.arena.relay import BusRelay, RemoteArena
from gameproto.arena.service import (
    DEFAULT_ARENA,
    ArenaExists,
    ArenaLimitReached,
    ArenaSeams,
    ArenaService,
    ServerFull,
)
from gameproto.bus.local import LocalBus
from gameproto.ownership import Ownership
from gameproto.store.memory import MemoryStore
from tests.arenasupport import TICK, CutOffLeaseTable, RecordingSocket

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
        self.table = CutOffLeaseTable(self.clock)
        self.store = MemoryStore()
        self.a = self.node("a")
        self.b = self.node("b")

    def node(self, name: str, **options: Any) -> ArenaService:
        seams = ArenaSeams(ArenaDirectory(self.store, self.clock),
                           Ownership(self.table, name, self.clock, "arena"),
                           BusRelay(self.clock, self.bus, name))
        service = ArenaService(self.clock, seams=seams, rng=random.Random(7), **options)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def holder(self, arena_id: str) -> str | None:
        return self.successResultOf(ensureDeferred(self.a.ownership.holder(arena_id)))

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

    def locate(self, service: ArenaService, arena_id: str) -> Any:
        return self.successResultOf(service.locate(arena_id))

    def remote_player(self, arena_id: str = "x") -> tuple[RemoteArena, RecordingSocket]:
        handle = self.locate(self.b, arena_id)
        self.assertIsInstance(handle, RemoteArena)
        socket = RecordingSocket()
        handle.add_player(socket)
        return handle, socket

    # -- ownership --------------------------------------------------------------------

    def test_one_owner_per_arena(self) -> None:
        """
        The default arena runs on the node that started first, a created arena on the
        node that created it; the other node locates both on the owner, over the bus.
        """
        self.assertIsInstance(self.a.here(DEFAULT_ARENA), Arena)
        self.assertIsNone(self.b.here(DEFAULT_ARENA))
        self.create(self.b, "x")
        self.assertIsNone(self.a.here("x"))
        self.assertTrue(self.b.here("x").running)
        handle = self.locate(self.a, "x")
        self.assertEqual((handle.node, handle.owner), ("b", "ann"))
        self.assertEqual(self.locate(self.b, DEFAULT_ARENA).node, "a")
        self.assertIsNone(self.locate(self.b, "nothing"))

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
        self.assertEqual(len(self.a.here("x").engine.player_ids()), 1)

        control = RecordingSocket()
        controller = self.locate(self.b, "x")
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
        self.assertEqual(self.a.here("x").connections, 1)
        handle.remove_player(player)
        self.settle()
        self.assertEqual(self.a.here("x").connections, 0)

    def test_delete_on_other_node(self) -> None:
        """DELETE on b removes the record; a closes the arena and b's socket is told."""
        self.create(self.a, "x")
        handle, player = self.remote_player()
        self.settle()
        arena = self.a.here("x")
        self.successResultOf(ensureDeferred(self.b.delete("x", "Ann")))
        self.settle()
        self.assertIsNone(self.a.here("x"))
        self.assertFalse(arena.running)
        self.assertEqual(player.closed, ["the arena was deleted"])
        self.assertIsNone(self.successResultOf(self.store.get_arena("x")))
        self.assertIsNone(self.holder("x"))

    def test_live_view_from_the_owner(self) -> None:
        """GET on b shows the players of an arena run by a, asked of a over the bus."""
        self.create(self.a, "x")
        handle, player = self.remote_player()
        handle.submit(player, RegisterPlayerCommand())
        self.advance(TICK * 2)
        view = ensureDeferred(self.b.describe("x"))
        self.settle()
        self.assertEqual(len(self.successResultOf(view)["players"]), 1)

    # -- failures ---------------------------------------------------------------------

    def test_owner_dies_other_node_takes_over(self) -> None:
        """
        a stops renewing (dead or stalled): once its lease has gone unrenewed for a full
        TTL, b declares it dead, takes it, runs the arena empty and closes its sockets with
        RESTARTED; a, when it renews again, finds b's lease and stops the arena at once.
        """
        self.create(self.a, "x")
        handle, player = self.remote_player()
        handle.submit(player, RegisterPlayerCommand())
        self.advance(0.2)
        old = self.a.here("x")
        self.a.renewal.stop()
        start = self.clock.seconds()
        while not player.closed:
            self.advance(0.1, step=0.1)
            self.assertLess(self.clock.seconds() - start, 3 + 1 + 0.2)
        self.assertEqual(player.closed, [RESTARTED])
        self.assertGreaterEqual(self.clock.seconds() - start, 3 - 1)
        taken = self.b.here("x")
        self.assertEqual((taken.running, taken.engine.player_ids()), (True, []))
        self.assertTrue(old.running)  # a has not noticed yet
        self.successResultOf(ensureDeferred(self.a.renew_and_watch()))
        self.assertFalse(old.running)
        self.assertIsNone(self.a.here("x"))
        self.assertEqual(self.holder("x"), "b")

    def test_lost_lease_closes_local_sockets(self) -> None:
        """
        A stalled owner whose lease another node took meanwhile stops the arena at its next
        renewal; its sockets hear MOVED.
        """
        arena = self.create(self.a, "x")
        local = RecordingSocket()
        arena.add_player(local)
        self.a.renewal.stop()
        self.advance(3.2, step=0.1)
        c = Ownership(self.table, "c", self.clock, "arena")
        self.assertTrue(self.successResultOf(c.claim("x")))
        self.a.renewal.start(1.0, now=True)
        self.settle()
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
        self.assertEqual((player.closed, self.holder("x"), self.a.here("x")),
                         ([], "a", arena))
        self.assertIsNone(self.b.here("x"))

    def test_connecting_to_an_orphan_takes_it(self) -> None:
        """
        An arena whose lease is absent is taken, empty, by the node a socket connects to,
        once that node has seen the lease absent for a full TTL (its holder might have
        written it back); the socket waits meanwhile.
        """
        self.create(self.a, "x")
        self.a.renewal.stop()
        self.advance(3.2, step=0.1)
        self.assertIsNone(self.holder("x"))
        located = self.b.locate("x")
        self.assertNoResult(located)
        self.advance(3.5, step=0.1)
        arena = self.successResultOf(located)
        self.assertIsInstance(arena, Arena)
        self.assertIs(self.b.here("x"), arena)
        self.assertEqual(self.holder("x"), "b")

    def test_shutdown_hands_over_at_once(self) -> None:
        """
        A node that stops tells the sockets of other nodes (SHUTTING_DOWN) and resigns its
        leases: the next node to look takes the arena over without waiting for a TTL.
        """
        self.create(self.a, "x")
        handle, player = self.remote_player()
        self.settle()
        self.a.stopService()
        self.settle()
        self.assertEqual(player.closed, ["the arena's node is shutting down: connect again"])
        arena = self.locate(self.b, "x")
        self.assertIsInstance(arena, Arena)
        self.assertEqual(self.holder("x"), "b")
