"""
A whole gameproto server mounted below a prefix of another application's tree
(C{root.putChild(b"game", server.root)}, docs/embedding.md): every endpoint reads its
path relative to its own resource, so each works under C{/game/} as it does at C{/}.

In memory on a Clock for the match handshake and the tree's own pages; end to end with a
real process (tests/embedded_app.py) and the real clients of each protocol.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.static import Data

from gameproto import web, wire
from gameproto.client import arena, match, processor
from gameproto.client.rest import RestClient
from gameproto.testing import WebSocketClient, request
from tests.embedded_app import APP_PAGE, GAME_PAGE
from tests.matchsupport import MatchTestCase, read
from tests.nodes import ServerProcess, stop_on_cleanup
from tests.support import INTEROP, npm_ci, require_tool

ROOT = Path(__file__).parent.parent
SUCCESS = {"status": "success", "code": 0}


class PrefixInMemoryTests(MatchTestCase):
    """The server's tree at /game of an application's tree, on a Clock."""

    def setUp(self) -> None:
        super().setUp()
        app_root = Resource()
        app_root.putChild(b"game", self.server.root)
        self.site = web.make_site(app_root, self.clock)

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Token {self.token(user)}"}

    def test_match_below_a_prefix(self) -> None:
        """
        /game/ws/game/{id}/?role=host joins the match created at /game/api/ongoing_matches/,
        with and without the trailing slash: success, then the lobby.
        """
        response = request(self.site, "POST", "/game/api/ongoing_matches/", None,
                           self.headers("hana"))
        self.assertEqual(response.status, 201, response.body)
        match_id = response.json()["id"]
        host = WebSocketClient(self.site, f"/game/ws/game/{match_id}/?role=host",
                              self.headers("hana"))
        self.assertEqual(read(host).messages, [SUCCESS, self.lobby()])
        challenger = WebSocketClient(self.site, f"/game/ws/game/{match_id}?role=challenger",
                                    self.headers("cole"))
        self.assertEqual(read(challenger).messages[0], SUCCESS)

    def test_match_id_is_one_segment_below_the_endpoint(self) -> None:
        """Below a prefix too, no id, or two segments, is code 5 and close 4004."""
        match_id = self.create_match("hana")
        for path in ["/game/ws/game/?role=host", "/game/ws/game?role=host",
                     f"/game/ws/game/{match_id}/x/?role=host",
                     f"/game/ws/game/x/{match_id}/?role=host"]:
            got = read(WebSocketClient(self.site, path, self.headers("hana")))
            self.assertEqual(got.messages, [{"error": "non existent requested match", "code": 5}],
                             path)
            self.assertEqual([code for code, _ in got.closes], [4004], path)

    def test_a_page_at_the_root_of_the_tree(self) -> None:
        """
        A page mounted at "/" of the server's tree is served at /game/; /game redirects
        there (301, relative, query kept), and at a standalone server's / as well.
        """
        web.mount(self.server.root, "/", Data(b"<h1>page</h1>", "text/html"))
        self.assertEqual(request(self.site, "GET", "/game/").body, b"<h1>page</h1>")
        redirect = request(self.site, "GET", "/game")
        self.assertEqual((redirect.status, redirect.headers["location"]), (301, "./game/"))
        self.assertEqual(request(self.site, "GET", "/game?lang=fr").headers["location"],
                         "./game/?lang=fr")
        self.assertEqual(request(self.server.site, "GET", "/").body, b"<h1>page</h1>")
        # The API is unchanged by the page.
        self.assertEqual(request(self.site, "GET", "/game/healthz").json()["status"], "ok")

    def test_unknown_paths_are_json_404(self) -> None:
        """Below the prefix and on a standalone server, a path nothing serves is a JSON 404."""
        for site, path in [(self.site, "/game/nothing"), (self.server.site, "/nothing"),
                           (self.server.site, "/ws")]:
            response = request(site, "GET", path)
            self.assertEqual((response.status, response.json()), (404, {"error": "not found"}),
                             path)


class PrefixEndToEndTests(TestCase):
    """
    tests/embedded_app.py, a real process: the application's page at /, the whole server
    at /game/, driven by each protocol's real client.
    """

    timeout = 120

    def setUp(self) -> Deferred[None]:
        self.app = stop_on_cleanup(self, ServerProcess(
            [sys.executable, "-m", "tests.embedded_app"], cwd=str(ROOT)))
        self.sockets: list[Any] = []
        self.addCleanup(self._close_sockets)
        return self.app.start().addCallback(lambda _: None)

    def _close_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    @property
    def http(self) -> str:
        return self.app.http + "/game"

    @property
    def ws(self) -> str:
        return self.app.ws + "/game"

    async def get(self, url: str) -> tuple[int, bytes]:
        response = await Agent(reactor).request(b"GET", url.encode())
        return response.code, await readBody(response)

    def test_every_protocol_below_game(self) -> None:
        """
        Through /game/: /healthz, REST sign-up and login, a match (host, challenger,
        spectator, up to the game's first frames), the chat with socket.io-client (path
        /game/socket.io/, polling and WebSocket), an arena player and controller, and the
        processor's first message.  The application's own page and gameproto's page at
        /game/ are served beside them.  SIGTERM then stops the application cleanly.
        """

        async def scenario() -> None:
            self.assertEqual(await self.get(self.app.http + "/"), (200, APP_PAGE))
            self.assertEqual(await self.get(self.http + "/"), (200, GAME_PAGE))
            status, health = await self.get(self.http + "/healthz")
            self.assertEqual((status, wire.decode(health)["status"]), (200, "ok"))

            api = RestClient(reactor, self.http)
            tokens = {}
            for name in ("hana", "cole", "sam"):
                user = await api.sign_up(name, "password1")
                self.assertEqual(user["username"], name)
                tokens[name] = await api.token(name, "password1")
            self.assertEqual((await api.as_user(tokens["sam"]).user("hana"))["elo"], 1000)

            await self.check_match(api, tokens)
            await self.check_chat()
            await self.check_arena(tokens["hana"])
            await self.check_processor(tokens["cole"])

            self.assertEqual(await self.app.stop(), 0, self.app.text())
            self.assertIn("gameproto stopped", self.app.text())
            self.assertNotIn("Traceback", self.app.text())

        return ensureDeferred(scenario())

    async def check_match(self, api: RestClient, tokens: dict[str, str]) -> None:
        match_id = (await api.as_user(tokens["hana"]).create_match())["id"]
        host = await match.connect(reactor, self.ws, tokens["hana"], match_id, "host")
        challenger = await match.connect(reactor, self.ws, tokens["cole"], match_id, "challenger")
        spectator = await match.connect(reactor, self.ws, tokens["sam"], match_id, "spectator")
        self.sockets += [host, challenger, spectator]
        for socket in (host, challenger, spectator):
            self.assertEqual(await socket.next_frame(10), SUCCESS)
        challenger.command("ready")
        await host.wait_for(lambda f: f.get("challenger_ready") is True)
        host.command("start_match")
        for socket in (host, challenger, spectator):
            await socket.wait_for_type("init")
            status = await socket.wait_for_type("status")
            self.assertEqual(status["left_score"], 0)
        ongoing = await api.as_user(tokens["sam"]).ongoing_match(match_id)
        self.assertEqual((ongoing["is_started"], ongoing["spectators"]), (True, ["sam"]))

    async def check_chat(self) -> None:
        node = require_tool("node")
        await npm_ci(INTEROP, "socket.io-client")
        out, err, code = await getProcessOutputAndValue(
            node,
            [str(INTEROP / "prefixed_chat.js"), self.app.http, "/game/socket.io/",
             "room-" + uuid.uuid4().hex[:8]],
            env=dict(os.environ), path=str(INTEROP), reactor=reactor,
        )
        seen = wire.decode(out.strip().splitlines()[-1]) if out.strip() else {}
        self.assertEqual(code, 0, (seen, err.decode(errors="replace")))
        self.assertEqual(seen, {
            "registerAlice": True, "registerBob": True, "sendAck": True,
            "bobReceived": {"from": "alice", "message": "hello below a prefix"},
            "aliceTransport": "websocket", "leave": "Server",
        })

    async def check_arena(self, token: str) -> None:
        player = await arena.connect(reactor, self.ws, "default", "player", token,
                                     ignore={"RadarScanNotification"})
        controller = await arena.connect(reactor, self.ws, "default", "control", token,
                                         ignore={"GameSnapshotNotification"})
        self.sockets += [player, controller]
        ack = await player.register()
        self.assertEqual(ack["type"], "RegisterPlayerAck", ack)
        self.assertEqual(await controller.start_game(), {"type": "StartGameAck", "data": {}})
        order = await player.wait_for_type("StartGameOrder")
        self.assertEqual(order, {"type": "StartGameOrder", "data": {}})

    async def check_processor(self, token: str) -> None:
        client = await processor.connect(reactor, self.ws, token)
        self.sockets.append(client)
        first = await client.next_message(10)
        self.assertEqual((first["type"], first["message"]), ("ready", "send context"))
        client.close()
        await client.closed
