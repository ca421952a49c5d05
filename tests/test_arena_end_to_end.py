"""
The arena end to end: a real C{twistd -n gameproto} process, real WebSocket clients
(gameproto.client.arena) and real REST calls.  Arenas are created with spawn points so
that every position, hit and winner below is known in advance.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from gameproto.client import arena as client
from tests.nodes import Node, http_json, stop_on_cleanup

RADAR = "RadarScanNotification"
SNAPSHOT = "GameSnapshotNotification"
ERROR = "InvalidCommandError"


class ArenaEndToEndTests(TestCase):
    timeout = 120

    def setUp(self) -> Deferred[None]:
        self.node = stop_on_cleanup(self, Node("--store", "memory:"))
        self.sockets: list[client.ArenaClient] = []
        self.addCleanup(self._close_sockets)
        return self.node.start().addCallback(lambda _: None)

    def _close_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    def run_scenario(self, scenario: Any) -> Deferred[None]:
        return ensureDeferred(scenario())

    async def user(self, name: str) -> str:
        status, _ = await http_json("POST", self.node.url("/api/users/sign_up/"),
                                    {"username": name, "password": "password1"})
        self.assertEqual(status, 201)
        status, body = await http_json("POST", self.node.url("/api/token/"),
                                       {"username": name, "password": "password1"})
        self.assertEqual(status, 200)
        return str(body["token"])

    async def arena(self, token: str, arena_id: str, **config: Any) -> dict[str, Any]:
        status, body = await http_json("POST", self.node.url("/api/arenas/"),
                                       {"id": arena_id, "config": config}, token=token)
        self.assertEqual(status, 201, body)
        return body

    async def connect(self, arena_id: str, role: str = "player", token: str | None = None,
                      ignore: tuple[str, ...] = (RADAR, SNAPSHOT)) -> client.ArenaClient:
        socket = await client.connect(reactor, self.node.ws_url(""), arena_id, role, token,
                                      ignore=ignore)
        self.sockets.append(socket)
        return socket

    def assertError(self, message: dict[str, Any], reason_part: str) -> None:
        self.assertEqual(message["type"], ERROR, message)
        self.assertIn(reason_part, message["data"]["reason"])

    # -- registration -------------------------------------------------------------

    def test_registration(self) -> None:
        """
        RegisterPlayerAck has the spec's shape with a string id and the spawn point's
        coordinates; registering twice and registering in a full arena are refused.
        """

        async def scenario() -> None:
            token = await self.user("ann")
            await self.arena(token, "reg", max_players=1, spawn_points=[[50, 60, 0]])
            first = await self.connect("reg")
            ack = await first.register()
            self.assertEqual(ack, {"type": "RegisterPlayerAck", "data": {
                "id": ack["data"]["id"], "x": 50, "y": 60, "life": 100,
                "shooting": {"tokens": 40, "cost": 6}}})
            self.assertIsInstance(ack["data"]["id"], str)
            self.assertError(await first.register(), "already registered")
            second = await self.connect("reg")
            self.assertError(await second.register(), "the arena is full")

        return self.run_scenario(scenario)

    # -- starting -----------------------------------------------------------------

    def test_start(self) -> None:
        """
        A player cannot start the game; moves and shots before the start are refused; the
        controller's start is acked and every registered player gets StartGameOrder; a second
        start is refused.
        """

        async def scenario() -> None:
            token = await self.user("ann")
            await self.arena(token, "start", spawn_points=[[100, 100, 0], [300, 100, 0]])
            control = await self.connect("start", "control", token)
            players = [await self.connect("start"), await self.connect("start")]
            for player in players:
                self.assertEqual((await player.register())["type"], "RegisterPlayerAck")
            self.assertError(await players[0].start_game(), "only the controller")
            self.assertError(await players[0].move({"move": "forward"}), "has not started")
            self.assertError(await players[1].shoot(), "has not started")
            self.assertEqual(await control.start_game(), {"type": "StartGameAck", "data": {}})
            for player in players:
                order = await player.wait_for_type("StartGameOrder")
                self.assertEqual(order, {"type": "StartGameOrder", "data": {}})
            self.assertError(await control.start_game(), "already started")
            moved = await players[0].move({"rotate": 60}, {"move": "forward"})
            self.assertEqual(moved, {"type": "MovePlayerAck",
                                     "data": {"x": 101.0, "y": 101.73205, "rotation": 60,
                                              "shooting": {"tokens": 40, "cost": 6}}})

        return self.run_scenario(scenario)

    def test_late_join(self) -> None:
        """
        With players_can_join_started_game a late registrant gets its ack then StartGameOrder;
        without it, its ack, and its moves are refused until the next round.
        """

        async def scenario() -> None:
            token = await self.user("ann")
            for arena_id, joins in (("open", True), ("closed", False)):
                await self.arena(token, arena_id, players_can_join_started_game=joins,
                                 spawn_points=[[100, 100, 0], [200, 100, 0], [300, 100, 0]])
                control = await self.connect(arena_id, "control", token)
                early = [await self.connect(arena_id), await self.connect(arena_id)]
                for player in early:
                    await player.register()
                await control.start_game()
                late = await self.connect(arena_id)
                ack = await late.register()
                self.assertEqual((ack["type"], ack["data"]["x"]), ("RegisterPlayerAck", 300))
                if joins:
                    self.assertEqual((await late.next_message(10))["type"], "StartGameOrder")
                    self.assertEqual((await late.move({"move": "forward"}))["type"],
                                     "MovePlayerAck")
                else:
                    self.assertError(await late.move({"move": "forward"}), "next round")

        return self.run_scenario(scenario)

    # -- radar ----------------------------------------------------------------------

    def test_configure_radar_and_scans(self) -> None:
        """
        ConfigurePlayerCommand accepts the array, object and string forms and refuses a bad op
        or arg; once the game runs each player gets a RadarScanNotification every tick, which
        sees the other player and the walls (circular scan) or nothing but players (long range).
        """

        async def scenario() -> None:
            token = await self.user("ann")
            await self.arena(token, "radar", spawn_points=[[380, 380, 0], [400, 380, 180]])
            control = await self.connect("radar", "control", token)
            scanner = await self.connect("radar", ignore=(SNAPSHOT,))
            other = await self.connect("radar")
            await scanner.register()
            await other.register()
            forms = [
                [{"op": "radarType", "args": ["long_range_scan"]}],
                {"op": "radarType", "args": ["circular_scan"]},
                [{"op": "radarType", "args": "long_range_scan"}],
            ]
            for data in forms:
                reply = await scanner.request({"type": "ConfigurePlayerCommand", "data": data},
                                              "ConfigurePlayerAck")
                self.assertEqual(reply, {"type": "ConfigurePlayerAck", "data": {}})
            bad_op = await scanner.request(
                {"type": "ConfigurePlayerCommand", "data": [{"op": "colour", "args": ["red"]}]},
                "ConfigurePlayerAck")
            self.assertError(bad_op, "unknown configuration op")
            bad_arg = await scanner.request(
                {"type": "ConfigurePlayerCommand", "data": [{"op": "radarType", "args": ["x"]}]},
                "ConfigurePlayerAck")
            self.assertError(bad_arg, "unknown radar type")
            self.assertEqual(scanner.counts[RADAR], 0)  # no radar before the start

            await control.start_game()
            await scanner.wait_for_type("StartGameOrder")
            long_range = await scanner.wait_for_type(RADAR)
            self.assertEqual(long_range["data"], {
                "elements": [{"type": "unknown", "coordinates": {"x": 400.0, "y": 380.0}}],
                "walls": []})
            await scanner.configure_radar("circular_scan")
            circular = await scanner.wait_for_type(RADAR)
            self.assertEqual(circular["data"]["walls"], [[[414, 400], [345, 400]]])
            before = scanner.counts[RADAR]
            for _ in range(5):
                await scanner.wait_for_type(RADAR)
            self.assertEqual(scanner.counts[RADAR] - before, 5)

        return self.run_scenario(scenario)

    # -- snapshots -------------------------------------------------------------------

    def test_snapshots_every_tick(self) -> None:
        """
        The controller gets a GameSnapshotNotification every tick, before the start too.
        (That they come one per tick_ms is tested on a Clock, in test_arena_protocol.)
        """

        async def scenario() -> None:
            token = await self.user("ann")
            await self.arena(token, "snaps", tick_ms=50, spawn_points=[[100, 100, 0]])
            control = await self.connect("snaps", "control", token, ignore=())
            player = await self.connect("snaps")
            await player.register()
            snapshots = [await control.wait_for_type(SNAPSHOT) for _ in range(10)]
            last = snapshots[-1]["data"]["arena_snapshot"]
            self.assertEqual(last["shots_snapshots"], [])
            [me] = last["players_snapshots"]
            self.assertEqual(me["coordinates"], {"x": 100.0, "y": 100.0})
            self.assertEqual(me["radar"], {"type": "circular_scan", "radius": 40})

        return self.run_scenario(scenario)

    # -- a whole game ------------------------------------------------------------------

    def test_hits_destruction_game_over_and_second_round(self) -> None:
        """
        Two players facing each other: two shots destroy the target (PlayerHitByShotNotification
        with its life, then PlayerDestroyedNotification); everyone, the controller included,
        gets GameOverNotification naming the shooter; both register again and a second round
        starts.
        """

        async def scenario() -> None:
            token = await self.user("ann")
            await self.arena(token, "duel", player_life=10, shot_speed=4,
                             spawn_points=[[100, 100, 0], [130, 100, 180]])
            control = await self.connect("duel", "control", token)
            shooter = await self.connect("duel")
            target = await self.connect("duel")
            shooter_id = (await shooter.register())["data"]["id"]
            target_id = (await target.register())["data"]["id"]
            await control.start_game()
            self.assertEqual((await shooter.shoot())["data"], {"shooting": {"tokens": 34,
                                                                           "cost": 6}})
            self.assertEqual((await shooter.shoot())["type"], "PlayerShotAck")
            hit = await target.wait_for_type("PlayerHitByShotNotification")
            self.assertEqual(hit["data"], {"life": 5})
            hit = await target.wait_for_type("PlayerHitByShotNotification")
            self.assertEqual(hit["data"], {"life": 0})
            self.assertEqual(await target.next_message(10),
                             {"type": "PlayerDestroyedNotification", "data": {}})
            expected = {"type": "GameOverNotification", "data": {"winner": shooter_id}}
            for socket in (target, shooter, control):
                self.assertEqual(await socket.wait_for_type("GameOverNotification"), expected)
            self.assertNotEqual(shooter_id, target_id)

            # Round two: registrations were cleared, spawn points start over.
            again = [(await shooter.register())["data"], (await target.register())["data"]]
            self.assertEqual([(a["x"], a["y"]) for a in again], [(100, 100), (130, 100)])
            self.assertEqual((await control.start_game())["type"], "StartGameAck")
            for socket in (shooter, target):
                await socket.wait_for_type("StartGameOrder")

        return self.run_scenario(scenario)

    # -- malformed input and refusals --------------------------------------------------

    def test_malformed_input_while_arena_ticks(self) -> None:
        """
        Binary, non-JSON, non-object, typeless and unknown frames each get an
        InvalidCommandError with a reason; the sender stays connected, and the arena keeps
        ticking for the others (snapshots flow, another player's moves are acked).
        """

        async def scenario() -> None:
            token = await self.user("ann")
            await self.arena(token, "noise", spawn_points=[[100, 100, 0], [300, 100, 0]])
            control = await self.connect("noise", "control", token, ignore=())
            noisy = await self.connect("noise")
            calm = await self.connect("noise")
            await calm.register()
            await control.start_game()
            await calm.wait_for_type("StartGameOrder")
            payloads: list[tuple[bytes, bool]] = [
                (b"\x00\x01", True), (b"{nope", False), (b"[1, 2]", False),
                (b'{"data": {}}', False), (b'{"type": "Fly"}', False),
                (b'{"type": "MovePlayerCommand", "data": [{"rotate": true}]}', False),
            ]
            for payload, binary in payloads:
                noisy.send_raw(payload, binary)
            errors = [await noisy.next_message(10) for _ in payloads]
            self.assertEqual([e["type"] for e in errors], [ERROR] * len(payloads))
            self.assertEqual([e["data"]["reason"] for e in errors[:4]], [
                "binary frames are not accepted", "invalid JSON",
                "a frame must be one JSON object", "the command has no type"])
            before = control.counts[SNAPSHOT]
            await control.wait_for_type(SNAPSHOT)
            self.assertGreater(control.counts[SNAPSHOT], before)
            self.assertEqual((await calm.move({"move": "forward"}))["type"], "MovePlayerAck")
            self.assertEqual(noisy.state, noisy.STATE_OPEN)
            self.assertEqual((await noisy.register())["type"], "RegisterPlayerAck")

        return self.run_scenario(scenario)

    def test_controller_refusals_and_replacement(self) -> None:
        """
        Anonymous controller: "unauthenticated", 4001; another user's arena: "not the owner of
        this arena", 4003; unknown arena: "no such arena", 4004; a second controller replaces
        the first, which is closed with 4009.
        """

        async def scenario() -> None:
            ann = await self.user("ann")
            bob = await self.user("bob")
            await self.arena(ann, "owned")
            cases = [("owned", None, "unauthenticated", 4001),
                     ("owned", bob, "not the owner of this arena", 4003),
                     ("missing", ann, "no such arena", 4004)]
            for arena_id, token, reason, code in cases:
                socket = await self.connect(arena_id, "control", token)
                self.assertEqual(await socket.next_message(10),
                                 {"type": ERROR, "data": {"reason": reason}})
                self.assertEqual(await socket.closed, (code, reason))
            first = await self.connect("owned", "control", ann)
            second = await self.connect("owned", "control", ann)
            self.assertEqual(await first.closed, (4009, "replaced by a newer controller"))
            self.assertEqual((await second.start_game())["type"], "StartGameAck")
            status, body = await http_json("GET", self.node.url("/api/arenas/owned/"), token=bob)
            self.assertEqual((status, body["controller_connected"], body["started"]),
                             (200, True, True))

        return self.run_scenario(scenario)
