"""
Promises of docs/api.md that no other test states: the default ordering and page size of
C{GET /api/users/} (over an in-memory Site), and that the store holds only a token's
SHA-256, read back from the real stores of real servers (an SQLite file, a redis-server).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import datetime, timezone

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from gameproto.store import User
from tests.nodes import Node, http_json, stop_on_cleanup
from tests.restsupport import RESTTestCase


class UserListDefaultsTests(RESTTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.sign_up("reader")  # elo 1000, like every new account
        self.key = self.token("reader")

    def add_user(self, username: str, elo: int) -> None:
        joined = datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc)
        user = User(username, "not a password hash", joined, elo)
        self.successResultOf(self.server.store.create_user(user))

    def names(self, query: str = "") -> list[str]:
        response = self.call("GET", "/api/users/" + query, token=self.key)
        self.assertEqual(response.status, 200, response.body)
        return [user["username"] for user in response.json()]

    def test_default_ordering_is_minus_elo(self) -> None:
        """
        Without C{?ordering=} the list is a leaderboard: highest Elo first, ties broken by
        username (and not any of the other orderings).
        """
        for name, elo in [("erin", 900), ("carol", 1000), ("dave", 1500), ("bob", 1200),
                          ("alice", 1000)]:
            self.add_user(name, elo)
        leaderboard = ["dave", "bob", "alice", "carol", "reader", "erin"]
        self.assertEqual(self.names(), leaderboard)
        self.assertEqual(self.names("?ordering=-elo"), leaderboard)
        self.assertEqual(self.names("?ordering=elo"),
                         ["erin", "alice", "carol", "reader", "bob", "dave"])

    def test_limit_defaults_to_100(self) -> None:
        """
        Without C{?limit=} a page holds 100 users; C{?offset=100} gives the rest, and
        C{?limit=1000} (the most allowed) all of them at once.
        """
        for i in range(150):
            self.add_user(f"p{i:03}", 1001 + i)  # p149 leads, every player above reader
        first = self.names()
        self.assertEqual(first, [f"p{i:03}" for i in range(149, 49, -1)])
        self.assertEqual(len(first), 100)
        self.assertEqual(self.names("?offset=100"),
                         [f"p{i:03}" for i in range(49, -1, -1)] + ["reader"])
        self.assertEqual(len(self.names("?limit=1000")), 151)


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


class TokenStorageTests(TestCase):
    """
    "The server stores only their SHA-256": after a real server has minted tokens, the
    store's own bytes hold each token's SHA-256 and never the token, in hex or raw.
    """

    timeout = 60

    async def mint_tokens(self, node: Node) -> list[str]:
        """Sign up on C{node}, mint two tokens and check that both authenticate."""
        status, body = await http_json("POST", node.url("/api/users/sign_up/"),
                                       {"username": "ann", "password": "password1"})
        self.assertEqual(status, 201, body)
        keys = []
        for _ in range(2):
            status, body = await http_json("POST", node.url("/api/token/"),
                                           {"username": "ann", "password": "password1"})
            self.assertEqual(status, 200, body)
            keys.append(body["token"])
        for key in keys:
            status, _ = await http_json("GET", node.url("/api/users/ann/"), token=key)
            self.assertEqual(status, 200)
        return keys

    def assertOnlyDigests(self, contents: bytes, keys: list[str]) -> None:
        for key in keys:
            self.assertIn(sha256_hex(key).encode(), contents)
            for form in (key.encode(), key.upper().encode(), bytes.fromhex(key)):
                self.assertNotIn(form, contents)

    def test_sqlite_file(self) -> Deferred[None]:
        """
        With C{--store sqlite:PATH}: the database files (WAL included) hold the SHA-256 of
        each token minted and not the token; the tokens table has one row per token, keyed
        by its SHA-256.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "gameproto.sqlite3")

        def files() -> bytes:
            contents = b""
            for name in sorted(os.listdir(directory)):
                with open(os.path.join(directory, name), "rb") as f:
                    contents += f.read()
            return contents

        async def scenario() -> None:
            node = stop_on_cleanup(self, Node("--store", f"sqlite:{path}"))
            await node.start()
            keys = await self.mint_tokens(node)
            self.assertOnlyDigests(files(), keys)  # while it runs: the WAL too
            self.assertEqual(await node.stop(), 0, node.text())
            self.assertOnlyDigests(files(), keys)
            with sqlite3.connect(path) as db:
                stored = sorted(row[0] for row in db.execute("SELECT digest FROM tokens"))
                dump = "\n".join(db.iterdump())
            self.assertEqual(stored, sorted(sha256_hex(key) for key in keys))
            for key in keys:
                self.assertNotIn(key, dump)

        return ensureDeferred(scenario())

    def test_redis(self) -> Deferred[None]:
        """
        With C{--redis URL}: every key and every value in the real redis-server holds the
        SHA-256 of each token minted and never the token.
        """
        from tests.redisserver import started_redis

        async def scenario() -> None:
            redis = await started_redis(self)
            node = stop_on_cleanup(self, Node("--redis", redis.url))
            await node.start()
            keys = await self.mint_tokens(node)
            contents = (await redis.contents()).encode()
            self.assertIn(b"ann", contents)  # the dump sees the store's records
            self.assertOnlyDigests(contents, keys)
            self.assertEqual(await node.stop(), 0, node.text())

        return ensureDeferred(scenario())

