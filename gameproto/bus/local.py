"""The in-process bus: handlers are called on a later reactor turn, as Redis would."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from gameproto.bus import Handler, IBus, Subscription, Subscriptions


@implementer(IBus)
class LocalBus:
    description = "local"
    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._subscriptions = Subscriptions()

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self._subscriptions = Subscriptions()
        return succeed(None)

    def connected(self) -> bool:
        return True

    def publish(self, channel: str, message: str) -> Deferred[int]:
        handlers = self._subscriptions.handlers(channel)
        # Never call a subscriber from inside publish(): a handler that publishes
        # in turn would otherwise reenter its caller.
        self._clock.callLater(0, self._deliver, handlers, message)
        return succeed(1 if handlers else 0)

    def _deliver(self, handlers: list[Subscription], message: str) -> None:
        for subscription in handlers:
            try:
                subscription.handler(message)
            except Exception:
                self._log.failure("Bus handler for {channel} failed", channel=subscription.channel)

    def subscribe(self, channel: str, handler: Handler) -> Deferred[Subscription]:
        subscription = Subscription(channel, handler, self._subscriptions.remove)
        self._subscriptions.add(subscription)
        return succeed(subscription)
