"""
Matches across two real C{twistd -n gameproto} nodes sharing one real redis-server
(DESIGN.md §3, the match bullet), with the Autobahn match client and real REST calls.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.trial.unittest import TestCase

from gameproto.client import match as client
from gameproto.client.rest import RestClient
from tests.nodes import Node, stop_on_cleanup
from tests.support import wall_clock_ceiling

SUCCESS = {"status": "success", "code": 0}
INIT = {"message_type": "init", "ball_radius": 0.02, "paddle_height": 0.13, "paddle_width": 0.02}
ABORTED = {"message_type": "aborted", "reason": "match server lost"}
FRAME_TIMEOUT = 10.0
LEASE_TTL = 3.0


class ClusterMatchTests(TestCase):
    """A host on node A, a challenger and a spectator on node B."""

    timeout = 120

    async def two_nodes(self) -> tuple[Node, Node]:
        from tests.redisserver import started_redis

        redis = await started_redis(self)
        a = stop_on_cleanup(self, Node("--redis", redis.url))
        b = stop_on_cleanup(self, Node("--redis", redis.url))
        await a.start()
        await b.start()
        self.sockets: list[client.MatchClient] = []
        self.addCleanup(self._drop_sockets)
        return a, b

    def _drop_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    async def user(self, node: Node, name: str) -> str:
        api = RestClient(reactor, node.url(""))
        await api.sign_up(name, "password1")
        return await api.token(name, "password1")

    async def connect(self, node: Node, token: str, match_id: Any, role: str) -> client.MatchClient:
        socket = await client.connect(reactor, node.ws_url(""), token, match_id, role)
        self.sockets.append(socket)
        self.assertEqual(await socket.next_frame(FRAME_TIMEOUT), SUCCESS)
        return socket

    async def started_match(self, a: Node, b: Node) -> tuple[
            dict[str, str], int, client.MatchClient, client.MatchClient, client.MatchClient]:
        tokens = {"hana": await self.user(a, "hana"), "cole": await self.user(b, "cole"),
                  "sam": await self.user(b, "sam")}
        created = await RestClient(reactor, a.url(""), tokens["hana"]).create_match()
        match_id = created["id"]
        host = await self.connect(a, tokens["hana"], match_id, "host")
        challenger = await self.connect(b, tokens["cole"], match_id, "challenger")
        spectator = await self.connect(b, tokens["sam"], match_id, "spectator")
        # The lobby crosses nodes both ways.
        await host.wait_for(lambda f: f.get("challenger") == "cole" and f.get("spectators") == 1,
                            FRAME_TIMEOUT)
        challenger.command("ready")
        await host.wait_for(lambda f: f.get("challenger_ready") is True, FRAME_TIMEOUT)
        await spectator.wait_for(lambda f: f.get("challenger_ready") is True, FRAME_TIMEOUT)
        host.command("start_match")
        for socket in (host, challenger, spectator):
            self.assertEqual(await socket.wait_for_type("init", FRAME_TIMEOUT), INIT)
        return tokens, match_id, host, challenger, spectator

    def test_full_match_across_nodes(self) -> Deferred[None]:
        """
        The host on node A plays a whole match against a challenger on node B, watched
        by a spectator on B: the challenger's commands reach A's game (its paddle
        moves up), all three get the same end frame and a close 1000, and the
        completed match with the Elo change reads the same from both nodes.
        """

        async def scenario() -> None:
            a, b = await self.two_nodes()
            tokens, match_id, host, challenger, spectator = await self.started_match(a, b)
            challenger.on_frame = (
                lambda f: challenger.command("fup") if f.get("message_type") == "status" else None
            )
            # The challenger's commands, sent to B, move its paddle in A's game.
            await host.wait_for(lambda f: f.get("right_paddle_margin_reached") is True
                                and f.get("right_paddle_y", 1) < 0.1, FRAME_TIMEOUT)
            # Every node knows where every player is, whichever node holds the socket.
            for node in (a, b):
                api = RestClient(reactor, node.url(""), tokens["sam"])
                for name, role in [("hana", "host"), ("cole", "challenger")]:
                    user = await api.user(name)
                    self.assertEqual((user["ongoing_match"], user["role"]), (match_id, role))
            end = await host.wait_for_type("end", 40)
            self.assertEqual(await challenger.wait_for_type("end", FRAME_TIMEOUT), end)
            self.assertEqual(await spectator.wait_for_type("end", FRAME_TIMEOUT), end)
            self.assertEqual(
                (end["id"], end["winner"], end["loser"], end["winner_score"], end["loser_score"]),
                (match_id, "hana", "cole", 5, 0),
            )
            self.assertEqual((end["winner_elo_after_match"], end["loser_elo_after_match"]),
                             (1016, 984))
            for socket in (host, challenger, spectator):
                self.assertEqual((await socket.closed)[0], 1000)
            completed = {k: v for k, v in end.items() if k != "message_type"}
            for node in (a, b):
                api = RestClient(reactor, node.url(""), tokens["sam"])
                self.assertEqual(await api.completed_match(match_id), completed)
                hana, cole = await api.user("hana"), await api.user("cole")
                self.assertEqual((hana["elo"], hana["ongoing_match"], hana["role"]),
                                 (1016, None, None))
                self.assertEqual((cole["elo"], cole["ongoing_match"], cole["role"]),
                                 (984, None, None))
            for node in (a, b):
                self.assertEqual(await node.stop(), 0, node.text())
                self.assertNotIn("Traceback", node.text())

        return ensureDeferred(scenario())

    def test_owner_killed_mid_game(self) -> Deferred[None]:
        """
        Node A, which runs the game, is killed (SIGKILL) mid-game: within the lease
        TTL + 2 s the challenger and the spectator on B get the aborted frame and a
        close 1000; no Elo changes, no completed match; the roles are freed, so the
        users create and join a new match on B.
        """

        async def scenario() -> None:
            a, b = await self.two_nodes()
            tokens, match_id, host, challenger, spectator = await self.started_match(a, b)
            await challenger.wait_for_type("status", FRAME_TIMEOUT)
            await spectator.wait_for_type("status", FRAME_TIMEOUT)
            # Both waits start before the kill: each has the lease TTL from then on.
            aborts = gatherResults([
                Deferred.fromCoroutine(socket.wait_for_type("aborted", wall_clock_ceiling(LEASE_TTL)))
                for socket in (challenger, spectator)
            ])
            await a.kill()
            self.assertEqual(await aborts, [ABORTED, ABORTED])
            for socket in (challenger, spectator):
                self.assertEqual((await socket.closed)[0], 1000)
            api = RestClient(reactor, b.url(""), tokens["sam"])
            for name in ("hana", "cole", "sam"):
                user = await api.user(name)
                self.assertEqual((user["elo"], user["ongoing_match"], user["role"]),
                                 (1000, None, None), name)
            status, _ = await api.call("GET", f"/api/ongoing_matches/{match_id}/")
            self.assertEqual(status, 404)
            status, _ = await api.call("GET", f"/api/completed_matches/{match_id}/")
            self.assertEqual(status, 404)
            # Roles freed: hana hosts a new match on B, cole and sam join it.
            again = (await api.as_user(tokens["hana"]).create_match())["id"]
            host2 = await self.connect(b, tokens["hana"], again, "host")
            await self.connect(b, tokens["cole"], again, "challenger")
            await self.connect(b, tokens["sam"], again, "spectator")
            await host2.wait_for(lambda f: f.get("challenger") == "cole"
                                 and f.get("spectators") == 1, FRAME_TIMEOUT)
            self.assertEqual(await b.stop(), 0, b.text())
            self.assertNotIn("Traceback", b.text())

        return ensureDeferred(scenario())
