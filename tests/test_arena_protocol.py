"""
The arena's WebSocket endpoints and service, in memory: a whole server on a Clock, the
handshakes and frames of gameproto.testing, no network and no global reactor.
"""

from __future__ import annotations

import random
from typing import Any

from automat import NoTransition
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto.arena.commands import RegisterPlayerCommand, StartGameCommand
from gameproto.arena.config import ArenaConfig
from gameproto.arena.protocol import (
    ControllerCore,
    ControllerMachine,
    PlayerCore,
    PlayerMachine,
    arena_id_of,
)
from gameproto.arena.arena import Arena, Frame
from gameproto.arena.service import (
    DEFAULT_ARENA,
    ArenaExists,
    ArenaLimitReached,
    ArenaService,
    NotTheOwner,
    ServerFull,
)
from gameproto.testing import CLOSE, request
from gameproto.wire import CloseCode
from tests.arenasupport import ArenaServerTestCase, RecordingSocket, types, without

SPAWNS = {"spawn_points": [[100, 100, 0], [200, 100, 180], [300, 100, 0], [400, 100, 0]]}


class PlayerEndpointTests(ArenaServerTestCase):
    def test_register_ack_on_next_tick(self) -> None:
        """RegisterPlayerCommand is answered at the next tick with a string id and ShootingInfo."""
        ws = self.player()
        ws.send_json({"type": "RegisterPlayerCommand"})
        self.assertEqual(ws.json_messages(), [])
        self.tick()
        [ack] = ws.json_messages()
        self.assertEqual(ack["type"], "RegisterPlayerAck")
        self.assertIsInstance(ack["data"]["id"], str)
        self.assertEqual(ack["data"]["life"], 100)
        self.assertEqual(ack["data"]["shooting"], {"tokens": 40, "cost": 6})

    def test_register_twice(self) -> None:
        """A second RegisterPlayerCommand on one connection gets InvalidCommandError."""
        ws = self.player()
        self.register(ws)
        ws.send_json({"type": "RegisterPlayerCommand"})
        self.tick()
        [error] = ws.json_messages()
        self.assertEqual(error["type"], "InvalidCommandError")
        self.assertIn("already registered", error["data"]["reason"])

    def test_malformed_frames_answered_arena_keeps_ticking(self) -> None:
        """
        Binary, invalid JSON, a non-object, no type, an unknown type and a wrong shape each get
        InvalidCommandError with a reason; the connection stays open and the arena ticks on.
        """
        control = self.controller()
        ws = self.player()
        ws.send(b"\x00\x01", opcode=0x2)
        ws.send(b"{nope")
        ws.send(b"[1]")
        ws.send_json({"data": {}})
        ws.send_json({"type": "Dance"})
        ws.send_json({"type": "MovePlayerCommand", "data": [{"move": "sideways"}]})
        errors = ws.json_messages()
        self.assertEqual(types(errors), ["InvalidCommandError"] * 6)
        self.assertEqual(
            [e["data"]["reason"] for e in errors[:4]],
            ["binary frames are not accepted", "invalid JSON", "a frame must be one JSON object",
             "the command has no type"],
        )
        self.assertIn("Dance", errors[4]["data"]["reason"])
        self.assertIn("forward", errors[5]["data"]["reason"])
        self.assertFalse(ws.disconnected)
        self.tick(2)
        self.assertEqual(types(control.json_messages()), ["GameSnapshotNotification"] * 2)
        self.register(ws)

    def test_oversized_frame_closes_1009(self) -> None:
        """A message over 64 KiB is closed by Autobahn with 1009."""
        ws = self.player()
        ws.send(b'{"type": "' + b"a" * (65 * 1024) + b'"}')
        self.assertEqual([code for code, _ in ws.closes()], [1009])

    def test_unknown_arena(self) -> None:
        """An unknown arena id gets "no such arena" and close 4004, on either path."""
        for ws in (self.player("nowhere"), self.controller("nowhere")):
            frames = ws.frames()
            self.assertEqual(
                [f for f in frames if f[0] == 0x1][0][1],
                b'{"type":"InvalidCommandError","data":{"reason":"no such arena"}}',
            )
            self.assertEqual(ws.close_code, 4004)

    def test_player_start_refused(self) -> None:
        """A player's StartGameCommand is refused at once."""
        ws = self.player()
        ws.send_json({"type": "StartGameCommand"})
        [error] = ws.json_messages()
        self.assertEqual(error["type"], "InvalidCommandError")
        self.assertIn("controller", error["data"]["reason"])

    def test_trailing_slash(self) -> None:
        """Both endpoint paths are served with a trailing slash too."""
        ws = self.connect("/ws/arena/default/player/")
        ws.send_json({"type": "RegisterPlayerCommand"})
        self.tick()
        self.assertEqual(types(ws.json_messages()), ["RegisterPlayerAck"])

    def test_close_leaves_the_arena(self) -> None:
        """A player whose connection closes disappears from the snapshots."""
        control = self.controller()
        ws = self.player()
        self.register(ws)
        control.json_messages()
        self.tick()
        [snapshot] = control.json_messages()
        self.assertEqual(len(snapshot["data"]["arena_snapshot"]["players_snapshots"]), 1)
        ws.transport.loseConnection()
        self.tick()
        [snapshot] = control.json_messages()
        self.assertEqual(snapshot["data"]["arena_snapshot"]["players_snapshots"], [])


    def test_snapshot_names_the_players_user(self) -> None:
        """The controller's snapshot names the user of each player's token (null without)."""
        control = self.controller()
        for ws in (self.player(user="bob"), self.player()):
            self.register(ws)
        control.json_messages()
        self.tick()
        [snapshot] = control.json_messages()
        players = snapshot["data"]["arena_snapshot"]["players_snapshots"]
        self.assertEqual([player["user"] for player in players], ["bob", None])


