"""
What the arena tests share: a whole server in memory with two users signed up, a socket
that records what an arena does to it, and leases of simulated nodes on a Clock.
"""

from __future__ import annotations

from typing import Any, Callable

import txaio
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import redis
from gameproto.arena.service import DEFAULT_ARENA, Frame
from gameproto.cluster import LEASE_TTL_MS
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


class LeaseTable:
    """
    An in-memory Redis for the leases of several simulated nodes, with expiry on a Clock,
    and an C{available} switch to simulate an outage (calls fail with RedisUnavailable).
    """

    def __init__(self, clock: IReactorTime, ttl_ms: int = LEASE_TTL_MS) -> None:
        self.clock = clock
        self.ttl = ttl_ms / 1000
        self.available = True
        self._held: dict[str, tuple[str, float]] = {}

    def get(self, arena_id: str) -> str | None:
        self._check()
        entry = self._held.get(arena_id)
        if entry is None or entry[1] <= self.clock.seconds():
            self._held.pop(arena_id, None)
            return None
        return entry[0]

    def set(self, arena_id: str, node: str) -> None:
        self._held[arena_id] = (node, self.clock.seconds() + self.ttl)

    def delete(self, arena_id: str) -> None:
        self._held.pop(arena_id, None)

    def _check(self) -> None:
        if not self.available:
            raise redis.RedisUnavailable("redis: unavailable (simulated)")


class TableLeases:
    """L{ClusterLeases} of one simulated node on a shared L{LeaseTable}."""

    def __init__(self, table: LeaseTable, node_id: str) -> None:
        self.table = table
        self.node_id = node_id

    def _call(self, f: Callable[[], Any]) -> Deferred[Any]:
        try:
            return succeed(f())
        except redis.RedisUnavailable as e:
            d: Deferred[Any] = Deferred()
            d.errback(e)
            return d

    def acquire(self, arena_id: str) -> Deferred[bool]:
        def acquire() -> bool:
            if self.table.get(arena_id) is not None:
                return False
            self.table.set(arena_id, self.node_id)
            return True

        return self._call(acquire)

    def renew(self, arena_id: str) -> Deferred[bool]:
        def renew() -> bool:
            if self.table.get(arena_id) not in (None, self.node_id):
                return False
            self.table.set(arena_id, self.node_id)
            return True

        return self._call(renew)

    def release(self, arena_id: str) -> None:
        if self.table.available and self.table.get(arena_id) == self.node_id:
            self.table.delete(arena_id)

    def holder(self, arena_id: str) -> Deferred[str | None]:
        return self._call(lambda: self.table.get(arena_id))
