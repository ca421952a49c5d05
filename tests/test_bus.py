"""The bus: local delivery on a Clock, and Redis pub/sub against a real redis-server."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from gameproto import wire
from gameproto.bus import IBus, Outbox
from gameproto.bus.local import LocalBus
from gameproto.redis import RedisUnavailable, RedisURL
from tests.redisserver import started_redis
from tests.support import wait_for, wall_clock_ceiling, within


class LocalBusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.bus = LocalBus(self.clock)
        self.received: list[tuple[str, str]] = []

    def listen(self, channel: str, tag: str) -> Any:
        return self.successResultOf(
            self.bus.subscribe(channel, lambda m: self.received.append((tag, m)))
        )

    def test_interface(self) -> None:
        """LocalBus provides IBus."""
        self.assertTrue(verifyObject(IBus, self.bus))

    def test_delivery_on_a_later_turn(self) -> None:
        """Subscribers get messages in order, after publish() has returned."""
        self.listen("a", "first")
        self.listen("a", "second")
        self.listen("b", "other")
        self.assertEqual(self.successResultOf(self.bus.publish("a", "1")), 1)
        self.bus.publish("a", "2")
        self.assertEqual(self.received, [])
        self.clock.advance(0)
        self.assertEqual(self.received,
                         [("first", "1"), ("second", "1"), ("first", "2"), ("second", "2")])

    def test_no_subscriber(self) -> None:
        """Publishing to a channel nobody listens to reaches nobody."""
        self.assertEqual(self.successResultOf(self.bus.publish("nobody", "x")), 0)

    def test_cancel(self) -> None:
        """A cancelled subscription receives nothing more."""
        subscription = self.listen("a", "gone")
        self.listen("a", "kept")
        subscription.cancel()
        self.bus.publish("a", "1")
        self.clock.advance(0)
        self.assertEqual(self.received, [("kept", "1")])

    def test_failing_handler_isolated(self) -> None:
        """A handler that raises is logged; the other handlers still get the message."""

        def broken(message: str) -> None:
            raise RuntimeError("handler bug")

        self.successResultOf(self.bus.subscribe("a", broken))
        self.listen("a", "kept")
        self.bus.publish("a", "1")
        self.clock.advance(0)
        self.assertEqual(self.received, [("kept", "1")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RedisBusTests(TestCase):
    timeout = 60

    async def make_bus(self, url: str) -> Any:
        from gameproto.bus.redis import RedisBus

        bus = RedisBus(reactor, RedisURL.parse(url))
        await bus.start()
        self.addCleanup(bus.stop)
        await wait_for(bus.connected, 10)
        return bus

    def test_interface_and_round_trip(self) -> Deferred[None]:
        """Two buses on one Redis: a message published on one reaches the other's handler."""

        async def scenario() -> None:
            redis = await started_redis(self)
            a, b = await self.make_bus(redis.url), await self.make_bus(redis.url)
            self.assertTrue(verifyObject(IBus, a))
            got: list[str] = []
            arrived: Deferred[None] = Deferred()
            await b.subscribe("room:1", lambda m: (got.append(m), arrived.callback(None)))
            self.assertEqual(await a.publish("room:1", '{"x": "é"}'), 1)
            await arrived
            self.assertEqual(got, ['{"x": "é"}'])

        return ensureDeferred(scenario())

    def test_resubscribes_after_reconnect(self) -> Deferred[None]:
        """
        After Redis restarts the subscriber reconnects (once, reported), re-subscribes,
        and receives again.
        """

        async def scenario() -> None:
            redis = await started_redis(self)
            a, b = await self.make_bus(redis.url), await self.make_bus(redis.url)
            got: list[str] = []
            reconnects: list[None] = []
            b.on_reconnect = lambda: reconnects.append(None)
            await b.subscribe("chan", got.append)
            await redis.stop()
            await wait_for(lambda: not b.connected(), 10)
            await redis.start()
            # Publishing until one arrives, within the documented 3 s: messages sent
            # before the re-subscription are lost by design (Redis pub/sub keeps nothing).
            await wait_for(lambda: bool(got), wall_clock_ceiling(3), poll=0.1,
                           action=lambda: a.publish("chan", "again"))
            self.assertEqual(set(got), {"again"})
            self.assertEqual(len(reconnects), 1)  # counted in the metrics

        return ensureDeferred(scenario())

    def test_publish_fails_fast_during_outage(self) -> Deferred[None]:
        """
        With Redis down, publish fails with RedisUnavailable within 2 s (its timeout
        to the millisecond is RedisBusTimeoutTests', on a Clock).
        """

        async def scenario() -> None:
            redis = await started_redis(self)
            a = await self.make_bus(redis.url)
            await redis.stop()
            with self.assertRaises(RedisUnavailable):
                await within(a.publish("chan", "lost"), wall_clock_ceiling(2))

        return ensureDeferred(scenario())


