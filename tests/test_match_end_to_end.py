"""
The match protocol end to end: a real C{twistd -n gameproto} process on a fresh
SQLite file, real WebSocket clients (gameproto.client), real REST calls.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from gameproto.client import match as client
from gameproto.client.rest import RestClient
from tests.nodes import Node

SUCCESS = {"status": "success", "code": 0}
INIT = {"message_type": "init", "ball_radius": 0.02, "paddle_height": 0.13, "paddle_width": 0.02}
FRAME_TIMEOUT = 10.0


class MatchEndToEndTests(TestCase):
    timeout = 90

    def setUp(self) -> Deferred[None]:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.server = Node(
            "--store", "sqlite:" + os.path.join(directory, "gameproto.sqlite3"), cwd=directory
        )
        self.sockets: list[client.MatchClient] = []
        self.addCleanup(self._stop)
        return self.server.start().addCallback(lambda _: None)

    async def _stop_async(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)
        code = await self.server.stop()
        # A clean SIGTERM shutdown exits 0 and logs no traceback.
        self.assertEqual(code, 0, self.server.log())
        self.assertNotIn("Traceback", self.server.log())

    def _stop(self) -> Deferred[None]:
        return ensureDeferred(self._stop_async())

    async def user(self, name: str) -> str:
        api = RestClient(reactor, self.server.http)
        await api.sign_up(name, "password1")
        return await api.token(name, "password1")

    async def connect(self, token: str | None, match_id: Any, role: str | None,
                      query: str | None = None) -> client.MatchClient:
        socket = await client.connect(reactor, self.server.ws, token, match_id, role, query)
        self.sockets.append(socket)
        return socket

    async def frame(self, socket: client.MatchClient) -> Any:
        return await socket.next_frame(FRAME_TIMEOUT)

    async def started_match(self) -> tuple[dict[str, str], int, client.MatchClient, client.MatchClient]:
        tokens = {name: await self.user(name) for name in ("hana", "cole", "sam")}
        created = await RestClient(reactor, self.server.http, tokens["hana"]).create_match()
        match_id = created["id"]
        host = await self.connect(tokens["hana"], match_id, "host")
        self.assertEqual(await self.frame(host), SUCCESS)
        challenger = await self.connect(tokens["cole"], match_id, "challenger")
        self.assertEqual(await self.frame(challenger), SUCCESS)
        await host.wait_for(lambda f: f.get("challenger") == "cole", FRAME_TIMEOUT)
        challenger.command("ready")
        await host.wait_for(lambda f: f.get("challenger_ready") is True, FRAME_TIMEOUT)
        host.command("start_match")
        self.assertEqual(await host.wait_for_type("init", FRAME_TIMEOUT), INIT)
        self.assertEqual(await challenger.wait_for_type("init", FRAME_TIMEOUT), INIT)
        return tokens, match_id, host, challenger

    def test_full_game_with_elo(self) -> Deferred[None]:
        """
        Two scripted bots play to the end (the challenger steers into the top wall,
        so the host wins 5-0): both get the same end frame, then a close 1000, and
        GET /api/users/{username}/ shows the new ratings.
        """

        async def check() -> None:
            tokens, match_id, host, challenger = await self.started_match()
            challenger.on_frame = (
                lambda f: challenger.command("fup") if f.get("message_type") == "status" else None
            )
            end = await host.wait_for_type("end", 30)
            self.assertEqual(await challenger.wait_for_type("end", FRAME_TIMEOUT), end)
            self.assertEqual(
                (end["id"], end["winner"], end["loser"], end["winner_score"], end["loser_score"]),
                (match_id, "hana", "cole", 5, 0),
            )
            self.assertEqual((end["winner_elo_after_match"], end["loser_elo_after_match"]), (1016, 984))
            self.assertEqual(await host.closed, (1000, "match ended"))
            self.assertEqual((await challenger.closed)[0], 1000)
            api = RestClient(reactor, self.server.http, tokens["sam"])
            hana, cole = await api.user("hana"), await api.user("cole")
            self.assertEqual((hana["elo"], hana["ongoing_match"], hana["role"]), (1016, None, None))
            self.assertEqual(cole["elo"], 984)
            stored = await api.completed_match(match_id)
            self.assertEqual(stored, {k: v for k, v in end.items() if k != "message_type"})

        return ensureDeferred(check())

    def test_spectator_joins_mid_game(self) -> Deferred[None]:
        """A spectator joining a running game gets success, lobby and init, then statuses."""

        async def check() -> None:
            tokens, match_id, host, challenger = await self.started_match()
            await host.wait_for_type("status", FRAME_TIMEOUT)
            spectator = await self.connect(tokens["sam"], match_id, "spectator")
            self.assertEqual(await self.frame(spectator), SUCCESS)
            self.assertEqual(
                await self.frame(spectator),
                {"message_type": "lobby", "challenger": "cole", "challenger_ready": True,
                 "spectators": 1},
            )
            self.assertEqual(await self.frame(spectator), INIT)
            self.assertEqual((await self.frame(spectator))["message_type"], "status")
            spectator.command("up")  # ignored: no reply, the game goes on
            await host.wait_for(lambda f: f.get("spectators") == 1, FRAME_TIMEOUT)
            self.assertEqual((await self.frame(spectator))["message_type"], "status")

        return ensureDeferred(check())

    def test_challenger_reconnects_mid_game(self) -> Deferred[None]:
        """A challenger who drops mid-game reconnects, gets init and steers its paddle again."""

        async def check() -> None:
            tokens, match_id, host, challenger = await self.started_match()
            await challenger.wait_for_type("status", FRAME_TIMEOUT)
            challenger.close()
            await challenger.closed
            api = RestClient(reactor, self.server.http, tokens["sam"])
            self.assertEqual((await api.user("cole"))["role"], "challenger")
            again = await self.connect(tokens["cole"], match_id, "challenger")
            self.assertEqual(await self.frame(again), SUCCESS)
            self.assertEqual((await self.frame(again))["message_type"], "lobby")
            self.assertEqual(await self.frame(again), INIT)
            again.on_frame = lambda f: again.command("fdown") if f.get("message_type") == "status" else None
            low = await again.wait_for(lambda f: f.get("right_paddle_y", 0) > 0.6, FRAME_TIMEOUT)
            self.assertEqual(low["message_type"], "status")

        return ensureDeferred(check())

    def test_connection_phase_errors(self) -> Deferred[None]:
        """Unauthenticated, bad query, unknown match and a foreign host: frame then close."""

        async def check() -> None:
            hana, cole = await self.user("hana"), await self.user("cole")
            match_id = (await RestClient(reactor, self.server.http, hana).create_match())["id"]
            cases = [
                (None, match_id, "?role=host", 6, 4001),
                (cole, match_id, "?role=host&x=1", 7, 4000),
                (cole, match_id, "?role=referee", 7, 4000),
                (cole, 424242, "?role=host", 5, 4004),
                (cole, match_id, "?role=host", 8, 1000),
            ]
            for token, target, query, code, close in cases:
                socket = await self.connect(token, target, None, query)
                self.assertEqual((await self.frame(socket))["code"], code, query)
                self.assertEqual((await socket.closed)[0], close, query)

        return ensureDeferred(check())
