"""
Matchmaking across two real C{twistd -n gameproto} nodes sharing one real
redis-server: 200 users queued over both nodes' REST APIs, the node running the
matcher SIGKILLed while it pairs, and every user paired exactly once, within the
window, by the two matchers between them.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.trial.unittest import TestCase

from tests.nodes import Node, http_json, stop_on_cleanup
from tests.support import wait_for, wall_clock_ceiling

USERS = 200
LEASE_KEY = "gp:matchmaking:matcher:lease"
MATCH_LINE = b"Matchmaking: match "
# The window the nodes run with: 100, +50 every second (the default step, ten times as
# often). The queue is served greedily in an order set by when 200 concurrent requests
# land, so the last users left may be any distance apart, up to the whole spread of
# ratings (1,393): the window must reach that within the test's wait (26 s here, 260 s
# at the default interval).
WINDOW, STEP, INTERVAL = 100, 50, 1.0


def parse_ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()


class ClusterMatchmakingTests(TestCase):
    timeout = 180

    async def seed(self, url: str) -> tuple[dict[str, str], dict[str, int]]:
        """200 users with tokens and spread ratings, written straight into the store."""
        from gameproto.auth import token_digest
        from gameproto.redis import RedisURL
        from gameproto.store import TokenRecord, User
        from gameproto.store.redis import RedisStore

        store = RedisStore(reactor, RedisURL.parse(url))
        await store.start()
        rng = random.Random(2027)
        ratings = [800 + 7 * i for i in range(USERS)]
        rng.shuffle(ratings)
        now = datetime.now(timezone.utc)
        tokens, elo = {}, {}
        try:
            for i, rating in enumerate(ratings):
                name = f"player{i:03d}"
                await store.create_user(User(name, "x", now, rating))
                key = f"{i + 1:040x}"
                await store.add_token(TokenRecord(token_digest(key), name, now))
                tokens[name], elo[name] = key, rating
        finally:
            await store.close()
        return tokens, elo

    async def node_id(self, node: Node) -> str:
        status, body = await http_json("GET", node.url("/healthz"))
        self.assertEqual(status, 200, body)
        return body["details"]["node"]

    async def queue(self, node: Node, token: str) -> None:
        status, body = await http_json("POST", node.url("/api/matchmaking/"), {}, token)
        self.assertEqual(status, 201, body)

    def test_two_nodes_matcher_killed(self) -> Deferred[None]:
        """
        200 users queue, half on each node; the node holding the matcher's lease is
        killed (SIGKILL) once it has made matches and before the second hundred
        queue on the other node, which takes the lease over.  In the end every user
        holds exactly one matched ticket; each of the 100 matches named by the
        tickets exists, hosted by its host ticket's user, with a challenger ticket
        of its own; no other match exists; every pair is within the window of the
        time its host waited; and both nodes made matches.
        """

        async def scenario() -> None:
            from tests.redisserver import started_redis

            redis = await started_redis(self)
            tokens, elo = await self.seed(redis.url)
            options = ("--redis", redis.url, "--matchmaking-interval", "0.05",
                       "--matchmaking-seat-timeout", "600",
                       "--matchmaking-window-interval", str(INTERVAL))
            nodes = [stop_on_cleanup(self, Node(*options)) for _ in range(2)]
            for node in nodes:
                await node.start()
            ids = {await self.node_id(node): node for node in nodes}
            holder: list[str] = []

            async def read_lease() -> None:
                value = await redis.get(LEASE_KEY)
                if value in ids:
                    holder.append(value)

            await wait_for(lambda: bool(holder), 10, action=read_lease)
            matcher = ids[holder[-1]]
            survivor = next(node for node in nodes if node is not matcher)
            names = sorted(tokens)
            first, second = names[:USERS // 2], names[USERS // 2:]
            await gatherResults([
                Deferred.fromCoroutine(self.queue(nodes[i % 2], tokens[name]))
                for i, name in enumerate(first)
            ])
            await wait_for(lambda: MATCH_LINE in matcher.output, 10)
            await matcher.kill()
            await gatherResults([
                Deferred.fromCoroutine(self.queue(survivor, tokens[name])) for name in second
            ])

            tickets: dict[str, Any] = {}

            async def read_tickets() -> None:
                for name in names:
                    if tickets.get(name, {}).get("state") == "matched":
                        continue
                    status, body = await http_json("GET", survivor.url("/api/matchmaking/"),
                                                   token=tokens[name])
                    self.assertEqual(status, 200, (name, body))
                    tickets[name] = body

            # A minute, with the suite's slack for a loaded machine: each poll reads the
            # unmatched tickets one request at a time.
            try:
                await wait_for(lambda: len(tickets) == USERS and all(
                    t["state"] == "matched" for t in tickets.values()), wall_clock_ceiling(60),
                    poll=0.2, action=read_tickets)
            except AssertionError:
                unmatched = {n: t for n, t in tickets.items() if t["state"] != "matched"}
                self.fail(f"{len(unmatched)} not matched: {unmatched}\n{survivor.text()[-3000:]}")
            seen = reactor.seconds()

            by_match: dict[int, dict[str, str]] = {}
            for name, ticket in tickets.items():
                roles = by_match.setdefault(ticket["match_id"], {})
                self.assertNotIn(ticket["role"], roles, (name, ticket))
                roles[ticket["role"]] = name
            self.assertEqual(len(by_match), USERS // 2)
            reader = tokens[names[0]]
            for match_id, roles in by_match.items():
                host, challenger = roles["host"], roles["challenger"]
                status, match = await http_json(
                    "GET", survivor.url(f"/api/ongoing_matches/{match_id}/"), token=reader)
                self.assertEqual((status, match["host"]), (200, host))
                host_since = parse_ts(tickets[host]["since"])
                self.assertLessEqual(host_since, parse_ts(tickets[challenger]["since"]))
                window = WINDOW + STEP * math.floor((seen - host_since) / INTERVAL)
                self.assertLessEqual(abs(elo[host] - elo[challenger]), window,
                                     (host, challenger))
            status, ongoing = await http_json(
                "GET", survivor.url("/api/ongoing_matches/?limit=1000"), token=reader)
            self.assertEqual(sorted(m["id"] for m in ongoing), sorted(by_match))
            self.assertIn(MATCH_LINE, survivor.output)  # it took over
            self.assertEqual(await survivor.stop(), 0, survivor.text())
            self.assertNotIn("Traceback", survivor.text())

        return ensureDeferred(scenario())
