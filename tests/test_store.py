"""The store contract (tests/store_contract.py) run against memory: and sqlite:."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gameproto.store import store_from_string
from gameproto.store.memory import MemoryStore
from gameproto.store.sqlite import SQLiteStore
from tests.store_contract import JOINED, StoreContract, user
from tests.support import wall_clock_ceiling, within


class MemoryStoreTests(StoreContract, TestCase):
    def make_store(self) -> MemoryStore:
        return MemoryStore()


class SQLiteStoreTests(StoreContract, TestCase):
    def make_store(self) -> SQLiteStore:
        self.path = self.mktemp()
        return SQLiteStore(reactor, self.path)

    def test_survives_reopening(self) -> Deferred[None]:
        """Users and tokens written before close() are there after reopening the file."""
        from gameproto.store import TokenRecord

        async def check() -> None:
            await self.store.create_user(user("persistent", elo=1016))
            await self.store.add_token(TokenRecord("f" * 64, "persistent", JOINED))
            await self.store.close()
            self.store = SQLiteStore(reactor, self.path)
            await self.store.start()
            self.assertEqual((await self.store.get_user("persistent")).elo, 1016)
            token, owner = await self.store.get_token("f" * 64)
            self.assertEqual(token.created, JOINED)
            self.assertEqual(owner.date_joined, JOINED)

        return ensureDeferred(check())

    def test_matches_survive_reopening(self) -> Deferred[None]:
        """Completed matches, ratings and ongoing matches are there after reopening."""
        from gameproto.match.elo import rate
        from gameproto.store import MatchOutcome

        async def check() -> None:
            await self.store.create_user(user("w"))
            await self.store.create_user(user("l"))
            played = await self.store.create_ongoing_match("w", JOINED)
            completed = await self.store.complete_match(
                MatchOutcome(played.id, "w", "l", JOINED, JOINED + timedelta(seconds=9), 5, 2),
                rate,
            )
            waiting = await self.store.create_ongoing_match("l", JOINED)
            await self.store.close()
            self.store = SQLiteStore(reactor, self.path)
            await self.store.start()
            self.assertEqual(await self.store.get_completed_match(played.id), completed)
            self.assertEqual((await self.store.get_user("w")).elo, 1016)
            self.assertEqual(await self.store.get_ongoing_match(waiting.id), waiting)
            again = await self.store.create_ongoing_match("w", JOINED)
            self.assertGreater(again.id, waiting.id)

        return ensureDeferred(check())

    def test_files_are_private(self) -> Deferred[None]:
        """
        The database, its WAL and its shared-memory index are created mode 0600, whatever
        the umask: they hold password hashes and token digests.
        """
        from gameproto.store import TokenRecord

        async def check() -> None:
            await self.store.create_user(user("private"))
            await self.store.add_token(TokenRecord("e" * 64, "private", JOINED))
            modes = {
                suffix: stat.S_IMODE(os.stat(self.path + suffix).st_mode)
                for suffix in ("", "-wal", "-shm")
            }
            self.assertEqual(modes, {"": 0o600, "-wal": 0o600, "-shm": 0o600})

        previous = os.umask(0o022)
        self.addCleanup(os.umask, previous)
        return ensureDeferred(check())

    def test_readable_database_is_reported(self) -> Deferred[None]:
        """An existing database others can read is used, with a warning naming it."""

        async def check() -> None:
            await self.store.close()
            os.chmod(self.path, 0o644)
            events: list[dict[str, Any]] = []
            globalLogPublisher.addObserver(events.append)
            self.addCleanup(globalLogPublisher.removeObserver, events.append)
            self.store = SQLiteStore(reactor, self.path)
            await self.store.start()
            warnings = [e for e in events if e.get("path") == self.path and e.get("mode") == 0o644]
            self.assertEqual(len(warnings), 1)
            self.assertIn("chmod 600", formatEvent(warnings[0]))

        return ensureDeferred(check())

    def test_date_joined_keeps_microseconds(self) -> Deferred[None]:
        """Timestamps keep microseconds and time zone across the database."""

        async def check() -> None:
            joined = JOINED + timedelta(microseconds=7)
            await self.store.create_user(user("precise", joined=joined))
            self.assertEqual((await self.store.get_user("precise")).date_joined, joined)

        return ensureDeferred(check())


class StoreFromStringTests(SynchronousTestCase):
    def test_memory(self) -> None:
        """memory: builds a MemoryStore."""
        self.assertIsInstance(store_from_string(None, "memory:"), MemoryStore)

    def test_sqlite(self) -> None:
        """sqlite:PATH builds an SQLiteStore on that path."""
        store = store_from_string(None, "sqlite:/tmp/x.sqlite3")
        self.assertIsInstance(store, SQLiteStore)
        self.assertEqual(store.description, "sqlite:/tmp/x.sqlite3")

    def test_redis(self) -> None:
        """redis://HOST:PORT/DB builds a RedisStore (connecting only when started)."""
        from gameproto.store.redis import RedisStore

        store = store_from_string(None, "redis://127.0.0.1:6390/3")
        self.assertIsInstance(store, RedisStore)
        self.assertEqual(store.description, "redis://127.0.0.1:6390/3")

    def test_bad_descriptions(self) -> None:
        """An empty sqlite path, a malformed Redis URL and an unknown scheme are refused."""
        for description in ["sqlite:", "redis://h:x/0", "postgres://x", ""]:
            with self.assertRaises(ValueError, msg=description):
                store_from_string(None, description)