class ControllerEndpointTests(ArenaServerTestCase):
    def test_anonymous_controller_refused(self) -> None:
        """Without a token the controller gets reason "unauthenticated" and close 4001."""
        ws = self.controller(user=None)
        self.assertEqual(ws.json_messages(), [
            {"type": "InvalidCommandError", "data": {"reason": "unauthenticated"}}])
        self.assertEqual(ws.close_code, 4001)

    def test_not_the_owner(self) -> None:
        """Another user's arena: reason "not the owner of this arena", close 4003."""
        self.create_arena("annsarena", {})
        ws = self.controller("annsarena", user="bob")
        frames = ws.frames()
        self.assertIn(b"not the owner of this arena", frames[0][1])
        self.assertEqual((frames[1][0], ws.close_code), (CLOSE, 4003))

    def test_default_arena_any_user(self) -> None:
        """Without --arena-owner any authenticated user controls the default arena."""
        for user in ("ann", "bob"):
            ws = self.controller(user=user)
            ws.send_json({"type": "StartGameCommand"})
            replies = without(ws.json_messages(), "GameSnapshotNotification")
            self.assertIn(types(replies)[0], ("StartGameAck", "InvalidCommandError"))

    def test_replaced_with_4009(self) -> None:
        """A new controller replaces the old one, which is closed with 4009."""
        old = self.controller()
        new = self.controller(user="bob")
        self.assertEqual(old.closes(), [(4009, "replaced by a newer controller")])
        self.tick()
        self.assertEqual(types(new.json_messages()), ["GameSnapshotNotification"])
        self.assertTrue(self.server.arenas.here(DEFAULT_ARENA).controller_connected)

    def test_start_twice_and_start_order(self) -> None:
        """StartGameAck, StartGameOrder to registered players; a second start is refused."""
        control = self.controller()
        players = [self.player(), self.player()]
        for ws in players:
            ws.send_json({"type": "RegisterPlayerCommand"})
        self.tick()
        for ws in players:
            self.assertEqual(types(ws.json_messages()), ["RegisterPlayerAck"])
        control.json_messages()
        control.send_json({"type": "StartGameCommand"})
        self.assertEqual(control.json_messages(), [{"type": "StartGameAck", "data": {}}])
        for ws in players:
            self.assertEqual(ws.json_messages(), [{"type": "StartGameOrder", "data": {}}])
        control.send_json({"type": "StartGameCommand"})
        [error] = control.json_messages()
        self.assertEqual(error["data"]["reason"], "the game has already started")

    def test_controller_malformed(self) -> None:
        """The controller's malformed frames and player commands get InvalidCommandError."""
        control = self.controller()
        control.send(b"nope")
        control.send_json({"type": "RegisterPlayerCommand"})
        errors = control.json_messages()
        self.assertEqual(types(errors), ["InvalidCommandError"] * 2)
        self.assertEqual(errors[0]["data"]["reason"], "invalid JSON")

    def test_shared_frames_encoded_once(self) -> None:
        """A message to several players is one prepared message sent to each."""
        control = self.controller()
        players = [self.player(), self.player(), self.player()]
        for ws in players:
            self.register(ws)
        prepared: list[Any] = []
        original = Frame.prepared

        def spy(frame: Frame, factory: Any) -> Any:
            result = original(frame, factory)
            prepared.append((frame.type, result))
            return result

        self.patch(Frame, "prepared", spy)
        control.send_json({"type": "StartGameCommand"})
        orders = [p for kind, p in prepared if kind == "StartGameOrder"]
        self.assertEqual(len(orders), 3)
        self.assertEqual(len({id(p) for p in orders}), 1)


