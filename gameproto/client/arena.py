"""
An arena WebSocket client on Autobahn's Twisted client, for bots and tests.

L{connect} opens C{/ws/arena/{arena_id}/player} (or C{/control} with C{role="control"})
and returns an L{ArenaClient} once the WebSocket is open.  Every message the server sends
is queued: take them in order with L{ArenaClient.next_message}, or skip to the one you
want with L{ArenaClient.wait_for_type}.  Types listed in C{ignore} are never queued (a
bot that does not read its radar passes C{ignore={"RadarScanNotification"}}); they still
reach C{on_message} and are counted in C{counts}.  L{ArenaClient.closed} fires with
C{(code, reason)} when the connection ends.

A player::

    from twisted.internet import defer, task
    from gameproto.client import arena

    async def main(reactor):
        bot = await arena.connect(reactor, "ws://127.0.0.1:8000", "default",
                                  ignore={"RadarScanNotification"})
        ack = await bot.register()            # {"type": "RegisterPlayerAck", "data": {...}}
        await bot.wait_for_type("StartGameOrder", timeout=None)
        reply = await bot.move({"rotate": 90}, {"move": "forward"})
        reply = await bot.shoot()             # PlayerShotAck or InvalidCommandError

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))

A controller connects with its owner's token: C{arena.connect(reactor, base, "default",
role="control", token=KEY, ignore={"GameSnapshotNotification"})}, then
C{await controller.start_game()}.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any, Callable, Iterable
from urllib.parse import quote, urlsplit

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeout

Message = dict[str, Any]
ERROR = "InvalidCommandError"


class ConnectionClosed(Exception):
    """The connection ended while a message was awaited."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"connection closed ({code}: {reason})")
        self.code = code
        self.reason = reason


