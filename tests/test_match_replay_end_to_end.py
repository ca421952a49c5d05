"""
Replays end to end: a whole match between two real WebSocket clients on a real
C{twistd -n gameproto} node, watched by a spectator that records every frame's
bytes as they arrive; afterwards the replay, over REST and streamed on the match
endpoint, holds exactly those frames.  On one node with SQLite, and on two nodes
sharing a real redis-server (played on one, replayed from the other).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from gameproto import wire
from gameproto.client import match as client
from gameproto.client.base import open_client
from gameproto.client.rest import RestClient
from tests.nodes import Node, http_json, stop_on_cleanup

SUCCESS = {"status": "success", "code": 0}
FRAME_TIMEOUT = 10.0
GAME_FRAMES = (b'{"message_type":"init"', b'{"message_type":"status"',
               b'{"message_type":"end"')


class RecordingClient(client.MatchClient):
    """A match client that also keeps every text frame's bytes, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self.raw.append(payload)
        super().onMessage(payload, isBinary)


class ReplayEndToEndTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.sockets: list[client.MatchClient] = []
        self.addCleanup(self._drop_sockets)

    def _drop_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    async def user(self, node: Node, name: str) -> str:
        api = RestClient(reactor, node.http)
        await api.sign_up(name, "password1")
        return await api.token(name, "password1")

    async def connect(self, node: Node, token: str, match_id: int, query: str,
                      protocol: type[client.MatchClient] = client.MatchClient) -> Any:
        socket = await open_client(reactor, client.match_url(node.ws, match_id, None, query),
                                   protocol, token)
        self.sockets.append(socket)
        return socket

    async def play(self, node: Node, watched_from: Node | None = None
                   ) -> tuple[dict[str, str], int, list[bytes]]:
        """
        A whole match on C{node}: the challenger steers into the top wall, the host
        wins 5-0; a spectator (on C{watched_from}, C{node} by default), there from
        before the start, records every frame.  The game frames the spectator got,
        as bytes.
        """
        watched_from = watched_from or node
        tokens = {name: await self.user(node, name) for name in ("hana", "cole", "sam")}
        match_id = (await RestClient(reactor, node.http, tokens["hana"]).create_match())["id"]
        host = await self.connect(node, tokens["hana"], match_id, "?role=host")
        challenger = await self.connect(node, tokens["cole"], match_id, "?role=challenger")
        spectator = await self.connect(watched_from, tokens["sam"], match_id, "?role=spectator",
                                       RecordingClient)
        for socket in (host, challenger, spectator):
            self.assertEqual(await socket.next_frame(FRAME_TIMEOUT), SUCCESS)
        challenger.command("ready")
        await host.wait_for(lambda f: f.get("challenger_ready") is True, FRAME_TIMEOUT)
        host.command("start_match")
        challenger.keep_frames = host.keep_frames = False
        challenger.on_frame = (
            lambda f: challenger.command("fup") if f.get("message_type") == "status" else None
        )
        end = await spectator.wait_for_type("end", 60)
        self.assertEqual((end["winner"], end["winner_score"], end["loser_score"]),
                         ("hana", 5, 0))
        self.assertEqual((await spectator.closed)[0], 1000)
        live = [raw for raw in spectator.raw if raw.startswith(GAME_FRAMES)]
        # init, a status for every tick, the end
        self.assertTrue(live[0].startswith(GAME_FRAMES[0]))
        self.assertTrue(live[-1].startswith(GAME_FRAMES[2]))
        self.assertGreater(len(live), 500)
        return tokens, match_id, live

    async def check_replay(self, node: Node, token: str, match_id: int,
                           live: list[bytes]) -> None:
        """The replay read from C{node}, over REST and streamed, is C{live} exactly."""
        status, body = await http_json(
            "GET", node.url(f"/api/completed_matches/{match_id}/replay/"), token=token)
        self.assertEqual(status, 200, body)
        self.assertEqual([f["frame"].encode() for f in body["frames"]], live)
        times = [f["ms"] for f in body["frames"]]
        self.assertEqual(times, sorted(times))
        self.assertEqual((body["id"], body["tick_ms"], body["truncated"], body["duration_ms"]),
                         (match_id, 10, False, times[-1]))
        # The whole match at 16 times real speed, on the match endpoint.
        viewer = await self.connect(node, token, match_id, "?role=spectator&speed=16",
                                    RecordingClient)
        self.assertEqual((await viewer.closed)[0], 1000)
        streamed = viewer.raw
        self.assertEqual([wire.decode(m) for m in streamed[:2]], [
            SUCCESS,
            {"message_type": "replay", "id": match_id, "position_ms": 0,
             "duration_ms": times[-1], "speed": 16, "truncated": False},
        ])
        self.assertEqual(streamed[2:-1], live)
        self.assertEqual(wire.decode(streamed[-1]), {"message_type": "replay_end", "id": match_id})

    def test_one_node_with_sqlite(self) -> None:
        """On one node with SQLite, the replay is exactly what the spectator saw."""

        async def check() -> None:
            directory = os.path.abspath(self.mktemp())
            os.makedirs(directory)
            node = stop_on_cleanup(self, Node(
                "--store", "sqlite:" + os.path.join(directory, "gameproto.sqlite3"),
                cwd=directory))
            await node.start()
            tokens, match_id, live = await self.play(node)
            await self.check_replay(node, tokens["cole"], match_id, live)
            self.assertEqual(await node.stop(), 0, node.log())
            self.assertNotIn("Traceback", node.log())

        return ensureDeferred(check())

    def test_two_nodes_sharing_redis(self) -> None:
        """
        Played on node A, watched live from node B (its frames relayed through Redis),
        replayed from node B: the same frames, byte for byte.
        """

        async def check() -> None:
            from tests.redisserver import started_redis

            redis = await started_redis(self)
            a = stop_on_cleanup(self, Node("--redis", redis.url))
            b = stop_on_cleanup(self, Node("--redis", redis.url))
            await a.start()
            await b.start()
            tokens, match_id, live = await self.play(a, watched_from=b)
            await self.check_replay(b, tokens["sam"], match_id, live)
            for node in (a, b):
                self.assertEqual(await node.stop(), 0, node.log())
                self.assertNotIn("Traceback", node.log())

        return ensureDeferred(check())
