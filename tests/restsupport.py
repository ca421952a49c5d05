"""
A whole server in memory for the REST tests: memory store, a Clock, queries run at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto.server import GameprotoServer, ServerConfig
from gameproto.store.memory import MemoryStore
from gameproto.testing import HTTPResponse, request


def make_server(**config: Any) -> GameprotoServer:
    clock = Clock()
    clock.advance(1_800_000_000.25)
    return GameprotoServer(
        ServerConfig(store="memory:", **config),
        clock,
        store=MemoryStore(),
        run_in_thread=lambda f, *args: maybeDeferred(f, *args),
    )


class RESTTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = make_server()

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             headers: dict[str, str] | None = None) -> HTTPResponse:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Token {token}"
        return request(self.server.site, method, path, body, headers)

    def sign_up(self, username: str = "ann", password: str = "password1") -> HTTPResponse:
        return self.call("POST", "/api/users/sign_up/", {"username": username, "password": password})

    def token(self, username: str = "ann", password: str = "password1") -> str:
        response = self.call("POST", "/api/token/", {"username": username, "password": password})
        self.assertEqual(response.status, 200, response.body)
        return response.json()["token"]

    def assertError(self, response: HTTPResponse, status: int, field: str | None = None) -> None:
        self.assertEqual(response.status, status, response.body)
        self.assertEqual(response.headers["content-type"], "application/json")
        body = response.json()
        self.assertIsInstance(body["error"], str)
        self.assertEqual(body.get("field"), field)
