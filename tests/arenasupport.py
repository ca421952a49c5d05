"""
What the arena tests share: a whole server in memory with two users signed up, a socket
that records what an arena does to it, and a lease table that can be cut off.
"""

from __future__ import annotations

from typing import Any

import txaio
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import redis
from gameproto.arena.arena import Frame
from gameproto.arena.service import DEFAULT_ARENA
from gameproto.ownership import MemoryLeaseTable
from gameproto.testing import WebSocketClient, request
from tests.restsupport import make_server

TICK = 0.02  # the default tick_ms, in seconds


def types(messages: list[Any]) -> list[str]:
    return [m["type"] for m in messages]


def without(messages: list[Any], *kinds: str) -> list[Any]:
    return [m for m in messages if m["type"] not in kinds]


class ArenaServerTestCase(SynchronousTestCase):
    """A whole server (memory store) on a Clock, with users ann and bob signed up."""

    def setUp(self) -> None:
        self.server = make_server(port=None, **self.server_options())
        self.clock: Clock = self.server.reactor
        self.patch(txaio.config, "loop", self.clock)
        self.server.startService()
        self.addCleanup(self.server.stopService)
        self.tokens = {name: self.sign_up(name) for name in ("ann", "bob")}
        self.next_port = 41000

    def server_options(self) -> dict[str, Any]:
        return {}

    def sign_up(self, name: str) -> str:
        site = self.server.site
        response = request(site, "POST", "/api/users/sign_up/",
                           {"username": name, "password": "password1"})
        self.assertEqual(response.status, 201, response.body)
        response = request(site, "POST", "/api/token/", {"username": name, "password": "password1"})
        return str(response.json()["token"])

    def connect(self, path: str, user: str | None = None) -> WebSocketClient:
        headers = {"Authorization": f"Token {self.tokens[user]}"} if user else {}
        self.next_port += 1
        ws = WebSocketClient(self.server.site, path, headers, port=self.next_port)
        self.assertIn(b" 101 ", ws.handshake.split(b"\r\n")[0] + b" ")
        return ws

    def player(self, arena: str = DEFAULT_ARENA, user: str | None = None) -> WebSocketClient:
        return self.connect(f"/ws/arena/{arena}/player", user)

    def controller(self, arena: str = DEFAULT_ARENA, user: str | None = "ann") -> WebSocketClient:
        return self.connect(f"/ws/arena/{arena}/control", user)

    def tick(self, count: int = 1) -> None:
        for _ in range(count):
            self.clock.advance(TICK)

    def create_arena(self, arena_id: str, config: dict[str, Any], user: str = "ann") -> Any:
        response = request(self.server.site, "POST", "/api/arenas/",
                           {"id": arena_id, "config": config},
                           {"Authorization": f"Token {self.tokens[user]}"})
        self.assertEqual(response.status, 201, response.body)
        return response.json()

    def register(self, ws: WebSocketClient) -> dict[str, Any]:
        ws.send_json({"type": "RegisterPlayerCommand"})
        self.tick()
        replies = without(ws.json_messages(), "RadarScanNotification")
        self.assertEqual(types(replies)[0], "RegisterPlayerAck", replies)
        return replies[0]


class RecordingSocket:
    """An ArenaSocket that records what the arena does to it."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.closed: list[str] = []
        self.replaced_count = 0

    def deliver(self, frame: Frame) -> None:
        self.frames.append(frame)

    def arenaClosed(self, reason: str) -> None:
        self.closed.append(reason)

    def replaced(self) -> None:
        self.replaced_count += 1

    def types(self) -> list[str]:
        kinds = [frame.type for frame in self.frames]
        self.frames.clear()
        return kinds


class CutOffLeaseTable:
    """
    A L{MemoryLeaseTable} (held to the lease tables' contract with Redis in
    tests/test_ownership.py) that can be cut off like an unreachable Redis: while
    C{available} is false every call fails with L{RedisUnavailable}.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.table = MemoryLeaseTable(clock)
        self.available = True

    def _call(self, method: str, *args: Any) -> Deferred[Any]:
        if not self.available:
            return fail(redis.RedisUnavailable("redis: unavailable (simulated)"))
        result: Deferred[Any] = getattr(self.table, method)(*args)
        return result

    def renew(self, key: str, node: str, ttl_ms: int) -> Deferred[bool]:
        return self._call("renew", key, node, ttl_ms)

    def release(self, key: str, node: str) -> Deferred[bool]:
        return self._call("release", key, node)

    def read(self, key: str) -> Deferred[tuple[str | None, int]]:
        return self._call("read", key)

    def declare_dead(self, key: str) -> Deferred[bool]:
        return self._call("declare_dead", key)

    def take_over(self, key: str, node: str, ttl_ms: int) -> Deferred[bool]:
        return self._call("take_over", key, node, ttl_ms)

    def resign(self, key: str, node: str) -> Deferred[bool]:
        return self._call("resign", key, node)
