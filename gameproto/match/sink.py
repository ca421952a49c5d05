"""
Where a match's frames and changes go: this node's sockets, and, when several
nodes serve one match, the other nodes (L{IMatchSink}).

- L{LocalSink}: a single node; game frames go to its sockets, there is nobody else
  to tell.
- L{gameproto.match.relay.RelaySink}: the same, plus the bus: every event is
  published for the other nodes with sockets in the match, and paddle commands
  travel to the node that runs the game.

The events a node tells the others (L{MatchEvent}) are what changes a match
beyond one node: a new lobby (with the directory's sequence number, so that a
node keeps the newest), a connection taking a seat (the older one, wherever it
is, is closed), the start, every game frame, the end of the game and the last
frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

import attrs
from twisted.internet.defer import Deferred, succeed
from zope.interface import Interface, implementer

from gameproto.match.directory import SeatRef
from gameproto.match.frames import Role
from gameproto.match.pong import PaddleCommand, Side
from gameproto.store import OngoingMatch

if TYPE_CHECKING:
    from gameproto.match.live import LiveMatch


class MatchSocket(Protocol):
    """What the service needs from a connection (gameproto.match.protocol.MatchProtocol)."""

    def sendObject(self, message: Any) -> bool: ...

    def sendPrepared(self, prepared: Any) -> None: ...

    def prepare(self, payload: bytes) -> Any: ...

    def gameStarted(self) -> None: ...

    def matchOver(self) -> None: ...

    def farewell(self, prepared: Any) -> None: ...

    def replaced(self) -> None: ...


def deliver(sockets: list[MatchSocket], payload: bytes) -> None:
    """Send one encoded frame to C{sockets}, prepared once."""
    if not sockets:
        return
    # Any socket's factory frames the message: they all share the endpoint's.
    prepared = sockets[0].prepare(payload)
    for socket in sockets:
        socket.sendPrepared(prepared)


@attrs.frozen
class LobbyChanged:
    seq: int
    record: OngoingMatch


@attrs.frozen
class SeatTaken:
    """A connection took the role of C{username} (lower-cased): older ones are replaced."""

    username: str
    role: Role
    seat: SeatRef


@attrs.frozen
class GameStarted:
    seq: int
    record: OngoingMatch


@attrs.frozen
class GameFrame:
    """An encoded frame (init, status) for every socket of the match."""

    payload: bytes


@attrs.frozen
class GameOver:
    """The game has ended; its last frame follows (the result is being stored)."""


@attrs.frozen
class Farewell:
    """The match is over: the last frame for every socket, then a close 1000."""

    last: dict[str, Any]


MatchEvent = Union[LobbyChanged, SeatTaken, GameStarted, GameFrame, GameOver, Farewell]
EventHandler = Callable[[MatchEvent], None]
InputHandler = Callable[[Side, PaddleCommand], None]


class IMatchSink(Interface):
    """This node's way to the sockets of a match, here and on the other nodes."""

    def frame(match: "LiveMatch", payload: bytes) -> None:
        """A game frame for every socket of C{match}, on every node."""

    def tell(match_id: int, event: MatchEvent) -> None:
        """An event of the match for the other nodes, in the order told."""

    def forward(match_id: int, side: Side, command: PaddleCommand) -> None:
        """A paddle command of a socket here, for the node that runs the game."""

    def listen(match_id: int, hear: EventHandler) -> "Deferred[None]":
        """Hear the other nodes' events of the match until L{forget}; fires once listening."""

    def forget(match_id: int) -> None:
        """Stop hearing about the match (no socket of it is left here)."""

    def listen_inputs(match_id: int, hear: InputHandler) -> "Deferred[None]":
        """Hear the paddle commands forwarded for a game run here, until L{forget_inputs}."""

    def forget_inputs(match_id: int) -> None:
        """The game run here is over."""

    def drained() -> "Deferred[None]":
        """Fires once everything told so far has left this node."""


@implementer(IMatchSink)
class LocalSink:
    """A single node's: every socket of every match is here."""

    def frame(self, match: "LiveMatch", payload: bytes) -> None:
        deliver(match.sockets(), payload)

    def tell(self, match_id: int, event: MatchEvent) -> None:
        pass

    def forward(self, match_id: int, side: Side, command: PaddleCommand) -> None:
        pass  # every game runs here: never called

    def listen(self, match_id: int, hear: EventHandler) -> Deferred[None]:
        return succeed(None)

    def forget(self, match_id: int) -> None:
        pass

    def listen_inputs(self, match_id: int, hear: InputHandler) -> Deferred[None]:
        return succeed(None)

    def forget_inputs(self, match_id: int) -> None:
        pass

    def drained(self) -> Deferred[None]:
        return succeed(None)
