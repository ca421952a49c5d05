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
from twisted.internet.defer import Deferred
from zope.interface import Interface

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
