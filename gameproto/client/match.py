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

from typing import Any, Callable

from gameproto.client.base import ConnectionClosed, JSONClient, Message, open_client

Frame = Message

__all__ = ["ConnectionClosed", "MatchClient", "connect", "match_url"]


class MatchClient(JSONClient):
    """One match connection.  Built by L{connect}; see the module docstring."""

    def command(self, name: Any) -> None:
        """Send C{{"command": name}}: ready, start_match, up, down, fup, fdown."""
        self.send({"command": name})

    def next_frame(self, timeout: float | None = None) -> Any:
        """The next frame not yet taken; fails with L{ConnectionClosed} at the end."""
        return self.next_message(timeout)

    async def wait_for(
        self, predicate: Callable[[Frame], bool], timeout: float | None = None
    ) -> Frame:
        """Take frames until one satisfies C{predicate}; return it."""
        return await super().wait_for(predicate, timeout)

    async def wait_for_type(self, message_type: str, timeout: float | None = None) -> Frame:
        """Take frames until one with this C{message_type} (lobby, init, status, end)."""
        return await self.wait_for(lambda f: f.get("message_type") == message_type, timeout)

    # The match client's historical names for the base class's hooks.
    @property
    def on_frame(self) -> Callable[[Frame], Any] | None:
        return self.on_message

    @on_frame.setter
    def on_frame(self, callback: Callable[[Frame], Any] | None) -> None:
        self.on_message = callback

    @property
    def keep_frames(self) -> bool:
        return self.keep_messages

    @keep_frames.setter
    def keep_frames(self, keep: bool) -> None:
        self.keep_messages = keep


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
    return await open_client(reactor, match_url(base, match_id, role, query), MatchClient,
                             token, timeout)