class RedisTimeoutTests(SynchronousTestCase):
    """The timeout of every Redis call, on an injected Clock (docs/operations.md)."""

    def test_a_call_times_out_after_one_and_a_half_seconds(self) -> None:
        """A call Redis never answers fails with RedisUnavailable 1.5 s after it was sent."""
        from gameproto.redis import RedisUnavailable, within

        clock = Clock()
        unanswered: Deferred[Any] = Deferred()
        call = within(unanswered, clock, "GET")
        clock.advance(1.49)
        self.assertNoResult(call)
        clock.advance(0.01)
        self.failureResultOf(call, RedisUnavailable)

    def test_a_store_read_times_out_on_the_store_clock(self) -> None:
        """
        The Redis store's calls time out on the reactor it is given: a read Redis never
        answers fails with a StoreError 1.5 s after it was sent.
        """
        from gameproto.redis import RedisURL
        from gameproto.store import StoreError
        from gameproto.store.redis import RedisStore

        clock = MemoryReactorClock()  # a connection to it never completes: Redis is silent
        store = RedisStore(clock, RedisURL.parse("redis://127.0.0.1:6390/0"))
        started = store.start()
        read = store.get_user("anyone")
        clock.advance(1.49)
        self.assertNoResult(read)
        clock.advance(0.01)
        self.failureResultOf(read, StoreError)
        self.failureResultOf(started, StoreError)  # its opening ping went unanswered too

    def test_an_answer_in_time_is_kept(self) -> None:
        """An answer before the timeout is the call's result, and no timer is left."""
        from gameproto.redis import within

        clock = Clock()
        answered: Deferred[Any] = Deferred()
        call = within(answered, clock, "GET")
        clock.advance(1.4)
        answered.callback(b"value")
        self.assertEqual(self.successResultOf(call), b"value")
        self.assertEqual(clock.getDelayedCalls(), [])


class RedisStoreTests(StoreContract, TestCase):
    """The same contract on Redis, each test with a redis-server of its own."""

    def setUp(self) -> Deferred[None]:
        from tests.redisserver import started_redis

        async def start() -> None:
            self.redis = await started_redis(self)
            await StoreContract.setUp(self)

        return ensureDeferred(start())

    def make_store(self) -> Any:
        from gameproto.redis import RedisURL
        from gameproto.store.redis import RedisStore

        return RedisStore(reactor, RedisURL.parse(self.redis.url))

    def test_outage_fails_fast(self) -> Deferred[None]:
        """
        With Redis gone, a read fails with a StoreError within 2 s (its timeout to the
        millisecond is RedisTimeoutTests', on a Clock).
        """
        from gameproto.store import StoreError

        async def check() -> None:
            await self.redis.stop()
            with self.assertRaises(StoreError):
                await within(self.store.get_user("anyone"), wall_clock_ceiling(2))

        return ensureDeferred(check())
