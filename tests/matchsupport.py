"""
A gameproto server in memory for match tests: a Clock, a memory store, users with
tokens written straight into the store, and WebSocket clients of gameproto.testing.
"""

from __future__ import annotations

import itertools
import struct
from datetime import datetime, timezone
from typing import Any

import attrs
import txaio
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import wire
from gameproto.auth import token_digest
from gameproto.server import GameprotoServer, ServerConfig
from gameproto.store import TokenRecord, User
from gameproto.store.memory import MemoryStore
from gameproto.testing import CLOSE, TEXT, HTTPResponse, WebSocketClient, request

START = 1_800_000_000.0
_ports = itertools.count(41000)


@attrs.define
class Received:
    """What a client got since the last read: JSON messages and close frames."""

    messages: list[Any]
    closes: list[tuple[int, str]]


def read(ws: WebSocketClient) -> Received:
    messages, closes = [], []
    for opcode, payload in ws.frames():
        if opcode == TEXT:
            messages.append(wire.decode(payload))
        elif opcode == CLOSE:
            code = struct.unpack("!H", payload[:2])[0]
            closes.append((code, payload[2:].decode("utf-8")))
    ws.forget_read()  # long games write megabytes
    return Received(messages, closes)


def non_status(messages: list[Any]) -> list[Any]:
    return [m for m in messages if m.get("message_type") != "status"]


class MatchTestCase(SynchronousTestCase):
    """A started server on a Clock with a memory store; C{self.server.matches} is the service."""

    config = ServerConfig(store="memory:", port=None)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.patch(txaio.config, "loop", self.clock)
        self.store = self.make_store()
        self.server = GameprotoServer(
            self.config,
            self.clock,
            store=self.store,
            run_in_thread=lambda f, *args: maybeDeferred(f, *args),
        )
        self.service = self.server.matches
        self.server.startService()
        self.successResultOf(self.server.whenStarted())
        self.addCleanup(self.server.stopService)
        self._tokens: dict[str, str] = {}

    def make_store(self) -> MemoryStore:
        """The store the server is given (a test may give one that behaves otherwise)."""
        return MemoryStore()

    def token(self, username: str) -> str:
        """A token of C{username}, created with the user the first time."""
        if username not in self._tokens:
            now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
            self.successResultOf(self.store.create_user(User(username, "x", now)))
            key = f"{len(self._tokens) + 1:040x}"
            self.successResultOf(self.store.add_token(TokenRecord(token_digest(key), username, now)))
            self._tokens[username] = key
        return self._tokens[username]

    def call(self, method: str, path: str, user: str | None = None, body: Any = None) -> HTTPResponse:
        headers = {} if user is None else {"Authorization": f"Token {self.token(user)}"}
        return request(self.server.site, method, path, body, headers)

    def create_match(self, host: str = "hana") -> int:
        response = self.call("POST", "/api/ongoing_matches/", host)
        self.assertEqual(response.status, 201, response.body)
        return response.json()["id"]

    def connect(
        self,
        match_id: int | str,
        role: str | None = "host",
        user: str | None = "hana",
        query: str | None = None,
        slash: bool = True,
    ) -> WebSocketClient:
        if query is None:
            query = "" if role is None else f"?role={role}"
        path = f"/ws/game/{match_id}{'/' if slash else ''}{query}"
        headers = {} if user is None else {"Authorization": f"Token {self.token(user)}"}
        return WebSocketClient(self.server.site, path, headers, port=next(_ports))

    def joined(self, match_id: int, role: str, user: str) -> WebSocketClient:
        """Connect and check the success frame came first."""
        ws = self.connect(match_id, role, user)
        got = read(ws)
        self.assertEqual(got.messages[:1], [{"status": "success", "code": 0}])
        self.assertEqual(got.closes, [])
        return ws

    def lobby(self, challenger: str | None = None, ready: bool = False, spectators: int = 0) -> Any:
        return {
            "message_type": "lobby",
            "challenger": challenger,
            "challenger_ready": ready,
            "spectators": spectators,
        }

    def started_match(self) -> tuple[int, WebSocketClient, WebSocketClient]:
        """A running match of hana (host) against cole (challenger), frames read."""
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        challenger = self.joined(match_id, "challenger", "cole")
        challenger.send_json({"command": "ready"})
        host.send_json({"command": "start_match"})
        read(host), read(challenger)
        return match_id, host, challenger

    def where(self, username: str) -> tuple[int | None, str | None]:
        """The match and role C{username} holds, as the REST API reads them."""
        return self.successResultOf(self.service.whereabouts(username))

    def tick(self, n: int = 1) -> None:
        """Run C{n} ticks.  A hair over the tick each time: at 1.8e9 s a float has
        a 2.4e-7 s resolution, and a sum of rounded ticks could fall just short."""
        for _ in range(n):
            self.clock.advance(self.service.tick + 1e-6)