class RedisBusTimeoutTests(SynchronousTestCase):
    """The Redis bus's timeouts run on the reactor it is given: here a Clock."""

    def test_publish_times_out_on_the_bus_clock(self) -> None:
        """A publish Redis never answers fails with RedisUnavailable 1.5 s after it was sent."""
        from gameproto.bus.redis import RedisBus

        clock = MemoryReactorClock()  # a connection to it never completes: Redis is silent
        bus = RedisBus(clock, RedisURL.parse("redis://127.0.0.1:6390/0"))
        self.successResultOf(bus.start())
        published = bus.publish("chan", "lost")
        clock.advance(1.49)
        self.assertNoResult(published)
        clock.advance(0.01)
        self.failureResultOf(published, RedisUnavailable)


class OutboxTests(SynchronousTestCase):
    """Messages relayed between nodes keep their order and are batched per reactor turn."""

    def test_order_and_batches(self) -> None:
        """
        What is queued in one turn goes out as one message; the next batch waits
        until the bus took the previous one.
        """
        clock = Clock()
        bus = LocalBus(clock)
        got: list[Any] = []
        bus.subscribe("c", lambda raw: got.append(wire.decode(raw)))
        published: list[Deferred[int]] = []
        real = bus.publish

        def slow(channel: str, message: str) -> Deferred[int]:
            real(channel, message)
            d: Deferred[int] = Deferred()
            published.append(d)
            return d

        bus.publish = slow  # type: ignore[method-assign]
        box = Outbox(bus, clock, "c", {"node": "node-a"})
        box.put({"n": 1})
        box.put({"n": 2})
        clock.advance(0)
        box.put({"n": 3})
        clock.advance(0)
        self.assertEqual(len(published), 1)  # 3 waits for the first publish
        published[0].callback(1)
        clock.advance(0)
        self.assertEqual([m["items"] for m in got], [[{"n": 1}, {"n": 2}], [{"n": 3}]])
        self.assertEqual({m["node"] for m in got}, {"node-a"})


class RedisURLTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """redis:// URLs give host, port, database and password, with defaults."""
        self.assertEqual(RedisURL.parse("redis://h:1234/5"), RedisURL("h", 1234, 5))
        self.assertEqual(RedisURL.parse("redis://h"), RedisURL("h", 6379, 0))
        self.assertEqual(RedisURL.parse("redis://:pw@h/2").password, "pw")
        self.assertEqual(str(RedisURL.parse("redis://h:1/2")), "redis://h:1/2")

    def test_bad_urls(self) -> None:
        """Other schemes, bad ports and bad databases are ValueErrors."""
        for url in ["http://h", "redis://h:x", "redis://h/db"]:
            with self.assertRaises(ValueError):
                RedisURL.parse(url)

    def test_database_is_ascii_digits(self) -> None:
        """A database written ², ١ or １ is refused with the database's message, not int()'s."""
        for db in ["²", "١", "１"]:
            with self.assertRaises(ValueError) as raised:
                RedisURL.parse(f"redis://h/{db}")
            self.assertIn("the database must be a number", str(raised.exception))
