"""
Publish/subscribe between the parts of one server, or between nodes.

- L{gameproto.bus.local.LocalBus}: in one process;
- L{gameproto.bus.redis.RedisBus}: Redis pub/sub, for several nodes sharing one
  Redis.

Messages are text (JSON, encoded by the caller).  Delivery follows Redis pub/sub
semantics in both: at most once, in publication order per publisher, nothing is
kept for a subscriber that is not connected.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Interface

from gameproto import wire

Handler = Callable[[str], None]


class IBus(Interface):
    description: str  # type: ignore[misc]

    def start() -> Deferred[None]:
        """Connect; subscriptions made before are activated."""

    def stop() -> Deferred[None]:
        """Disconnect; no handler is called afterwards."""

    def publish(channel: str, message: str) -> Deferred[int]:
        """
        Send C{message} to every subscriber of C{channel}; fires with the number of
        subscribed connections (nodes) that received it, or fails with
        L{gameproto.store.StoreError} when the bus is unavailable.
        """

    def subscribe(channel: str, handler: Handler) -> Deferred["Subscription"]:
        """
        Call C{handler(message)} for each message on C{channel} until the
        subscription is cancelled.  Fires once the subscription is active (or, with
        Redis down, once it is registered: it becomes active on reconnection).
        """

    def connected() -> bool:
        """Whether the bus can deliver right now."""


@attrs.define(eq=False)
class Subscription:
    """One handler on one channel; C{cancel()} removes it."""

    channel: str
    handler: Handler
    _cancel: Callable[["Subscription"], object]

    def cancel(self) -> None:
        self._cancel(self)


class Subscriptions:
    """The handlers of each channel, shared by the bus implementations."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Subscription]] = {}

    def add(self, subscription: Subscription) -> bool:
        """Register; C{True} if it is the channel's first handler."""
        handlers = self._handlers.setdefault(subscription.channel, [])
        handlers.append(subscription)
        return len(handlers) == 1

    def remove(self, subscription: Subscription) -> bool:
        """Unregister; C{True} if the channel has no handler left."""
        handlers = self._handlers.get(subscription.channel, [])
        if subscription in handlers:
            handlers.remove(subscription)
        if not handlers:
            self._handlers.pop(subscription.channel, None)
            return True
        return False

    def channels(self) -> list[str]:
        return list(self._handlers)

    def handlers(self, channel: str) -> list[Subscription]:
        return list(self._handlers.get(channel, ()))



class Outbox:
    """
    Messages for one channel, published in order: what is queued during one reactor
    turn goes out as one message C{{**header, "items": [...]}}, and the next batch
    only once the bus has taken the previous one (the Redis bus publishes through a
    pool of several connections, which alone would not keep the order).
    """

    _log = Logger()

    def __init__(self, bus: IBus, clock: IReactorTime, channel: str,
                 header: dict[str, Any] | None = None) -> None:
        self._bus = bus
        self._clock = clock
        self.channel = channel
        self._header = header or {}
        self._items: list[dict[str, Any]] = []
        self._busy = False
        self._scheduled: IDelayedCall | None = None
        self._idle: list[Deferred[None]] = []

    def put(self, item: dict[str, Any]) -> None:
        self._items.append(item)
        if not self._busy and self._scheduled is None:
            self._scheduled = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._scheduled = None
        if not self._items:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)
            return
        items, self._items = self._items, []
        self._busy = True
        message = wire.encode({**self._header, "items": items}).decode()
        d = self._bus.publish(self.channel, message)
        d.addErrback(lambda f: self._log.warn("Bus: publishing to {channel}: {why}",
                                              channel=self.channel, why=f.getErrorMessage()))
        d.addBoth(self._done)

    def _done(self, _: Any) -> None:
        self._busy = False
        self._flush()

    def drained(self) -> Deferred[None]:
        """Fires once everything put so far has been published (or failed to be)."""
        if not self._busy and not self._items and self._scheduled is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d


def bus_for_store(reactor: Any, store_description: str) -> Any:
    """
    The bus that goes with a store: Redis pub/sub for C{redis://...} (the nodes
    sharing that Redis are one server), the in-process bus otherwise.
    """
    if store_description.startswith("redis://"):
        from gameproto.bus.redis import RedisBus
        from gameproto.redis import RedisURL

        return RedisBus(reactor, RedisURL.parse(store_description))
    from gameproto.bus.local import LocalBus

    return LocalBus(reactor)
