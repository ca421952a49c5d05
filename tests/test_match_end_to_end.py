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
        """
        Every refusal of the connection phase, with its exact frame and close code, in
        DESIGN.md's order (authentication first, then the query string, the match, the
        host check, the role check).
        """
        bad_key = {"error": "bad key in query string. expected: role", "code": 7}
        bad_value = {"error": "bad value in query string. expected: [spectator, host, "
                              "challenger]", "code": 7}
        unauthenticated = {"error": "unauthenticated user, please send auth token", "code": 6}
        no_match = {"error": "non existent requested match", "code": 5}
        not_host = {"error": "trying to join a match as host which you did not start", "code": 8}
        taken = {"error": "trying to join a match while already in another match or the match "
                          "is full", "code": 9}

        async def check() -> None:
            hana, cole, sam = await self.user("hana"), await self.user("cole"), await self.user("sam")
            match_id = (await RestClient(reactor, self.server.http, hana).create_match())["id"]
            holder = await self.connect(cole, match_id, "challenger")
            self.assertEqual(await self.frame(holder), SUCCESS)
            cases = [
                # unauthenticated beats a bad query string and an unknown match
                (None, 424242, "?role=nobody&x=1", unauthenticated, 4001),
                (cole, match_id, "?role=host&x=1", bad_key, 4000),
                (cole, match_id, "?team=host", bad_key, 4000),
                (cole, match_id, "", bad_key, 4000),
                # a bad query string beats an unknown match
                (cole, 424242, "?role=referee", bad_value, 4000),
                (cole, 424242, "?role=host", no_match, 4004),
                (cole, match_id, "?role=host", not_host, 1000),
                (sam, match_id, "?role=challenger", taken, 1000),  # the slot is cole's
                (cole, match_id, "?role=spectator", taken, 1000),  # cole holds a role
            ]
            for token, target, query, frame, close in cases:
                socket = await self.connect(token, target, None, query)
                self.assertEqual(await self.frame(socket), frame, query)
                self.assertEqual((await socket.closed)[0], close, query)

        return ensureDeferred(check())

    def test_lobby_errors(self) -> Deferred[None]:
        """
        Before the start: a frame without command, a start before the challenger is
        ready, and any challenger command after ready each get the spec's error; the
        match then starts normally.
        """

        async def check() -> None:
            hana, cole = await self.user("hana"), await self.user("cole")
            match_id = (await RestClient(reactor, self.server.http, hana).create_match())["id"]
            host = await self.connect(hana, match_id, "host")
            self.assertEqual(await self.frame(host), SUCCESS)
            host.send({"hello": 1})
            await host.wait_for(lambda f: f == {"error": "no command sent", "code": 2},
                                FRAME_TIMEOUT)
            host.command("start_match")  # nobody there yet
            await host.wait_for(lambda f: f == {"error": "challenger not ready", "code": 3},
                                FRAME_TIMEOUT)
            challenger = await self.connect(cole, match_id, "challenger")
            self.assertEqual(await self.frame(challenger), SUCCESS)
            host.command("start_match")  # there, not ready
            await host.wait_for(lambda f: f == {"error": "challenger not ready", "code": 3},
                                FRAME_TIMEOUT)
            challenger.command("ready")
            await challenger.wait_for(lambda f: f.get("challenger_ready") is True, FRAME_TIMEOUT)
            challenger.command("ready")
            challenger.command("up")
            for _ in range(2):
                self.assertEqual(await self.frame(challenger),
                                 {"error": "invalid command", "code": 2})
            host.command("start_match")
            self.assertEqual(await host.wait_for_type("init", FRAME_TIMEOUT), INIT)
            self.assertEqual(await challenger.wait_for_type("init", FRAME_TIMEOUT), INIT)

        return ensureDeferred(check())

    def test_malformed_input_mid_game(self) -> Deferred[None]:
        """
        A binary frame, invalid JSON, a list and a non-string command each get
        "invalid command", a valid command gets no reply; a 100 KiB frame closes that
        socket with 1009; the game goes on for the host all along.
        """

        async def check() -> None:
            tokens, match_id, host, challenger = await self.started_match()
            await challenger.wait_for_type("status", FRAME_TIMEOUT)
            challenger.keep_frames = False  # statuses are not of interest now
            errors: list[Any] = []
            five: Deferred[None] = Deferred()

            def on_frame(frame: Any) -> None:
                if "error" in frame:
                    errors.append(frame)
                    if len(errors) == 5:
                        five.callback(None)

            challenger.on_frame = on_frame
            challenger.send_raw(b"\x00\x01", binary=True)
            challenger.send_raw(b"{nope")
            challenger.send_raw(b"[1, 2]")
            challenger.send({"command": 5})
            challenger.command("up")  # valid: no reply
            challenger.send({})  # a marker with an error of its own, after up's (if any)
            await five.addTimeout(FRAME_TIMEOUT, reactor)
            self.assertEqual(errors, [{"error": "invalid command", "code": 2}] * 4
                             + [{"error": "no command sent", "code": 2}])
            challenger.send_raw(b'{"command": "' + b"u" * (100 * 1024) + b'"}')
            self.assertEqual((await challenger.closed)[0], 1009)
            before = (await host.wait_for_type("status", FRAME_TIMEOUT))["match_time"]
            after = await host.wait_for(lambda f: f.get("match_time", -1) > before, 3.0)
            self.assertEqual(after["message_type"], "status")

        return ensureDeferred(check())
