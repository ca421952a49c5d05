"""
The bus on Redis pub/sub, for several nodes sharing one Redis.

One subscriber connection carries every channel this node listens to; PUBLISH
goes through the ordinary connection pool.  txredisapi reconnects a dropped
subscriber but does not subscribe it again, so L{_Subscriber.connectionMade}
re-issues SUBSCRIBE for every channel with a handler.  Messages published while a
node is disconnected are lost for that node: Redis pub/sub keeps nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import txredisapi
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from zope.interface import implementer

from gameproto import redis
from gameproto.bus import Handler, IBus, Subscription, Subscriptions


class _Subscriber(txredisapi.SubscriberProtocol):
    bus: "RedisBus"

    def connectionMade(self) -> Any:
        ready = super().connectionMade()  # AUTH and SELECT first
        bus = self.factory.bus

        def resubscribe(_: Any) -> None:
            bus._subscriber_ready(self)

        if isinstance(ready, Deferred):
            ready.addCallback(resubscribe)
        else:
            resubscribe(None)
        return ready

    def connectionLost(self, reason: Any) -> None:
        self.factory.bus._subscriber_lost(self)
        super().connectionLost(reason)

    def messageReceived(self, pattern: Any, channel: str, message: str) -> None:
        self.factory.bus._deliver(channel, message)


@implementer(IBus)
class RedisBus:
    _log = Logger()

    def __init__(self, reactor: Any, url: redis.RedisURL) -> None:
        self._reactor = reactor
        self.url = url
        self.description = str(url)
        self._subscriptions = Subscriptions()
        self._pool: Any = None
        self._factory: Any = None
        self._connection: _Subscriber | None = None
        self._stopped = False
        self._was_connected = False
        # Called each time the subscriber is connected again after a loss (metrics).
        self.on_reconnect: Callable[[], None] | None = None
        # Told of every command the publishing pool sends (the metrics), when set before start.
        self.observe_command: redis.CommandObserver | None = None

    def start(self) -> Deferred[None]:
        self._pool = redis.connection_pool(self._reactor, self.url, observe=self.observe_command)
        self._factory = redis.subscriber(self._reactor, self.url, _Subscriber)
        self._factory.bus = self
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self._stopped = True
        self._subscriptions = Subscriptions()
        stops = []
        for part in (self._factory, self._pool):
            if part is not None:
                stops.append(part.disconnect())
        return gatherResults(stops, consumeErrors=True).addBoth(lambda _: None)

    def connected(self) -> bool:
        return self._connection is not None

    # -- publishing ----------------------------------------------------------

    def publish(self, channel: str, message: str) -> Deferred[int]:
        d = redis.within(self._pool.publish(channel, message), self._reactor, "publish")
        return d.addCallback(int)

    # -- subscribing -----------------------------------------------------------

    def subscribe(self, channel: str, handler: Handler) -> Deferred[Subscription]:
        subscription = Subscription(channel, handler, self._unsubscribe)
        first = self._subscriptions.add(subscription)
        if not first or self._connection is None:
            # Active now (the channel is subscribed already), or it will be as
            # soon as the subscriber (re)connects.
            return succeed(subscription)
        d = redis.within(self._connection.subscribe(channel), self._reactor, "subscribe")

        def failed(failure: Any) -> None:
            # Still registered: the next (re)connection subscribes it.
            self._log.warn("Subscribing to {channel}: {why}", channel=channel,
                           why=failure.getErrorMessage())

        return d.addErrback(failed).addCallback(lambda _: subscription)

    def _unsubscribe(self, subscription: Subscription) -> None:
        if self._subscriptions.remove(subscription) and self._connection is not None:
            d = redis.within(
                self._connection.unsubscribe(subscription.channel), self._reactor, "unsubscribe"
            )
            # Failing to unsubscribe only costs unwanted messages, which have no
            # handler and are dropped.
            d.addErrback(lambda f: self._log.warn("{why}", why=f.getErrorMessage()))

    def _subscriber_ready(self, connection: _Subscriber) -> None:
        if self._stopped:
            return
        self._connection = connection
        if self._was_connected and self.on_reconnect is not None:
            self.on_reconnect()
        self._was_connected = True
        channels = self._subscriptions.channels()
        self._log.info("Bus connected to {url} ({count} channel(s))", url=str(self.url),
                       count=len(channels))
        if channels:
            d = redis.within(connection.subscribe(channels), self._reactor, "subscribe")
            d.addErrback(lambda f: self._log.warn("Resubscribing: {why}", why=f.getErrorMessage()))

    def _subscriber_lost(self, connection: _Subscriber) -> None:
        if self._connection is connection:
            self._connection = None
            if not self._stopped:
                self._log.warn("Bus lost its Redis connection; reconnecting")

    def _deliver(self, channel: str, message: str) -> None:
        for subscription in self._subscriptions.handlers(channel):
            try:
                subscription.handler(message)
            except Exception:
                self._log.failure("Bus handler for {channel} failed", channel=channel)
