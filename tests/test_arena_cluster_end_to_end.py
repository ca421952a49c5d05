"""
Arenas across nodes, end to end: two real C{twistd -n gameproto --redis URL} processes on
one real redis-server, the Autobahn arena client (gameproto.client.arena) and real REST.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.trial.unittest import TestCase

from gameproto.client import arena as client
from tests.nodes import Node, http_json, stop_on_cleanup
from tests.support import wall_clock_ceiling, within

RADAR = "RadarScanNotification"
SNAPSHOT = "GameSnapshotNotification"
# docs/arena.md, "Several nodes": the lease's TTL and the close reason of a takeover.
LEASE_TTL = 3.0
RESTARTED = "the arena's node was lost: the arena restarted empty, connect again"


class ArenaClusterEndToEndTests(TestCase):
    timeout = 120

    def setUp(self) -> Deferred[None]:
        from tests.redisserver import started_redis

        self.sockets: list[client.ArenaClient] = []
        self.addCleanup(self._close_sockets)

        async def start() -> None:
            self.redis = await started_redis(self)
            self.a = stop_on_cleanup(self, Node("--redis", self.redis.url))
            self.b = stop_on_cleanup(self, Node("--redis", self.redis.url))
            await self.a.start()
            await self.b.start()

        return ensureDeferred(start())

    def _close_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    async def user(self, name: str) -> str:
        status, _ = await http_json("POST", self.a.url("/api/users/sign_up/"),
                                    {"username": name, "password": "password1"})
        self.assertEqual(status, 201)
        status, body = await http_json("POST", self.b.url("/api/token/"),
                                       {"username": name, "password": "password1"})
        self.assertEqual(status, 200)
        return str(body["token"])

    async def connect(self, node: Node, arena_id: str, role: str = "player",
                      token: str | None = None,
                      ignore: tuple[str, ...] = (RADAR, SNAPSHOT)) -> client.ArenaClient:
        socket = await client.connect(reactor, node.ws_url(""), arena_id, role, token,
                                      ignore=ignore)
        self.sockets.append(socket)
        return socket

    def test_bot_on_b_plays_in_arena_owned_by_a(self) -> Deferred[None]:
        """
        An arena created on A runs on A; B sees it over REST (409 for its id on B). A bot on
        B registers, is started by a controller on A, moves and shoots; its shots hit a bot
        on A, whose destruction ends the game for everyone. A controller on B replaces A's
        (4009) and gets the snapshots. DELETE on B closes the sockets of both nodes.
        """

        async def scenario() -> None:
            ann = await self.user("ann")
            status, body = await http_json(
                "POST", self.a.url("/api/arenas/"),
                {"id": "duel", "config": {"player_life": 10, "shot_speed": 4,
                                          "spawn_points": [[100, 100, 0], [130, 100, 180]]}},
                token=ann)
            self.assertEqual(status, 201, body)
            status, seen = await http_json("GET", self.b.url("/api/arenas/duel/"), token=ann)
            self.assertEqual((status, seen["owner"], seen["config"]["player_life"]),
                             (200, "ann", 10))
            status, _ = await http_json("POST", self.b.url("/api/arenas/"), {"id": "duel"},
                                        token=ann)
            self.assertEqual(status, 409)
            status, listed = await http_json("GET", self.b.url("/api/arenas/"), token=ann)
            self.assertEqual([a["id"] for a in listed], ["default", "duel"])

            control_a = await self.connect(self.a, "duel", "control", ann)
            shooter = await self.connect(self.b, "duel")  # remote: the arena runs on A
            target = await self.connect(self.a, "duel")
            ack = await shooter.register()
            self.assertEqual((ack["type"], ack["data"]["x"], ack["data"]["y"]),
                             ("RegisterPlayerAck", 100, 100))
            shooter_id = ack["data"]["id"]
            target_ack = await target.register()
            self.assertEqual(target_ack["data"]["x"], 130)
            status, seen = await http_json("GET", self.b.url("/api/arenas/duel/"), token=ann)
            self.assertEqual(seen["players"], [shooter_id, target_ack["data"]["id"]])
            self.assertEqual(await control_a.start_game(), {"type": "StartGameAck", "data": {}})
            self.assertEqual(await shooter.wait_for_type("StartGameOrder"),
                             {"type": "StartGameOrder", "data": {}})
            moved = await shooter.move({"rotate": 0}, {"move": "forward"})
            self.assertEqual(moved, {"type": "MovePlayerAck",
                                     "data": {"x": 102.0, "y": 100.0, "rotation": 0,
                                              "shooting": {"tokens": 40, "cost": 6}}})

            control_b = await self.connect(self.b, "duel", "control", ann, ignore=())
            self.assertEqual(await control_a.closed, (4009, "replaced by a newer controller"))
            snapshot = await control_b.wait_for_type(SNAPSHOT)
            players = snapshot["data"]["arena_snapshot"]["players_snapshots"]
            self.assertEqual([p["coordinates"] for p in players],
                             [{"x": 102.0, "y": 100.0}, {"x": 130.0, "y": 100.0}])

            self.assertEqual((await shooter.shoot())["data"],
                             {"shooting": {"tokens": 34, "cost": 6}})
            self.assertEqual((await shooter.shoot())["type"], "PlayerShotAck")
            for life in (5, 0):
                hit = await target.wait_for_type("PlayerHitByShotNotification")
                self.assertEqual(hit["data"], {"life": life})
            expected = {"type": "GameOverNotification", "data": {"winner": shooter_id}}
            for socket in (shooter, target, control_b):
                self.assertEqual(await socket.wait_for_type("GameOverNotification"), expected)

            status, _ = await http_json("DELETE", self.b.url("/api/arenas/duel/"), token=ann)
            self.assertEqual(status, 204)
            for socket in (shooter, target, control_b):
                self.assertEqual(await socket.closed, (1000, "the arena was deleted"))
            status, _ = await http_json("GET", self.a.url("/api/arenas/duel/"), token=ann)
            self.assertEqual(status, 404)
            for node in (self.a, self.b):
                self.assertEqual(await node.stop(), 0, node.text())

        return ensureDeferred(scenario())

    def test_owner_killed_mid_game(self) -> Deferred[None]:
        """
        The node running an arena (A) is killed mid-game: within the lease TTL plus a
        margin, B takes the lease and the sockets on B are closed with 1000 and a reason
        saying the arena restarted; the arena is then running on B, empty and not started,
        and the bots play again after reconnecting to B.
        """

        async def scenario() -> None:
            ann = await self.user("ann")
            status, _ = await http_json(
                "POST", self.a.url("/api/arenas/"),
                {"id": "fragile", "config": {"spawn_points": [[100, 100, 0], [300, 100, 0]]}},
                token=ann)
            self.assertEqual(status, 201)
            control = await self.connect(self.a, "fragile", "control", ann)
            bots = [await self.connect(self.b, "fragile"), await self.connect(self.b, "fragile")]
            for bot in bots:
                self.assertEqual((await bot.register())["type"], "RegisterPlayerAck")
            await control.start_game()
            for bot in bots:
                await bot.wait_for_type("StartGameOrder")
            self.assertEqual((await bots[0].move({"move": "forward"}))["type"], "MovePlayerAck")

            # The lease expires a full TTL after A's last renewal; B checks every second.
            closes = within(gatherResults([bot.closed for bot in bots]),
                            wall_clock_ceiling(LEASE_TTL + 1))
            await self.a.kill()
            self.assertEqual(await closes, [(1000, RESTARTED)] * len(bots))

            status, seen = await http_json("GET", self.b.url("/api/arenas/fragile/"), token=ann)
            self.assertEqual((status, seen["players"], seen["started"]), (200, [], False))
            again = await self.connect(self.b, "fragile")
            ack = await again.register()
            self.assertEqual((ack["type"], ack["data"]["x"]), ("RegisterPlayerAck", 100))
            control = await self.connect(self.b, "fragile", "control", ann)
            self.assertEqual((await control.start_game())["type"], "StartGameAck")
            await again.wait_for_type("StartGameOrder")
            self.assertEqual(await self.b.stop(), 0, self.b.text())

        return ensureDeferred(scenario())

    def test_owner_shut_down(self) -> None:
        """
        The node running an arena (A) is stopped with SIGTERM: the sockets attached to the
        arena from B are closed with 1000 "the arena's node is shutting down: connect
        again", A's own with 4012, and A gives up the lease on its way out (it does not
        wait for the TTL), so a bot connecting again to B plays in the arena at once, run
        by B.
        """

        async def scenario() -> None:
            ann = await self.user("ann")
            status, _ = await http_json(
                "POST", self.a.url("/api/arenas/"),
                {"id": "calm", "config": {"spawn_points": [[100, 100, 0], [300, 100, 0]]}},
                token=ann)
            self.assertEqual(status, 201)
            remote = [await self.connect(self.b, "calm"),
                      await self.connect(self.b, "calm", "control", ann)]
            local = await self.connect(self.a, "calm")
            for bot in (remote[0], local):
                self.assertEqual((await bot.register())["type"], "RegisterPlayerAck")
            owner = await self.redis.get("gp:arena:calm:lease")
            self.assertIsNotNone(owner)

            self.assertEqual(await self.a.stop(), 0, self.a.text())
            self.assertNotEqual(await self.redis.get("gp:arena:calm:lease"), owner)
            for socket in remote:
                self.assertEqual(await socket.closed,
                                 (1000, "the arena's node is shutting down: connect again"))
            self.assertEqual(await local.closed, (4012, "server shutting down"))

            again = await self.connect(self.b, "calm")
            ack = await again.register()
            self.assertEqual((ack["type"], ack["data"]["x"]), ("RegisterPlayerAck", 100))
            status, seen = await http_json("GET", self.b.url("/api/arenas/calm/"), token=ann)
            self.assertEqual((status, seen["players"]), (200, [ack["data"]["id"]]))
            self.assertEqual(await self.b.stop(), 0, self.b.text())

        return ensureDeferred(scenario())

    def test_redis_outage_refuses_sockets_on_other_nodes(self) -> None:
        """
        With Redis down, a socket connecting to B for an arena that A runs is sent
        InvalidCommandError "the arena's node cannot be reached; try again" and closed
        with 4011 and that reason; A keeps running the arena for its own sockets.
        """

        async def scenario() -> None:
            ann = await self.user("ann")
            status, _ = await http_json("POST", self.a.url("/api/arenas/"), {"id": "far"},
                                        token=ann)
            self.assertEqual(status, 201)
            local = await self.connect(self.a, "far")
            await self.redis.stop()

            refused = await self.connect(self.b, "far")
            reason = "the arena's node cannot be reached; try again"
            self.assertEqual(await refused.wait_for_type("InvalidCommandError"),
                             {"type": "InvalidCommandError", "data": {"reason": reason}})
            self.assertEqual(await refused.closed, (4011, reason))
            self.assertEqual((await local.register())["type"], "RegisterPlayerAck")

        return ensureDeferred(scenario())