class ArenaClient(WebSocketClientProtocol):
    """One arena connection (player or controller).  Built by L{connect}."""

    on_message: Callable[[Message], Any] | None = None

    def __init__(self) -> None:
        super().__init__()
        self._messages: deque[Message] = deque()
        self._waiters: deque[Deferred[Message]] = deque()
        self.ignore: frozenset[str] = frozenset()
        self.opened: Deferred[ArenaClient] = Deferred()
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.counts: Counter[str] = Counter()

    # -- sending ----------------------------------------------------------------

    def send(self, message: Any) -> None:
        """Send any JSON value as one text frame."""
        self.sendMessage(orjson.dumps(message), isBinary=False)

    def send_raw(self, payload: bytes, binary: bool = False) -> None:
        """Send bytes as they are (malformed input, for tests)."""
        self.sendMessage(payload, isBinary=binary)

    def close(self, code: int = 1000, reason: str = "bye") -> None:
        self.sendClose(code=code, reason=reason)

    async def request(
        self, message: Message, *replies: str, timeout: float | None = 10.0
    ) -> Message:
        """Send C{message}; return the next message of a type in C{replies} or an error."""
        self.send(message)
        return await self.wait_for_type(*replies, ERROR, timeout=timeout)

    def register(self, timeout: float | None = 10.0) -> Deferred[Message]:
        """C{RegisterPlayerCommand}: the C{RegisterPlayerAck} (or C{InvalidCommandError})."""
        return self._request({"type": "RegisterPlayerCommand"}, "RegisterPlayerAck", timeout)

    def move(self, *steps: Message, timeout: float | None = 10.0) -> Deferred[Message]:
        """C{MovePlayerCommand} with steps such as C{{"rotate": 90}}, C{{"move": "forward"}}."""
        command = {"type": "MovePlayerCommand", "data": list(steps)}
        return self._request(command, "MovePlayerAck", timeout)

    def shoot(self, timeout: float | None = 10.0) -> Deferred[Message]:
        return self._request({"type": "PlayerShootCommand"}, "PlayerShotAck", timeout)

    def configure_radar(self, radar: str, timeout: float | None = 10.0) -> Deferred[Message]:
        """C{ConfigurePlayerCommand} with C{radarType}: C{long_range_scan} or C{circular_scan}."""
        command = {"type": "ConfigurePlayerCommand",
                   "data": [{"op": "radarType", "args": [radar]}]}
        return self._request(command, "ConfigurePlayerAck", timeout)

    def start_game(self, timeout: float | None = 10.0) -> Deferred[Message]:
        """(Controller) C{StartGameCommand}: C{StartGameAck} or C{InvalidCommandError}."""
        return self._request({"type": "StartGameCommand"}, "StartGameAck", timeout)

    def _request(self, message: Message, reply: str, timeout: float | None) -> Deferred[Message]:
        return Deferred.fromCoroutine(self.request(message, reply, timeout=timeout))

    # -- receiving ----------------------------------------------------------------

    def next_message(self, timeout: float | None = None) -> Deferred[Message]:
        """The next queued message; fails with L{ConnectionClosed} at the end."""
        d: Deferred[Message] = Deferred()
        if self._messages:
            d.callback(self._messages.popleft())
        elif self.closed.called:
            d.errback(ConnectionClosed(self.close_code, self.close_reason))
        else:
            self._waiters.append(d)
            if timeout is not None:
                d.addTimeout(timeout, self.factory.reactor)
        return d

    async def wait_for(
        self, predicate: Callable[[Message], bool], timeout: float | None = 10.0
    ) -> Message:
        """Take messages until one satisfies C{predicate}; return it (the others are dropped)."""
        reactor = self.factory.reactor
        deadline = None if timeout is None else reactor.seconds() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - reactor.seconds())
            message = await self.next_message(left)
            if predicate(message):
                return message

    async def wait_for_type(self, *types: str, timeout: float | None = 10.0) -> Message:
        """Take messages until one of these types; return it."""
        return await self.wait_for(lambda m: m.get("type") in types, timeout)

    def pending(self) -> list[Message]:
        """Take every queued message."""
        messages = list(self._messages)
        self._messages.clear()
        return messages

    # -- Autobahn callbacks -------------------------------------------------------

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            message = {"type": None, "unparsed": payload.decode("utf-8", "replace")}
        kind = message.get("type") if isinstance(message, dict) else None
        self.counts[str(kind)] += 1
        if self.on_message is not None:
            self.on_message(message)
        if kind in self.ignore:
            return
        if self._waiters:
            self._waiters.popleft().callback(message)
        else:
            self._messages.append(message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_code, self.close_reason = code, reason
        if not self.opened.called:
            self.opened.errback(ConnectionClosed(code, reason))
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.called:
                waiter.errback(ConnectionClosed(code, reason))
        if not self.closed.called:
            self.closed.callback((code, reason))


def arena_url(base: str, arena_id: str, role: str = "player") -> str:
    """C{ws://host:port} + arena → C{ws://host:port/ws/arena/ID/player} (or C{/control})."""
    if role not in ("player", "control"):
        raise ValueError("role must be player or control")
    return f"{base.rstrip('/')}/ws/arena/{quote(arena_id, safe='')}/{role}"


async def connect(
    reactor: Any,
    base: str,
    arena_id: str = "default",
    role: str = "player",
    token: str | None = None,
    ignore: Iterable[str] = (),
    timeout: float = 10.0,
) -> ArenaClient:
    """
    Open an arena socket.  C{base} is C{ws://HOST:PORT}; C{token=None} connects
    anonymously (fine for a player).  Fails with L{ConnectionClosed} if the handshake is
    refused.
    """
    url = arena_url(base, arena_id, role)
    headers = {} if token is None else {"Authorization": f"Token {token}"}
    factory = WebSocketClientFactory(url, headers=headers)
    factory.protocol = ArenaClient
    factory.reactor = reactor
    factory.setProtocolOptions(openHandshakeTimeout=timeout, closeHandshakeTimeout=2)
    parts = urlsplit(url)
    endpoint = endpoints.TCP4ClientEndpoint(
        reactor, parts.hostname, parts.port or 80, timeout=timeout
    )
    protocol: ArenaClient = await endpoint.connect(factory)
    protocol.ignore = frozenset(ignore)
    d = protocol.opened
    d.addTimeout(timeout, reactor)
    try:
        return await d
    except DeferredTimeout:
        protocol.dropConnection(abort=True)
        raise
