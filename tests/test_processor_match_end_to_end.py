"""
Programs that play Pong, end to end: a real C{twistd -n gameproto} as root, real
interpreters in the isolated sandbox, the processor's match engine, and a human host on a
real match WebSocket.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred

from gameproto.client import match as match_client
from gameproto.client.base import JSONClient, open_client
from tests.nodes import http_json
from tests.processor_support import interpreter
from tests.pong_support import HumanHost, example_bot
from tests.processor_node import ProcessorEndToEndTestCase

class MatchEngineEndToEndTestCase(ProcessorEndToEndTestCase):
    #: A whole match lasts about a minute: more engine wait than the default 60 s.
    node_options = ("--processor-engine-wait-limit", "300")

    async def hosted_match(self) -> tuple[int, HumanHost, str]:
        """A match of hana's, hana on its host WebSocket; cole's token."""
        hana = await self.sign_up("hana")
        cole = await self.sign_up("cole")
        status, match = await http_json("POST", self.node.url("/api/ongoing_matches/"), {},
                                        token=hana)
        self.assertEqual(status, 201)
        socket = await match_client.connect(reactor, self.node.ws_url(""), hana, match["id"],
                                            "host")
        self.sockets.append(socket)
        return match["id"], HumanHost(socket), cole

    async def elo(self, username: str) -> int:
        status, user = await http_json("GET", self.node.url(f"/api/users/{username}/"),
                                       token=self.token)
        self.assertEqual(status, 200)
        return int(user["elo"])


class PythonBotBeatsHumanTests(MatchEngineEndToEndTestCase):
    timeout = 240

    async def test_bot_beats_a_host_who_never_moves(self) -> None:
        """
        The Python example bot takes the challenger seat, readies, and plays the match the
        human host starts to the end, winning 5 to nothing: the end frame and the REST API
        show the Elo of both changed by 16 (two players at 1000); the program printed the
        end frame it read and exited by itself; nothing was relayed to the processor client;
        the match's replay is the frames the host saw.
        """
        interpreter("python")
        match_id, host, cole = await self.hosted_match()
        ended = host.when(lambda f: f.get("message_type") == "end")
        processor = await self.connect(cole)
        outcome = await processor.run("python", example_bot("python"), engine="match",
                                      match=match_id, role="challenger", timeout=200)
        end = await ended
        self.assertEqual(outcome.errors(), [])
        self.assertEqual(outcome.end["exit_code"], 0, outcome.output)
        self.assertEqual(outcome.commands, [])
        self.assertEqual((end["id"], end["winner"], end["loser"]), (match_id, "cole", "hana"))
        self.assertEqual((end["winner_score"], end["loser_score"]), (5, 0))
        self.assertEqual((end["winner_elo_before_match"], end["winner_elo_after_match"]),
                         (1000, 1016))
        self.assertEqual((end["loser_elo_before_match"], end["loser_elo_after_match"]),
                         (1000, 984))
        self.assertEqual((await self.elo("cole"), await self.elo("hana")), (1016, 984))
        printed, frames_read = outcome.stdout[-2:]
        kind, _, frame = printed.partition(" ")
        self.assertEqual(kind, "end")
        self.assertEqual(json.loads(frame), end)
        statuses = sum(1 for f in host.frames if f.get("message_type") == "status")
        read = int(frames_read.rpartition(" ")[2])
        self.assertTrue(0 < read <= statuses, (read, statuses))
        self.assertEqual(
            [f["left_paddle_y"] for f in host.frames if f.get("message_type") == "status"],
            [0.5] * statuses)  # the host never moved
        # The match's replay holds the frames the host saw, from init to the end.
        status, replay = await http_json(
            "GET", self.node.url(f"/api/completed_matches/{match_id}/replay/"), token=cole)
        self.assertEqual(status, 200)
        self.assertFalse(replay["truncated"])
        played = [f for f in host.frames if f.get("message_type") in ("init", "status", "end")]
        self.assertEqual([json.loads(f["frame"]) for f in replay["frames"]], played)


class MatchmadeBotTests(MatchEngineEndToEndTestCase):
    timeout = 120

    async def test_bot_matchmade_against_a_human(self) -> None:
        """
        A human queues through the REST API and listens on /ws/matchmaking/; the Python
        example bot, run without a seat, queues through the engine's Matchmake: the two are
        paired, the human (who waited longer) hosts, the bot takes the challenger seat it
        was given and readies, and once the host starts it plays.
        """
        interpreter("python")
        hana = await self.sign_up("hana")
        cole = await self.sign_up("cole")
        status, ticket = await http_json("POST", self.node.url("/api/matchmaking/"), {},
                                         token=hana)
        self.assertEqual((status, ticket["state"]), (201, "waiting"))
        listener = await open_client(reactor, self.node.ws_url("/ws/matchmaking/"), JSONClient,
                                     hana)
        self.sockets.append(listener)
        processor = await self.connect(cole)
        running = ensureDeferred(
            processor.run("python", example_bot("python"), engine="match", timeout=100))
        matched = await listener.next_message(timeout=60)
        self.assertEqual((matched["type"], matched["role"]), ("matched", "host"))
        socket = await match_client.connect(reactor, self.node.ws_url(""), hana,
                                            matched["match_id"], "host")
        self.sockets.append(socket)
        host = HumanHost(socket)
        moved = await host.when(lambda f: f.get("message_type") == "status"
                                and f["right_paddle_y"] != 0.5)
        self.assertTrue(host.started)
        processor.stop()
        outcome = await running
        self.assertEqual(outcome.errors(), [], outcome.output)
        self.assertNotEqual(moved["right_paddle_y"], 0.5)
        status, match = await http_json(
            "GET", self.node.url(f"/api/ongoing_matches/{matched['match_id']}/"), token=hana)
        self.assertEqual((status, match["host"], match["challenger"]), (200, "hana", "cole"))


class ExampleBotTestsMixin:
    """Each language's example bot takes the challenger seat and plays (for a moment)."""

    language: str

    async def test_example_bot_plays(self: Any) -> None:
        """
        The example bot readies, and once the host starts it moves its paddle after the
        ball (the first serve goes down toward it); stopped by its client, it ends without
        an error.
        """
        interpreter(self.language)
        match_id, host, cole = await self.hosted_match()
        moved = host.when(lambda f: f.get("message_type") == "status"
                          and f["right_paddle_y"] > 0.55)
        processor = await self.connect(cole)

        def stop(frame: dict[str, Any]) -> dict[str, Any]:
            processor.stop()
            return frame

        moved.addCallback(stop)
        outcome = await processor.run(self.language, example_bot(self.language),
                                      engine="match", match=match_id, role="challenger")
        frame = await moved
        self.assertEqual(outcome.errors(), [], outcome.output)
        self.assertIsNotNone(outcome.end)
        self.assertTrue(host.started)
        self.assertGreater(frame["ball_y"], 0.5)


class PythonExampleBotTests(ExampleBotTestsMixin, MatchEngineEndToEndTestCase):
    language = "python"


class JavaScriptExampleBotTests(ExampleBotTestsMixin, MatchEngineEndToEndTestCase):
    language = "javascript"


class RubyExampleBotTests(ExampleBotTestsMixin, MatchEngineEndToEndTestCase):
    language = "ruby"


class PHPExampleBotTests(ExampleBotTestsMixin, MatchEngineEndToEndTestCase):
    language = "php"
