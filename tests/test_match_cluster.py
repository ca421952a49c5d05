"""
Two match services serving one match from two nodes, in one process: one match
directory (a single node's, shared), one lease table in memory, one LocalBus, and
each node's sink relaying through it.  Each node runs on a Clock of its own, so
that a node can stall (its clock stops) while the other goes on.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import wire
from gameproto.bus.local import LocalBus
from gameproto.match.frames import ABORTED_LOST, MATCH_ENDED, Role
from gameproto.match.local_directory import LocalMatchDirectory
from gameproto.match.lobby import StartOutcome
from gameproto.match.pong import PaddleCommand
from gameproto.match.relay import RelaySink
from gameproto.match.service import MatchService
from gameproto.ownership import MemoryLeaseTable, Ownership
from gameproto.redis import RedisUnavailable
from gameproto.store.memory import MemoryStore

START = 1_800_000_000.0
STEP = 0.01 + 1e-6  # a hair over a tick (see tests/matchsupport.py)


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


class OutageTable:
    """A lease table that can be made unreachable, as Redis can."""

    def __init__(self, table: MemoryLeaseTable) -> None:
        self.table = table
        self.down = False

    def __getattr__(self, operation: str) -> Any:
        real = getattr(self.table, operation)

        def call(*args: Any) -> Deferred[Any]:
            return fail(RedisUnavailable("down")) if self.down else real(*args)

        return call


class TwoNodeTests(SynchronousTestCase):
    """Nodes A and B; hana hosts on A, cole (challenger) and sam (spectator) are on B."""

    def setUp(self) -> None:
        self.clock = Clock()  # the bus's and the lease table's: Redis's time
        self.clock.advance(START)
        self.bus = LocalBus(self.clock)
        self.directory = LocalMatchDirectory(MemoryStore())
        self.table = MemoryLeaseTable(self.clock)
        self.b_table = OutageTable(self.table)
        self.clocks: dict[str, Clock] = {}
        self.nodes: dict[str, MatchService] = {}
        for name, table in (("a", self.table), ("b", self.b_table)):
            clock = self.clocks[name] = Clock()
            clock.advance(START)
            service = MatchService(
                self.directory.store, clock, directory=self.directory,
                ownership=Ownership(table, name, clock, "match"),  # type: ignore[arg-type]
                sink=RelaySink(self.bus, clock, name))
            self.successResultOf(service.startService())
            self.addCleanup(service.stopService)
            self.nodes[name] = service
        self.stalled: set[str] = set()

    def advance(self, seconds: float) -> None:
        """Time passes for the bus, the lease table and every node not stalled."""
        self.clock.advance(seconds)
        for name, clock in self.clocks.items():
            if name not in self.stalled:
                clock.advance(seconds)
        self.flush()

    def flush(self) -> None:
        """Deliver what is queued for the next reactor turn, everywhere."""
        for _ in range(3):
            self.clock.advance(0)
            for name, clock in self.clocks.items():
                if name not in self.stalled:
                    clock.advance(0)

    def join(self, node: str, match_id: int, user: str, role: Role) -> tuple[Any, RecordingSocket]:
        socket = RecordingSocket()
        seat = self.successResultOf(self.nodes[node].join(str(match_id), user, role, socket))
        self.nodes[node].welcome(seat)
        self.flush()
        return seat, socket

    def lobby(self) -> tuple[int, Any, RecordingSocket, Any, RecordingSocket, RecordingSocket]:
        match_id = self.successResultOf(self.nodes["a"].create_match("hana")).id
        host_seat, host = self.join("a", match_id, "hana", Role.HOST)
        seat, challenger = self.join("b", match_id, "cole", Role.CHALLENGER)
        _, spectator = self.join("b", match_id, "sam", Role.SPECTATOR)
        return match_id, host_seat, host, seat, challenger, spectator

    def started(self) -> tuple[int, Any, RecordingSocket, Any, RecordingSocket, RecordingSocket]:
        """The match started by the host on A."""
        match_id, host_seat, host, seat, challenger, spectator = self.lobby()
        self.assertEqual(host.of_type("lobby")[-1]["challenger"], "cole")
        self.assertEqual(host.of_type("lobby")[-1]["spectators"], 1)
        self.nodes["b"].ready(seat)
        self.flush()
        self.assertTrue(host.of_type("lobby")[-1]["challenger_ready"])
        self.assertIs(self.successResultOf(self.nodes["a"].start_match(host_seat)),
                      StartOutcome.STARTED)
        self.flush()
        return match_id, host_seat, host, seat, challenger, spectator

    def test_relay_of_frames_and_inputs(self) -> None:
        """
        The game runs on A, which got start_match, under A's lease: B's challenger is
        told the game started and gets init and every status; its paddle commands
        travel to A's game; the spectator on B sees the statuses the host on A sees.
        """
        match_id, _, host, seat, challenger, spectator = self.started()
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(
            self.nodes["b"].ownership.holder(match_id))), "a")
        self.assertTrue(challenger.started)
        self.assertEqual(len(challenger.of_type("init")), 1)
        for _ in range(20):
            self.nodes["b"].paddle(seat, PaddleCommand.FAST_UP)
            self.advance(STEP)
        last = challenger.of_type("status")[-1]
        self.assertLess(last["right_paddle_y"], 0.5)
        self.assertEqual(spectator.of_type("status"), host.of_type("status"))
        self.assertEqual(self.successResultOf(self.nodes["a"].whereabouts("cole")),
                         (match_id, "challenger"))

    def test_newer_socket_on_another_node_replaces(self) -> None:
        """cole connects again on A: the older socket, on B, is closed with 4009."""
        match_id, _, host, _, challenger, _ = self.lobby()
        _, again = self.join("a", match_id, "cole", Role.CHALLENGER)
        self.assertEqual(challenger.closed, 4009)
        self.assertIsNone(again.closed)
        self.assertEqual(again.of_type("lobby")[-1]["challenger"], "cole")

    def test_delete_closes_sockets_on_every_node(self) -> None:
        """The host deletes the match through A: B's sockets get code 4 and a close 1000."""
        match_id, _, host, _, challenger, spectator = self.lobby()
        self.assertTrue(self.successResultOf(Deferred.fromCoroutine(
            self.nodes["a"].delete_match(match_id, "hana"))))
        self.flush()
        for socket in (host, challenger, spectator):
            self.assertEqual((socket.frames[-1], socket.closed), (MATCH_ENDED, 1000))
        self.assertEqual(self.successResultOf(self.nodes["b"].whereabouts("sam")), (None, None))

    def test_owner_stalls_then_comes_back(self) -> None:
        """
        A stalls (no renewal, no ticks): B aborts its sockets within the TTL plus a
        watch interval, drops the match and frees the roles; when A wakes up its
        renewal fails on the tombstone and its own host gets the aborted frame too.
        """
        match_id, _, host, _, challenger, spectator = self.started()
        self.stalled.add("a")
        stalled = self.clock.seconds()
        while challenger.closed is None and self.clock.seconds() - stalled < 10:
            self.advance(0.1)
        self.assertLessEqual(self.clock.seconds() - stalled, 3.0 + 0.5 + 0.1 + 1e-6)
        for socket in (challenger, spectator):
            self.assertEqual((socket.frames[-1], socket.closed), (ABORTED_LOST, 1000))
        self.assertIsNone(self.successResultOf(self.directory.get(match_id)))
        self.assertEqual(self.successResultOf(self.nodes["b"].whereabouts("cole")), (None, None))
        self.assertIsNone(host.closed)
        self.stalled.clear()
        self.advance(1.0)
        self.assertEqual((host.frames[-1], host.closed), (ABORTED_LOST, 1000))
        self.assertIsNotNone(self.successResultOf(Deferred.fromCoroutine(
            self.nodes["b"].create_match("hana"))))

    def test_outage_aborts_nothing(self) -> None:
        """While B cannot read the lease, nothing is aborted, for longer than a TTL."""
        _, _, host, _, challenger, _ = self.started()
        self.b_table.down = True
        for _ in range(600):
            self.advance(STEP)
        self.assertIsNone(challenger.closed)
        self.b_table.down = False
        for _ in range(200):
            self.advance(STEP)
        self.assertIsNone(challenger.closed)
        self.assertEqual(challenger.of_type("status")[-1], host.of_type("status")[-1])
