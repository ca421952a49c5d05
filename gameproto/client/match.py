"""
A match WebSocket client on Autobahn's Twisted client.

L{connect} opens C{/ws/game/{match_id}/?role=ROLE} with C{Authorization: Token KEY}
and returns a L{MatchClient} once the WebSocket is open.  Every JSON frame the
server sends is queued: await them in order with L{MatchClient.next_frame}, or skip
to the one you want with L{MatchClient.wait_for}.  L{MatchClient.closed} fires
with C{(code, reason)} when the connection ends.

A bot that reacts to every frame sets C{on_frame} instead (or as well)::

    client = await connect(reactor, "ws://127.0.0.1:8000", token, 1, "challenger")
    client.on_frame = lambda f: client.command("up") if f.get("ball_y", 1) < 0.5 else None
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable
from urllib.parse import urlsplit

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeout

Frame = dict[str, Any]


class ConnectionClosed(Exception):
    """The connection ended while a frame was awaited."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"connection closed ({code}: {reason})")
        self.code = code
        self.reason = reason


class MatchClient(WebSocketClientProtocol):
    """One match connection.  Built by L{connect}; see the module docstring."""

    on_frame: Callable[[Frame], Any] | None = None
    # False: frames go to on_frame only and are not queued for next_frame (a bot
    # that never awaits frames would otherwise keep them all).
    keep_frames: bool = True

    def __init__(self) -> None:
        super().__init__()
        self._frames: deque[Frame] = deque()
        self._waiters: deque[Deferred[Frame]] = deque()
        self.opened: Deferred[MatchClient] = Deferred()
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.received = 0

    # -- sending ---------------------------------------------------------------

    def send(self, message: Any) -> None:
        """Send any JSON value as one text frame."""
        self.sendMessage(orjson.dumps(message), isBinary=False)

    def command(self, name: Any) -> None:
        """Send C{{"command": name}}: ready, start_match, up, down, fup, fdown."""
        self.send({"command": name})

    def send_raw(self, payload: bytes, binary: bool = False) -> None:
        """Send bytes as they are (malformed input, for tests)."""
        self.sendMessage(payload, isBinary=binary)

    def close(self, code: int = 1000, reason: str = "bye") -> None:
        self.sendClose(code=code, reason=reason)

    # -- receiving -------------------------------------------------------------

    def next_frame(self, timeout: float | None = None) -> Deferred[Frame]:
        """The next frame not yet taken; fails with L{ConnectionClosed} at the end."""
        d: Deferred[Frame] = Deferred()
        if self._frames:
            d.callback(self._frames.popleft())
        elif self.closed.called:
            d.errback(ConnectionClosed(self.close_code, self.close_reason))
        else:
            self._waiters.append(d)
            if timeout is not None:
                d.addTimeout(timeout, self.factory.reactor)
        return d

    async def wait_for(self, predicate: Callable[[Frame], bool], timeout: float | None = None) -> Frame:
        """Take frames until one satisfies C{predicate}; return it."""
        deadline = None if timeout is None else self.factory.reactor.seconds() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - self.factory.reactor.seconds())
            frame = await self.next_frame(left)
            if predicate(frame):
                return frame

    async def wait_for_type(self, message_type: str, timeout: float | None = None) -> Frame:
        """Take frames until one with this C{message_type} (lobby, init, status, end)."""
        return await self.wait_for(lambda f: f.get("message_type") == message_type, timeout)

    def pending(self) -> list[Frame]:
        """Take every frame received and not yet taken."""
        frames = list(self._frames)
        self._frames.clear()
        return frames

    # -- Autobahn callbacks ----------------------------------------------------

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            frame = {"unparsed": payload.decode("utf-8", "replace")}
        self.received += 1
        if self.on_frame is not None:
            self.on_frame(frame)
        if self._waiters:
            self._waiters.popleft().callback(frame)
        elif self.keep_frames:
            self._frames.append(frame)

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


def match_url(base: str, match_id: int | str, role: str | None, query: str | None = None) -> str:
    """C{ws://host:port} + match → C{ws://host:port/ws/game/ID/?role=ROLE}."""
    if query is None:
        query = "" if role is None else f"?role={role}"
    return f"{base.rstrip('/')}/ws/game/{match_id}/{query}"


async def connect(
    reactor: Any,
    base: str,
    token: str | None,
    match_id: int | str,
    role: str | None = "spectator",
    query: str | None = None,
    timeout: float = 10.0,
) -> MatchClient:
    """
    Open a match socket.  C{base} is C{ws://HOST:PORT}; C{token=None} connects
    unauthenticated; C{query} overrides C{?role=...} as a whole (for tests).
    Fails with L{ConnectionClosed} if the handshake is refused.
    """
    url = match_url(base, match_id, role, query)
    headers = {} if token is None else {"Authorization": f"Token {token}"}
    factory = WebSocketClientFactory(url, headers=headers)
    factory.protocol = MatchClient
    factory.reactor = reactor
    factory.setProtocolOptions(openHandshakeTimeout=timeout, closeHandshakeTimeout=2)
    parts = urlsplit(url)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, parts.hostname, parts.port or 80, timeout=timeout)
    protocol: MatchClient = await endpoint.connect(factory)
    d = protocol.opened
    d.addTimeout(timeout, reactor)
    try:
        return await d
    except DeferredTimeout:
        protocol.dropConnection(abort=True)
        raise
