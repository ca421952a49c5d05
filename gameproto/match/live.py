"""
A match as one node sees it: its record as last changed, this node's connections
to it (their L{Seat}s) and, on the node that runs it, the game and its tick loop.

Connections are driven through L{gameproto.match.sink.MatchSocket}, whose methods
are inputs of each connection's state machine (gameproto.match.protocol) or plain
frame writes.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.task import LoopingCall

from gameproto import wire
from gameproto.match import frames
from gameproto.match.directory import Place, SeatRef
from gameproto.match.frames import Role
from gameproto.match.pong import PongGame, Side
from gameproto.match.sink import MatchSocket, deliver
from gameproto.store import OngoingMatch
from gameproto.ticks import TickTimes



@attrs.define(eq=False)
class Seat:
    """
    One connection's hold on a role of a match, on this node.  C{ref} names it in the
    directory, so that its leave frees only its own role, never that of a newer
    connection of the same user (on any node).
    """

    match: LiveMatch
    role: Role
    username: str
    socket: MatchSocket
    ref: SeatRef
    # Whether joining changed the lobby, so everyone hears of it, or not, so only the
    # joiner gets the current state.
    lobby_changed: bool = False

    @property
    def key(self) -> tuple[str, Role]:
        return self.username.lower(), self.role

    @property
    def place(self) -> Place:
        return Place(self.match.id, self.role, self.ref)

    @property
    def side(self) -> Side:
        return Side.LEFT if self.role is Role.HOST else Side.RIGHT

    @property
    def current(self) -> bool:
        """Whether this connection still holds the role here, in a match not over."""
        return not self.match.ended and self.match.seats.get(self.key) is self


@attrs.define(eq=False)
class LiveMatch:
    """This node's view of one ongoing match."""

    record: OngoingMatch
    seq: int = 0
    seats: dict[tuple[str, Role], Seat] = attrs.Factory(dict)
    owner: bool = False  # whether this node runs the game
    game: PongGame | None = None
    loop: LoopingCall | None = None
    ended: bool = False
    ticks: int = 0
    # How late its ticks ran here, for its log line.
    lateness: TickTimes = attrs.Factory(lambda: TickTimes("match"))
    # Its replay being recorded, on the node that runs the game (gameproto.match.replay).
    recorder: Any = None

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def running(self) -> bool:
        return self.game is not None and not self.ended

    @property
    def runs_here(self) -> bool:
        """Whether this node runs (or ran, until its end is told) the game."""
        return self.owner or self.game is not None

    def sockets(self) -> list[MatchSocket]:
        return [seat.socket for seat in self.seats.values()]

    def player_sockets(self) -> list[MatchSocket]:
        return [seat.socket for seat in self.seats.values() if seat.role is not Role.SPECTATOR]

    def apply(self, record: OngoingMatch, seq: int) -> bool:
        """Keep C{record} if it is newer than the one here; C{True} if kept."""
        if seq <= self.seq:
            return False
        self.seq = seq
        self.record = record
        return True

    def take(self, seat: Seat) -> Seat | None:
        """Seat a connection; the older one of the same user and role, if any, is unseated."""
        old = self.seats.get(seat.key)
        self.seats[seat.key] = seat
        return old

    def vacate(self, seat: Seat) -> bool:
        """Unseat C{seat}; C{False} if it no longer held the role here."""
        if self.seats.get(seat.key) is not seat:
            return False
        del self.seats[seat.key]
        return True

    def send_here(self, message: Any) -> None:
        """A frame for this node's sockets of the match."""
        deliver(self.sockets(), wire.encode(message))

    def send_lobby(self) -> None:
        self.send_here(frames.lobby(self.record))

    def over(self) -> None:
        """The game is over: every socket here stops playing (the last frame follows)."""
        if not self.ended:
            self.ended = True
            for socket in self.sockets():
                socket.matchOver()

    def farewell(self, last: dict[str, Any]) -> None:
        """C{last} to every socket here, then each is closed with 1000."""
        sockets = self.sockets()
        if sockets:
            prepared = sockets[0].prepare(wire.encode(last))
            for socket in sockets:
                socket.farewell(prepared)

    def stop_loop(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.loop = None
