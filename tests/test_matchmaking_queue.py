"""
One contract for both matchmaking queues (gameproto.matchmaking.queue): the memory
queue of a single node, and the Redis queue of several on a real redis-server, whose
Lua scripts must apply exactly the transitions of gameproto.matchmaking.rules.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from gameproto.matchmaking.queue import IMatchQueue, Joined, Left, LocalMatchQueue
from gameproto.matchmaking.rules import MatchRole, Ticket, TicketState

T0 = 1_800_000_000.25
NODE = "node-a"
HANA = Ticket("Hana", 1000, T0)
COLE = Ticket("cole", 1040, T0 + 1.5, front=True)


class MatchQueueContract:
    """Each test class provides C{queue} (an L{IMatchQueue}) in setUp."""

    queue: IMatchQueue

    def play(self, scenario: Callable[[], Awaitable[None]]) -> Deferred[None]:
        return ensureDeferred(scenario())  # type: ignore[arg-type]

    async def matched(self) -> None:
        await self.queue.join(HANA)
        await self.queue.join(COLE)
        self.assertTrue(await self.queue.claim("hana", "cole", NODE))  # type: ignore[attr-defined]
        self.assertTrue(await self.queue.commit("hana", "cole", 7, T0 + 31.5, NODE))  # type: ignore[attr-defined]

    def test_join_once(self) -> Deferred[None]:
        """A user holds one ticket: a second join answers the first, unchanged."""
        async def scenario() -> None:
            self.assertEqual(await self.queue.join(HANA), Joined(HANA, True))
            again = Ticket("hana", 1500, T0 + 9)
            self.assertEqual(await self.queue.join(again), Joined(HANA, False))
            self.assertEqual(await self.queue.get("hana"), HANA)
            self.assertIsNone(await self.queue.get("cole"))
            await self.queue.join(COLE)
            self.assertEqual(sorted(await self.queue.all(), key=lambda t: t.key), [COLE, HANA])
        return self.play(scenario)

    def test_claim_and_commit(self) -> Deferred[None]:
        """Claimed: pairing partners with roles; committed: matched to the match."""
        async def scenario() -> None:
            await self.matched()
            hana, cole = await self.queue.get("hana"), await self.queue.get("cole")
            self.assertEqual(hana, Ticket("Hana", 1000, T0, TicketState.MATCHED, False, "cole",
                                          MatchRole.HOST, 7, T0 + 31.5))
            self.assertEqual(cole, Ticket("cole", 1040, T0 + 1.5, TicketState.MATCHED, True,
                                          "hana", MatchRole.CHALLENGER, 7, T0 + 31.5))
        return self.play(scenario)

    def test_claim_needs_both_waiting(self) -> Deferred[None]:
        """No ticket is in two pairs: a claimed ticket, or a missing one, fails a claim."""
        async def scenario() -> None:
            await self.queue.join(HANA)
            await self.queue.join(COLE)
            self.assertFalse(await self.queue.claim("hana", "sam", NODE))
            self.assertTrue(await self.queue.claim("hana", "cole", NODE))
            await self.queue.join(Ticket("sam", 1000, T0))
            self.assertFalse(await self.queue.claim("sam", "cole", NODE))
            self.assertFalse(await self.queue.commit("sam", "cole", 8, T0, NODE))
            self.assertEqual((await self.queue.get("sam")).state, TicketState.WAITING)  # type: ignore[union-attr]
        return self.play(scenario)

    def test_release(self) -> Deferred[None]:
        """A released pair waits again where it was (the front kept)."""
        async def scenario() -> None:
            await self.queue.join(HANA)
            await self.queue.join(COLE)
            await self.queue.claim("hana", "cole", NODE)
            self.assertTrue(await self.queue.release("hana", "cole", NODE))
            self.assertEqual(await self.queue.get("hana"), HANA)
            self.assertEqual(await self.queue.get("cole"), COLE)
            self.assertFalse(await self.queue.release("hana", "cole", NODE))
        return self.play(scenario)

    def test_leave(self) -> Deferred[None]:
        """Leaving removes the ticket; a partner (held or matched) goes to the front."""
        async def scenario() -> None:
            self.assertIsNone(await self.queue.leave("hana"))
            await self.queue.join(HANA)
            self.assertEqual(await self.queue.leave("hana"), Left(HANA, None))
            await self.matched()
            left = await self.queue.leave("cole")
            assert left is not None
            self.assertEqual(left.ticket.match_id, 7)
            self.assertEqual(left.requeued, Ticket("Hana", 1000, T0, front=True))
            self.assertEqual(await self.queue.get("hana"), Ticket("Hana", 1000, T0, front=True))
            self.assertIsNone(await self.queue.get("cole"))
        return self.play(scenario)

    def test_seated_both_is_done(self) -> Deferred[None]:
        """Seats of another match count for nothing; once both are seated the pair is done."""
        async def scenario() -> None:
            await self.matched()
            self.assertFalse(await self.queue.seated("hana", 8))
            self.assertTrue(await self.queue.seated("hana", 7))
            self.assertTrue((await self.queue.get("hana")).seated)  # type: ignore[union-attr]
            self.assertTrue(await self.queue.seated("cole", 7))
            self.assertEqual(await self.queue.all(), [])
        return self.play(scenario)

    def test_expire(self) -> Deferred[None]:
        """Past the deadline: the seated one back at the front, the other removed."""
        async def scenario() -> None:
            await self.matched()
            await self.queue.seated("cole", 7)
            self.assertIsNone(await self.queue.expire("hana", "cole", 8, NODE))
            expired = await self.queue.expire("hana", "cole", 7, NODE)
            assert expired is not None
            self.assertEqual([t.key for t in expired.removed], ["hana"])
            self.assertEqual(expired.requeued, (Ticket("cole", 1040, T0 + 1.5, front=True),))
            self.assertEqual(await self.queue.all(), [Ticket("cole", 1040, T0 + 1.5, front=True)])
            self.assertIsNone(await self.queue.expire("hana", "cole", 7, NODE))
        return self.play(scenario)


class LocalMatchQueueTests(MatchQueueContract, TestCase):
    def setUp(self) -> None:
        self.queue = LocalMatchQueue()


class RedisMatchQueueTests(MatchQueueContract, TestCase):
    """The nodes' queue on a real redis-server, with the matcher's lease held by NODE."""

    timeout = 30

    def setUp(self) -> Deferred[None]:
        from gameproto.matchmaking.redis_queue import RedisMatchQueue
        from gameproto.node import Node
        from gameproto.redis import RedisURL
        from tests.redisserver import started_redis

        async def start() -> None:
            server = await started_redis(self)
            self.node = Node(reactor, RedisURL.parse(server.url), node_id=NODE)
            self.node.startService()
            self.addCleanup(self.node.stopService)
            self.ownership = self.node.ownership("matchmaking")
            self.assertTrue(await self.ownership.claim("matcher"))
            self.queue = RedisMatchQueue(self.node, self.ownership.key("matcher"))

        return ensureDeferred(start())

    def test_fenced_by_the_lease(self) -> Deferred[None]:
        """
        A node that does not hold the matcher's lease changes nothing: no claim,
        commit, release or expiry (a stalled ex-matcher after a takeover).
        """
        async def scenario() -> None:
            await self.queue.join(HANA)
            await self.queue.join(COLE)
            self.assertFalse(await self.queue.claim("hana", "cole", "node-b"))
            self.assertTrue(await self.queue.claim("hana", "cole", NODE))
            self.assertFalse(await self.queue.commit("hana", "cole", 7, T0, "node-b"))
            self.assertFalse(await self.queue.release("hana", "cole", "node-b"))
            self.assertTrue(await self.queue.commit("hana", "cole", 7, T0, NODE))
            self.assertIsNone(await self.queue.expire("hana", "cole", 7, "node-b"))
            self.assertEqual({t.state for t in await self.queue.all()}, {TicketState.MATCHED})
        return self.play(scenario)

    def test_keys(self) -> Deferred[None]:
        """The tickets live in one hash, gp:matchmaking:tickets, keyed by lower-cased name."""
        async def scenario() -> None:
            await self.queue.join(HANA)
            keys = await self.node.pool.hkeys("gp:matchmaking:tickets")
            self.assertEqual(list(keys), ["hana"])
        return self.play(scenario)



