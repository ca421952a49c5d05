"""
What every gameproto WebSocket client shares: a queue of JSON messages to await in
order, predicates to skip to the one wanted, and the connection's lifecycle as
Deferreds.  The match, arena and processor clients add their protocol's commands.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeout

Message = dict[str, Any]
C = TypeVar("C", bound="JSONClient")


class ConnectionClosed(Exception):
    """The connection ended while a message was awaited (or before it opened)."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"connection closed ({code}: {reason})")
        self.code = code
        self.reason = reason


class JSONClient(WebSocketClientProtocol):
    """
    A connection whose server sends JSON text frames.  Every message is queued
    unless L{accept} says otherwise; C{on_message} sees each one as it arrives.
    A frame that is not JSON becomes C{{"unparsed": text}}.
    """

    on_message: Callable[[Message], Any] | None = None
    # False: messages go to on_message only and are not queued (a bot that never
    # awaits messages would otherwise keep them all).
    keep_messages: bool = True

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[Message] = deque()
        self._waiters: deque[Deferred[Message]] = deque()
        self.opened: Deferred[Any] = Deferred()
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.received = 0

    # -- sending ---------------------------------------------------------------

    def send(self, message: Any) -> None:
        """Send any JSON value as one text frame."""
        self.sendMessage(orjson.dumps(message), isBinary=False)

    def send_raw(self, payload: bytes, binary: bool = False) -> None:
        """Send bytes as they are (malformed input, for tests)."""
        self.sendMessage(payload, isBinary=binary)

    def close(self, code: int = 1000, reason: str = "bye") -> None:
        self.sendClose(code=code, reason=reason)

    # -- receiving -------------------------------------------------------------

    def accept(self, message: Message) -> bool:
        """Whether C{message} is queued; subclasses filter or answer messages here."""
        return self.keep_messages

    def next_message(self, timeout: float | None = None) -> Deferred[Message]:
        """The next queued message; fails with L{ConnectionClosed} at the end."""
        d: Deferred[Message] = Deferred()
        if self._queue:
            d.callback(self._queue.popleft())
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
        """Take messages until one whose C{"type"} is one of C{types}; return it."""
        return await self.wait_for(lambda m: m.get("type") in types, timeout)

    def pending(self) -> list[Message]:
        """Take every queued message."""
        messages = list(self._queue)
        self._queue.clear()
        return messages

    # -- Autobahn callbacks ----------------------------------------------------

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            message = {"unparsed": payload.decode("utf-8", "replace")}
        self.received += 1
        if self.on_message is not None:
            self.on_message(message)
        if not self.accept(message):
            return
        if self._waiters:
            self._waiters.popleft().callback(message)
        else:
            self._queue.append(message)

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


async def open_client(
    reactor: Any,
    url: str,
    protocol: type[C],
    token: str | None,
    timeout: float = 10.0,
    **options: Any,
) -> C:
    """
    Open C{url} (C{ws://HOST:PORT/path}) with C{Authorization: Token KEY} unless
    C{token} is None; fires with the protocol once the WebSocket is open, fails with
    L{ConnectionClosed} if the handshake is refused.  C{options} go to Autobahn's
    C{setProtocolOptions}.
    """
    headers = {} if token is None else {"Authorization": f"Token {token}"}
    factory = WebSocketClientFactory(url, headers=headers)
    factory.protocol = protocol
    factory.reactor = reactor
    factory.setProtocolOptions(
        openHandshakeTimeout=timeout, closeHandshakeTimeout=2, **options
    )
    parts = urlsplit(url)
    endpoint = endpoints.TCP4ClientEndpoint(
        reactor, parts.hostname, parts.port or 80, timeout=timeout
    )
    client: C = await endpoint.connect(factory)
    d = client.opened
    d.addTimeout(timeout, reactor)
    try:
        return await d
    except DeferredTimeout:
        client.dropConnection(abort=True)
        raise