class OwnerOptionTests(ArenaServerTestCase):
    def server_options(self) -> dict[str, Any]:
        return {"arena_owner": "BOB"}

    def test_arena_owner(self) -> None:
        """--arena-owner (compared ignoring case) alone controls the default arena."""
        refused = self.controller(user="ann")
        frames = refused.frames()
        self.assertIn(b'"reason":"not the owner of this arena"', frames[0][1])
        self.assertEqual((frames[1][0], refused.close_code), (CLOSE, 4003))
        accepted = self.controller(user="bob")
        self.tick()
        self.assertEqual(types(accepted.json_messages()), ["GameSnapshotNotification"])


class ArenaDeletionTests(ArenaServerTestCase):
    def test_delete_closes_connections(self) -> None:
        """Deleting an arena over REST closes its sockets with 1000 and stops its ticks."""
        self.create_arena("doomed", {})
        control = self.controller("doomed")
        ws = self.player("doomed")
        response = request(self.server.site, "DELETE", "/api/arenas/doomed/",
                           headers={"Authorization": f"Token {self.tokens['ann']}"})
        self.assertEqual(response.status, 204)
        self.assertEqual(control.closes(), [(1000, "the arena was deleted")])
        self.assertEqual(ws.closes(), [(1000, "the arena was deleted")])
        self.assertIsNone(self.server.arenas.here("doomed"))


# ---------------------------------------------------------------------------
# The service alone


class ArenaServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.service = ArenaService(self.clock, idle_timeout=600, max_per_user=2, max_arenas=4,
                                    rng=random.Random(1))
        self.service.startService()

    def create(self, owner: str = "ann", arena_id: str | None = None,
               config: ArenaConfig | None = None) -> Arena:
        d = self.service.create(owner, config or ArenaConfig(), arena_id)
        return self.successResultOf(ensureDeferred(d))

    def test_default_arena_exists_and_ticks(self) -> None:
        """The default arena exists from the start and ticks every tick_ms."""
        arena = self.service.here(DEFAULT_ARENA)
        self.assertIsNotNone(arena)
        controller = RecordingSocket()
        arena.set_controller(controller)
        self.clock.advance(0.02)
        self.clock.advance(0.02)
        self.assertEqual(controller.types(), ["GameSnapshotNotification"] * 2)

    def test_tick_ms_from_config(self) -> None:
        """Each arena ticks at its own tick_ms."""
        arena = self.create(config=ArenaConfig(tick_ms=100))
        self.clock.pump([0.02] * 25)
        self.assertEqual(arena.ticks, 5)
        self.assertEqual(self.service.here(DEFAULT_ARENA).ticks, 25)

    def test_random_id(self) -> None:
        """Without an id an arena gets 8 random characters of [a-z0-9]."""
        arena = self.create()
        self.assertRegex(arena.id, r"\A[a-z0-9]{8}\Z")

    def test_duplicate(self) -> None:
        """An existing id, default included, is ArenaExists."""
        self.create(arena_id="x")
        for arena_id in ("x", DEFAULT_ARENA):
            d = ensureDeferred(self.service.create("bob", ArenaConfig(), arena_id))
            self.failureResultOf(d, ArenaExists)

    def test_limits(self) -> None:
        """At most max_per_user arenas per user and max_arenas in all (default included)."""
        self.create("ann")
        self.create("ANN")
        self.failureResultOf(ensureDeferred(self.service.create("ann", ArenaConfig())),
                             ArenaLimitReached)
        self.create("bob")
        self.assertEqual(len(self.service.arenas()), 4)
        self.failureResultOf(ensureDeferred(self.service.create("carl", ArenaConfig())),
                             ServerFull)

    def test_idle_reaped(self) -> None:
        """An arena without connections for idle_timeout seconds is deleted; default never."""
        arena = self.create(arena_id="idle")
        busy = self.create(arena_id="busy")
        socket = RecordingSocket()
        busy.add_player(socket)
        self.clock.advance(599)
        self.assertIsNotNone(self.service.here("idle"))
        self.clock.advance(1)
        self.assertIsNone(self.service.here("idle"))
        self.assertFalse(arena.running)
        self.assertIsNotNone(self.service.here("busy"))
        self.assertIsNotNone(self.service.here(DEFAULT_ARENA))
        busy.remove_player(socket)
        self.clock.advance(300)
        busy.set_controller(socket)  # a connection resets the timer
        busy.remove_controller(socket)
        self.clock.advance(599)
        self.assertIsNotNone(self.service.here("busy"))
        self.clock.advance(1)
        self.assertIsNone(self.service.here("busy"))

    def test_reaped_id_reusable(self) -> None:
        """A reaped arena's id (and lease) is free again."""
        self.create(arena_id="again")
        self.clock.advance(600)
        self.assertEqual(self.create(arena_id="again").id, "again")

    def test_delete(self) -> None:
        """Only the owner deletes an arena; the default arena cannot be deleted."""
        arena = self.create(arena_id="mine")
        socket = RecordingSocket()
        arena.add_player(socket)

        def delete(arena_id: str, user: str) -> Any:
            return ensureDeferred(self.service.delete(arena_id, user))

        self.failureResultOf(delete("mine", "bob"), NotTheOwner)
        self.failureResultOf(delete(DEFAULT_ARENA, "ann"), NotTheOwner)
        self.failureResultOf(delete("nothing", "ann"), KeyError)
        self.successResultOf(delete("mine", "Ann"))
        self.assertEqual(socket.closed, ["the arena was deleted"])
        self.assertIsNone(self.service.here("mine"))
        self.failureResultOf(delete("mine", "ann"), KeyError)

    def test_stop_and_restart(self) -> None:
        """
        Stopping the service stops every arena and tells its sockets; started again, the
        service runs the default arena again (a new round).
        """
        arena = self.service.here(DEFAULT_ARENA)
        socket = RecordingSocket()
        arena.add_player(socket)
        self.service.stopService()
        self.assertFalse(arena.running)
        self.assertEqual(socket.closed, ["the arena's node is shutting down: connect again"])
        self.assertIsNone(self.service.here(DEFAULT_ARENA))
        self.service.startService()
        self.assertTrue(self.service.here(DEFAULT_ARENA).running)

    def test_locate(self) -> None:
        """
        On one node every arena that exists is located at once, here; an unknown id (or
        anything that is not an id) is None.
        """
        created = self.create(arena_id="here")
        self.assertIs(self.successResultOf(self.service.locate("here")), created)
        self.assertIs(self.successResultOf(self.service.locate(DEFAULT_ARENA)),
                      self.service.here(DEFAULT_ARENA))
        for unknown in ("nothing", "NOT AN ID"):
            self.assertIsNone(self.successResultOf(self.service.locate(unknown)))
            self.assertFalse(self.successResultOf(self.service.exists(unknown)))
        self.assertTrue(self.successResultOf(self.service.exists("here")))

    def test_broken_socket_does_not_stop_others(self) -> None:
        """A socket raising in deliver is logged; the others get their frames."""

        class Broken(RecordingSocket):
            def deliver(self, frame: Frame) -> None:
                raise RuntimeError("broken")

        arena = self.service.here(DEFAULT_ARENA)
        broken, fine = Broken(), RecordingSocket()
        arena.add_player(broken)
        arena.add_player(fine)
        arena.submit(broken, RegisterPlayerCommand())
        arena.submit(fine, RegisterPlayerCommand())
        self.clock.advance(0.02)
        self.assertEqual(fine.types(), ["RegisterPlayerAck"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(arena.running)

    def test_created_arena_holds_its_lease(self) -> None:
        """A created arena is run under its lease, which this node renews every second."""
        self.create(arena_id="held")
        self.clock.advance(10)
        self.assertEqual(self.successResultOf(ensureDeferred(
            self.service.ownership.holder("held"))), self.service.ownership.node_id)
        self.assertIsNotNone(self.service.here("held"))


# ---------------------------------------------------------------------------
# The machines alone


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closes: list[tuple[int, str]] = []
        self.frames: list[Frame] = []
        self.machine: Any = None

    def deliver(self, frame: Frame) -> None:
        self.frames.append(frame)

    def replaced(self) -> None:
        self.machine.replaced()

    def sendObject(self, message: Any) -> bool:
        self.sent.append(message)
        return True

    def closeWith(self, code: CloseCode, reason: str) -> None:
        self.closes.append((int(code), reason))


class MachineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.arena = Arena("a", None, ArenaConfig(), self.clock, random.Random(0))

    def test_player_lifecycle(self) -> None:
        """connected → registered → playing → destroyed → connected (after game over)."""
        connection = FakeConnection()
        core = PlayerCore(connection, connection)
        machine = PlayerMachine(core)
        machine.joined(self.arena)
        machine.command(RegisterPlayerCommand())
        machine.acknowledged("1")
        self.assertEqual(core.player_id, "1")
        machine.startOrdered()
        machine.destroyed()
        self.assertRaises(NoTransition, machine.startOrdered)
        machine.gameOver()
        machine.acknowledged("2")
        machine.lost()
        machine.command(RegisterPlayerCommand())  # ignored once closed
        self.assertEqual(self.arena.connections, 0)

    def test_parked_player_stays_registered(self) -> None:
        """A registered player who was parked stays registered across the game over."""
        connection = FakeConnection()
        machine = PlayerMachine(PlayerCore(connection, connection))
        machine.joined(self.arena)
        machine.acknowledged("1")
        machine.gameOver()
        machine.startOrdered()  # the next round starts: legal only from Registered
        self.assertRaises(NoTransition, machine.acknowledged, "3")

    def test_frames_wait_while_joining(self) -> None:
        """
        What a player sends while its arena is being located waits, and is applied in
        order once it has joined; a connection lost meanwhile joins nothing.
        """
        connection = FakeConnection()
        machine = PlayerMachine(PlayerCore(connection, connection))
        machine.invalid("first")
        machine.command(RegisterPlayerCommand())
        self.assertEqual((connection.sent, self.arena.connections), ([], 0))
        machine.joined(self.arena)
        self.assertEqual(connection.sent, [
            {"type": "InvalidCommandError", "data": {"reason": "first"}}])
        self.arena.tick()
        self.assertEqual([frame.type for frame in connection.frames], ["RegisterPlayerAck"])
        gone = FakeConnection()
        late = PlayerMachine(PlayerCore(gone, gone))
        late.lost()
        late.joined(self.arena)
        self.assertEqual(self.arena.connections, 1)

    def test_player_refused(self) -> None:
        """A refusal sends InvalidCommandError with the reason, then closes with the code."""
        connection = FakeConnection()
        machine = PlayerMachine(PlayerCore(connection, connection))
        machine.refused("no such arena", CloseCode.NOT_FOUND)
        self.assertEqual(connection.sent, [
            {"type": "InvalidCommandError", "data": {"reason": "no such arena"}}])
        self.assertEqual(connection.closes, [(4004, "no such arena")])
        machine.invalid("ignored")
        self.assertEqual(len(connection.sent), 1)

    def test_controller_lifecycle(self) -> None:
        """A controller controls until replaced (4009); the arena keeps the newer one."""
        first, second = FakeConnection(), FakeConnection()
        a = ControllerMachine(ControllerCore(first, first))
        b = ControllerMachine(ControllerCore(second, second))
        first.machine, second.machine = a, b
        a.authorized(self.arena)
        self.arena.control(first, StartGameCommand())
        self.assertEqual([frame.type for frame in first.frames], ["StartGameAck"])
        b.authorized(self.arena)
        self.assertEqual(first.closes, [(4009, "replaced by a newer controller")])
        a.lost()
        self.assertIs(self.arena.controller, second)
        self.assertRaises(NoTransition, b.authorized, self.arena)


class PathTests(SynchronousTestCase):
    def test_arena_id_of(self) -> None:
        """The arena id is the segment before the endpoint's, with or without a slash."""
        self.assertEqual(arena_id_of("/ws/arena/abc/player"), "abc")
        self.assertEqual(arena_id_of("/ws/arena/abc/control/"), "abc")
        self.assertEqual(arena_id_of("/x/ws/arena/a%20b/player"), "a b")


class TickLatenessTests(SynchronousTestCase):
    def test_late_ticks_recorded_and_missed_ticks_skipped(self) -> None:
        """
        A tick that runs late is recorded with its delay; ticks missed meanwhile are skipped,
        not run in a burst, and the next tick is back on schedule.
        """
        clock = Clock()
        service = ArenaService(clock)
        service.startService()
        arena = service.here(DEFAULT_ARENA)
        clock.advance(0.02)
        clock.advance(0.02)
        self.assertEqual((arena.ticks, service.ticks.percentile(0.99)), (2, 0.0))
        clock.advance(0.05)  # due at 0.06, runs at 0.09: 30 ms late, the 0.08 tick skipped
        self.assertEqual(arena.ticks, 3)
        self.assertAlmostEqual(service.ticks.percentile(0.99), 0.03)
        clock.advance(0.0105)  # the 0.10 tick, half a millisecond late
        self.assertEqual(arena.ticks, 4)
        self.assertEqual(service.ticks.count, 4)
        self.assertLess(service.ticks.percentile(0.5), 0.001)
