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

from collections import Counter
from typing import Any, Iterable
from urllib.parse import quote

from twisted.internet.defer import Deferred

from gameproto.client.base import ConnectionClosed, JSONClient, Message, open_client

ERROR = "InvalidCommandError"

__all__ = ["ArenaClient", "ConnectionClosed", "ERROR", "arena_url", "connect"]


class ArenaClient(JSONClient):
    """One arena connection (player or controller).  Built by L{connect}."""

    def __init__(self) -> None:
        super().__init__()
        self.ignore: frozenset[str] = frozenset()
        self.counts: Counter[str] = Counter()

    # -- commands ---------------------------------------------------------------

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

    def accept(self, message: Message) -> bool:
        kind = message.get("type") if isinstance(message, dict) else None
        self.counts[str(kind)] += 1
        return self.keep_messages and kind not in self.ignore


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
    client = await open_client(reactor, arena_url(base, arena_id, role), ArenaClient, token,
                               timeout)
    client.ignore = frozenset(ignore)
    return client
