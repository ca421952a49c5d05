"""
The replays part of the store contract (L{gameproto.store.IStore}: C{save_replay},
C{get_replay}, C{prune_replays}), held by the memory, SQLite and Redis stores (the
last on a redis-server of its own).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from gameproto.match.elo import rate
from gameproto.store import CompletedMatch, MatchOutcome, NoSuchMatch, ReplayRecord
from gameproto.store.memory import MemoryStore
from gameproto.store.sqlite import SQLiteStore
from tests.store_contract import JOINED, user

# Every byte value, a run that compresses, and more than fits a line of text.
DATA = bytes(range(256)) + b"GPR1" * 1000


def replay(match_id: int, recorded_after: float = 0.0, data: bytes = DATA,
           truncated: bool = False) -> ReplayRecord:
    return ReplayRecord(
        id=match_id,
        recorded=JOINED + timedelta(seconds=recorded_after, microseconds=7),
        tick_ms=10.0,
        duration_ms=12_345,
        truncated=truncated,
        data=data,
    )


class ReplayStoreContract:
    """Mixed into a trial C{TestCase}; C{make_store} builds the store."""

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> Deferred[None]:
        self.store = self.make_store()
        d = self.store.start()
        self.addCleanup(lambda: self.store.close())
        return d

    async def completed(self) -> CompletedMatch:
        """A completed match between two new players."""
        n = getattr(self, "_played", 0) + 1
        self._played = n
        winner, loser = f"w{n}", f"l{n}"
        for name in (winner, loser):
            await self.store.create_user(user(name))
        match = await self.store.create_ongoing_match(winner, JOINED)
        outcome = MatchOutcome(match.id, winner, loser, JOINED, JOINED + timedelta(seconds=30),
                               5, 1)
        return await self.store.complete_match(outcome, rate)

    def test_round_trip(self) -> Deferred[None]:
        """A saved replay reads back field for field, its bytes exactly."""

        async def check() -> None:
            match = await self.completed()
            self.assertIsNone(await self.store.get_replay(match.id))
            await self.store.save_replay(replay(match.id, truncated=True))
            self.assertEqual(await self.store.get_replay(match.id),
                             replay(match.id, truncated=True))
            self.assertIsNone(await self.store.get_replay(match.id + 1))

        return ensureDeferred(check())

    def test_save_replaces(self) -> Deferred[None]:
        """A second save of the same match replaces the first."""

        async def check() -> None:
            match = await self.completed()
            await self.store.save_replay(replay(match.id))
            await self.store.save_replay(replay(match.id, data=b"other"))
            self.assertEqual((await self.store.get_replay(match.id)).data, b"other")

        return ensureDeferred(check())

    def test_only_of_a_completed_match(self) -> Deferred[None]:
        """No replay without its completed match: an ongoing or unknown id is refused."""

        async def check() -> None:
            await self.store.create_user(user("host"))
            ongoing = await self.store.create_ongoing_match("host", JOINED)
            for match_id in (ongoing.id, ongoing.id + 100):
                with self.assertRaises(NoSuchMatch):
                    await self.store.save_replay(replay(match_id))
                self.assertIsNone(await self.store.get_replay(match_id))

        return ensureDeferred(check())

    def test_prune(self) -> Deferred[None]:
        """
        Pruning deletes the replays recorded strictly before the given time, counts
        them, and keeps the completed matches and the later replays.
        """

        async def check() -> None:
            matches = [await self.completed() for _ in range(3)]
            for seconds, match in zip((0, 10, 20), matches):
                await self.store.save_replay(replay(match.id, recorded_after=seconds))
            cut = replay(0, recorded_after=10).recorded  # the second one's time
            self.assertEqual(await self.store.prune_replays(cut), 1)
            self.assertIsNone(await self.store.get_replay(matches[0].id))
            self.assertEqual(await self.store.get_completed_match(matches[0].id), matches[0])
            for match in matches[1:]:
                self.assertIsNotNone(await self.store.get_replay(match.id))
            self.assertEqual(await self.store.prune_replays(cut), 0)
            self.assertEqual(await self.store.prune_replays(cut + timedelta(days=1)), 2)
            for match in matches:
                self.assertIsNone(await self.store.get_replay(match.id))

        return ensureDeferred(check())


class MemoryReplayStoreTests(ReplayStoreContract, TestCase):
    def make_store(self) -> MemoryStore:
        return MemoryStore()


class SQLiteReplayStoreTests(ReplayStoreContract, TestCase):
    def make_store(self) -> SQLiteStore:
        self.path = os.path.abspath(self.mktemp())
        return SQLiteStore(reactor, self.path)

    def test_survives_reopening(self) -> Deferred[None]:
        """A replay written before close() is there after reopening the file."""

        async def check() -> None:
            match = await self.completed()
            await self.store.save_replay(replay(match.id))
            await self.store.close()
            self.store = SQLiteStore(reactor, self.path)
            await self.store.start()
            self.assertEqual(await self.store.get_replay(match.id), replay(match.id))

        return ensureDeferred(check())


class RedisReplayStoreTests(ReplayStoreContract, TestCase):
    """The same contract on Redis, each test with a redis-server of its own."""

    def setUp(self) -> Deferred[None]:
        from tests.redisserver import started_redis

        async def start() -> None:
            self.redis = await started_redis(self)
            await ReplayStoreContract.setUp(self)

        return ensureDeferred(start())

    def make_store(self) -> Any:
        from gameproto.redis import RedisURL
        from gameproto.store.redis import RedisStore

        return RedisStore(reactor, RedisURL.parse(self.redis.url))
