"""
The processor's engines across nodes: two real C{twistd -n gameproto --redis URL}
processes on one real redis-server; a program run on node B plays in an arena that node A
runs, and a controller on A sees it move; a program run on node B takes the challenger's
seat of a match hosted on node A and plays it to the end.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from gameproto.client import arena as arena_client
from gameproto.client import match as match_client
from gameproto.client import processor as client
from tests.nodes import Node, http_json, stop_on_cleanup
from tests.pong_support import HumanHost, example_bot
from tests.processor_support import interpreter, play_arena_program, require_root, run_uids


class ProcessorClusterEndToEndTests(TestCase):
    timeout = 120

    def setUp(self) -> Deferred[None]:
        require_root()  # the processor runs programs only in the isolated sandbox, as root
        self.sockets: list[Any] = []
        self.addCleanup(self._close_sockets)
        return Deferred.fromCoroutine(self._start())

    def node(self, redis_url: str, uids: range) -> Node:
        """A node of the cluster with a run directory and run uids of its own."""
        base = tempfile.mkdtemp(prefix="gameproto-e2e-runs-", dir="/tmp")
        self.addCleanup(shutil.rmtree, base, True)
        return stop_on_cleanup(self, Node(
            "--redis", redis_url, "--processor-dir", base,
            "--processor-uids", f"{uids[0]}-{uids[-1]}",
            # A whole match lasts about a minute: more engine wait than the default 60 s.
            "--processor-engine-wait-limit", "300",
        ))

    async def _start(self) -> None:
        from tests.redisserver import started_redis

        redis = await started_redis(self)
        uids = run_uids()
        half = len(uids) // 2
        self.a = self.node(redis.url, uids[half:])
        self.b = self.node(redis.url, uids[:half])
        await self.a.start()
        await self.b.start()
        status, _ = await http_json("POST", self.a.url("/api/users/sign_up/"),
                                    {"username": "ann", "password": "password1"})
        self.assertEqual(status, 201)
        status, body = await http_json("POST", self.b.url("/api/token/"),
                                       {"username": "ann", "password": "password1"})
        self.assertEqual(status, 200)
        self.token = str(body["token"])

    def _close_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    async def test_program_on_b_plays_in_arena_of_a(self) -> None:
        """
        An arena created on A runs on A.  A program run on B with the arena engine and that
        arena registers, is started by a controller connected to A, moves and shoots: it
        gets the arena's replies through B, and A's controller sees its player move and
        its shot fly.
        """
        status, body = await http_json(
            "POST", self.a.url("/api/arenas/"),
            {"id": "pit", "config": {"spawn_points": [[100, 100, 0], [300, 100, 0]]}},
            token=self.token)
        self.assertEqual(status, 201, body)

        async def controller_on_a() -> arena_client.ArenaClient:
            socket = await arena_client.connect(
                reactor, self.a.ws_url(""), "pit", role="control", token=self.token,
            )
            self.sockets.append(socket)
            return socket

        socket = await client.connect(reactor, self.b.ws_url(""), self.token)
        self.sockets.append(socket)
        await play_arena_program(self, socket, "pit", controller_on_a)
        status, seen = await http_json("GET", self.b.url("/api/arenas/pit/"), token=self.token)
        self.assertEqual((status, seen["players"]), (200, []))  # the run's player has left
        for node in (self.a, self.b):
            self.assertEqual(await node.stop(), 0, node.text())

    async def test_program_on_b_plays_match_hosted_on_a(self) -> None:
        """
        hana hosts a match on A and never moves; ann's program, run on B with the match
        engine, takes the challenger's seat, readies, and wins the match hana starts on A:
        both see the same end, and the result is stored once, with the Elo of both.
        """
        interpreter("python")
        status, _ = await http_json("POST", self.a.url("/api/users/sign_up/"),
                                    {"username": "hana", "password": "password1"})
        self.assertEqual(status, 201)
        status, body = await http_json("POST", self.a.url("/api/token/"),
                                       {"username": "hana", "password": "password1"})
        hana = str(body["token"])
        status, match = await http_json("POST", self.a.url("/api/ongoing_matches/"), {},
                                        token=hana)
        self.assertEqual(status, 201)
        socket = await match_client.connect(reactor, self.a.ws_url(""), hana, match["id"], "host")
        self.sockets.append(socket)
        host = HumanHost(socket)
        ended = host.when(lambda f: f.get("message_type") == "end")
        processor = await client.connect(reactor, self.b.ws_url(""), self.token)
        self.sockets.append(processor)
        outcome = await processor.run("python", example_bot("python"), engine="match",
                                      match=match["id"], role="challenger", timeout=200)
        end = await ended
        self.assertEqual(outcome.errors(), [])
        self.assertEqual(outcome.end["exit_code"], 0, outcome.output)
        self.assertEqual((end["winner"], end["loser"], end["winner_score"]), ("ann", "hana", 5))
        kind, _, printed = outcome.stdout[-2].partition(" ")
        self.assertEqual((kind, json.loads(printed)), ("end", end))
        status, completed = await http_json(
            "GET", self.b.url(f"/api/completed_matches/{match['id']}/"), token=self.token)
        self.assertEqual(status, 200)
        self.assertEqual((completed["winner"], completed["loser"]), ("ann", "hana"))
        status, ann = await http_json("GET", self.a.url("/api/users/ann/"), token=hana)
        self.assertEqual((status, ann["elo"]), (200, end["winner_elo_after_match"]))
        for node in (self.a, self.b):
            self.assertEqual(await node.stop(), 0, node.text())

    test_program_on_b_plays_match_hosted_on_a.timeout = 240  # type: ignore[attr-defined]
