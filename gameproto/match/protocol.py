"""
The match WebSocket endpoint, C{/ws/game/{match_id}/?role=host|challenger|spectator}.

L{MatchProtocol} is a thin adapter: it runs the two handshake checks that need
only the request (authentication, query string), turns every frame into one input
of the connection's state machine, and exposes the inputs the match service
drives (game started, match over, replaced).  The rules of who may say what, and
when, are the machine's transitions below; a message with no transition in the
current state gets the documented error.

States of one connection::

    Opening ──refused──────────────────────────────────────────────▶ Closed
       │ hostJoined        challengerJoined     spectatorJoined  playerRejoined
       ▼                         ▼                    ▼              │
    HostLobby             ChallengerLobby ──ready──▶ ChallengerReady │
       │ gameStarted             │                    │ gameStarted  │
       └──────────────▶ Playing ◀┴────────────────────┘◀─────────────┘
                           │ matchOver                     Spectating
                           ▼                                   │
                        Finished ──farewell (end / code 4)──▶ Closed ◀─ lost, replaced, shutdown
"""

from __future__ import annotations

from typing import Any, Callable, Protocol
from urllib.parse import parse_qsl, urlsplit

import attrs
from automat import NoTransition, TypeMachineBuilder
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gameproto import wire
from gameproto.match import frames
from gameproto.match.frames import Refusal, Role
from gameproto.match.pong import PaddleCommand
from gameproto.match.service import JoinRefused, MatchService, Seat
from gameproto.wire import CloseCode, Malformed


class MatchInputs(Protocol):
    """Everything that can happen to one match connection."""

    # The handshake's outcome.
    def refused(self, refusal: Refusal) -> None: ...

    def hostJoined(self, seat: Seat) -> None: ...

    def challengerJoined(self, seat: Seat) -> None: ...

    def spectatorJoined(self, seat: Seat) -> None: ...

    def playerRejoined(self, seat: Seat) -> None: ...

    # The client's messages, one input per command.
    def ready(self) -> None: ...

    def startMatch(self) -> None: ...

    def paddle(self, command: PaddleCommand) -> None: ...

    def noCommand(self) -> None: ...

    def invalidCommand(self) -> None: ...

    # From the match service.
    def gameStarted(self) -> None: ...

    def matchOver(self) -> None: ...

    def farewell(self, prepared: Any) -> None: ...

    def replaced(self) -> None: ...

    # From the connection and the server.
    def lost(self) -> None: ...

    def shuttingDown(self) -> None: ...


class Connection(Protocol):
    """What the machine's outputs use of the socket."""

    def sendObject(self, message: Any) -> bool: ...

    def sendPrepared(self, prepared: Any) -> None: ...

    def closeWith(self, code: CloseCode, reason: str) -> None: ...


@attrs.define
class MatchCore:
    connection: Connection
    seat: Seat | None = None

    def send(self, message: Any) -> None:
        self.connection.sendObject(message)

    def leave(self) -> None:
        if self.seat is not None:
            self.seat.leave()


builder = TypeMachineBuilder(MatchInputs, MatchCore)
Opening = builder.state("Opening")
HostLobby = builder.state("HostLobby")
ChallengerLobby = builder.state("ChallengerLobby")
ChallengerReady = builder.state("ChallengerReady")
Playing = builder.state("Playing")
Spectating = builder.state("Spectating")
Finished = builder.state("Finished")
Closed = builder.state("Closed")

_COMMANDS = (
    MatchInputs.ready,
    MatchInputs.startMatch,
    MatchInputs.paddle,
    MatchInputs.invalidCommand,
    MatchInputs.noCommand,
)
_JOINED = (HostLobby, ChallengerLobby, ChallengerReady, Playing, Spectating, Finished)


# -- the handshake --------------------------------------------------------------


@Opening.upon(MatchInputs.refused).to(Closed)
def refuse(inputs: MatchInputs, core: MatchCore, refusal: Refusal) -> None:
    core.send(refusal.frame())
    core.connection.closeWith(refusal.close, refusal.error)


def _welcome(inputs: MatchInputs, core: MatchCore, seat: Seat) -> None:
    core.seat = seat
    core.send(frames.SUCCESS)
    seat.welcome()


for _input, _state in [
    (MatchInputs.hostJoined, HostLobby),
    (MatchInputs.challengerJoined, ChallengerLobby),
    (MatchInputs.spectatorJoined, Spectating),
    (MatchInputs.playerRejoined, Playing),
]:
    Opening.upon(_input).to(_state)(_welcome)


# -- the lobby ------------------------------------------------------------------


@HostLobby.upon(MatchInputs.startMatch).loop()
def start_match(inputs: MatchInputs, core: MatchCore) -> None:
    # A start moves this machine to Playing through gameStarted (queued by Automat
    # until this output returns); no ack: lobby and init confirm it.
    assert core.seat is not None
    if not core.seat.start_match():
        core.send(frames.CHALLENGER_NOT_READY)


@ChallengerLobby.upon(MatchInputs.ready).to(ChallengerReady)
def ready(inputs: MatchInputs, core: MatchCore) -> None:
    assert core.seat is not None
    core.seat.ready()


@Playing.upon(MatchInputs.paddle).loop()
def move_paddle(inputs: MatchInputs, core: MatchCore, command: PaddleCommand) -> None:
    assert core.seat is not None
    core.seat.command(command)


def _invalid(inputs: MatchInputs, core: MatchCore, *args: Any) -> None:
    core.send(frames.INVALID_COMMAND)


def _no_command(inputs: MatchInputs, core: MatchCore) -> None:
    core.send(frames.NO_COMMAND)


def _match_ended(inputs: MatchInputs, core: MatchCore, *args: Any) -> None:
    core.send(frames.MATCH_ENDED)


def _ignore(inputs: MatchInputs, core: MatchCore, *args: Any) -> None:
    pass


_HANDLED = {
    (HostLobby, MatchInputs.startMatch),
    (ChallengerLobby, MatchInputs.ready),
    (Playing, MatchInputs.paddle),
}
for _state in (HostLobby, ChallengerLobby, ChallengerReady, Playing):
    for _input in _COMMANDS:
        if (_state, _input) in _HANDLED:
            continue
        _state.upon(_input).loop()(_no_command if _input is MatchInputs.noCommand else _invalid)
for _input in _COMMANDS:
    # Spectators get no reply to anything they send; after the end every player
    # message gets code 4.
    Spectating.upon(_input).loop()(_ignore)
    Finished.upon(_input).loop()(_match_ended)
    Closed.upon(_input).loop()(_ignore)


# -- the match service's events -------------------------------------------------

for _state in (HostLobby, ChallengerReady):
    _state.upon(MatchInputs.gameStarted).to(Playing).returns(None)
for _state in (Playing, Spectating, Closed):
    _state.upon(MatchInputs.gameStarted).loop().returns(None)
for _state in (HostLobby, ChallengerLobby, ChallengerReady, Playing):
    _state.upon(MatchInputs.matchOver).to(Finished).returns(None)
for _state in (Spectating, Finished, Closed):
    _state.upon(MatchInputs.matchOver).loop().returns(None)


def _farewell(inputs: MatchInputs, core: MatchCore, prepared: Any) -> None:
    core.connection.sendPrepared(prepared)
    core.connection.closeWith(CloseCode.NORMAL, "match ended")


for _state in (Finished, Spectating):
    _state.upon(MatchInputs.farewell).to(Closed)(_farewell)
Closed.upon(MatchInputs.farewell).loop()(_ignore)


def _replaced(inputs: MatchInputs, core: MatchCore) -> None:
    core.connection.closeWith(CloseCode.REPLACED, "replaced by a newer connection")


for _state in _JOINED:
    _state.upon(MatchInputs.replaced).to(Closed)(_replaced)
Closed.upon(MatchInputs.replaced).loop().returns(None)


# -- the connection -------------------------------------------------------------


def _lost(inputs: MatchInputs, core: MatchCore) -> None:
    core.leave()


for _state in _JOINED:
    _state.upon(MatchInputs.lost).to(Closed)(_lost)
Opening.upon(MatchInputs.lost).to(Closed).returns(None)
Closed.upon(MatchInputs.lost).loop().returns(None)


def _shutting_down(inputs: MatchInputs, core: MatchCore) -> None:
    core.send(frames.SHUTTING_DOWN)
    core.connection.closeWith(CloseCode.SHUTTING_DOWN, "server shutting down")


for _state in (Opening, *_JOINED):
    _state.upon(MatchInputs.shuttingDown).to(Closed)(_shutting_down)
Closed.upon(MatchInputs.shuttingDown).loop().returns(None)

MatchMachine = builder.build()


# -- the adapter ----------------------------------------------------------------


def parse_role(uri: str) -> Role | Refusal:
    """The role of a query string that is exactly C{role=...}, or the code 7 refusal."""
    pairs = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "role":
        return frames.BAD_QUERY_KEY
    try:
        return Role(pairs[0][1])
    except ValueError:
        return frames.BAD_QUERY_VALUE


def match_id_of(postpath: tuple[bytes, ...]) -> str:
    """
    The match id of the path below the endpoint's resource: C{12} of C{/ws/game/12/}
    (C{(b"12", b"")}) or C{/ws/game/12}; anything that is not one segment → C{""}.
    """
    if len(postpath) == 2 and postpath[1] == b"":
        postpath = postpath[:1]
    if len(postpath) != 1:
        return ""
    try:
        segment = postpath[0].decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return "" if "/" in segment else segment


class MatchProtocol(wire.JSONProtocol):
    """One match socket.  The factory carries C{service}; served by C{gameproto.web.WebSocketEndpoint}."""

    _log = Logger()
    endpoint = "match"

    def connectionOpened(self) -> None:
        self._core = MatchCore(self)
        self.machine: MatchInputs = MatchMachine(self._core)
        service: MatchService = self.factory.service
        if self.user is None:
            self.machine.refused(frames.UNAUTHENTICATED)
            return
        role = parse_role(self.http_request_uri)
        if isinstance(role, Refusal):
            self.machine.refused(role)
            return
        match_id = match_id_of(self.postpath)
        try:
            seat = service.join(match_id, self.user.username, role, self)
        except JoinRefused as e:
            self.machine.refused(e.refusal)
            return
        if isinstance(seat, Deferred):
            # Across nodes the join asks the shared store: frames that arrive
            # meanwhile wait for its outcome.
            self._waiting: list[Callable[[], None]] | None = []
            seat.addCallbacks(self._joined, self._join_failed)
            seat.addErrback(lambda f: self._log.failure("Match join", f))
            return
        self._joined(seat)

    def _joined(self, seat: Seat) -> None:
        waiting, self._waiting = getattr(self, "_waiting", None), None
        if self.state != self.STATE_OPEN and waiting is not None:
            seat.leave()  # gone while the store answered
            return
        role = seat.role
        if role is Role.SPECTATOR:
            self.machine.spectatorJoined(seat)
        elif seat.match.game is not None or seat.match.record.is_started:
            self.machine.playerRejoined(seat)
        elif role is Role.HOST:
            self.machine.hostJoined(seat)
        else:
            self.machine.challengerJoined(seat)
        for replay in waiting or ():
            replay()

    def _join_failed(self, failure: Any) -> None:
        self._waiting = None
        failure.trap(JoinRefused)
        if self.state == self.STATE_OPEN:
            self.machine.refused(failure.value.refusal)

    def objectReceived(self, message: dict[str, Any]) -> None:
        if getattr(self, "_waiting", None) is not None:
            self._waiting.append(lambda: self._object(message))  # type: ignore[union-attr]
            return
        self._object(message)

    def _object(self, message: dict[str, Any]) -> None:
        if "command" not in message:
            self._input(self.machine.noCommand)
            return
        command = message["command"]
        if command == "ready":
            self._input(self.machine.ready)
        elif command == "start_match":
            self._input(self.machine.startMatch)
        elif isinstance(command, str) and (paddle := PaddleCommand.parse(command)) is not None:
            self._input(self.machine.paddle, paddle)
        else:
            self._input(self.machine.invalidCommand)

    def malformedFrame(self, problem: Malformed) -> None:
        if getattr(self, "_waiting", None) is not None:
            self._waiting.append(  # type: ignore[union-attr]
                lambda: self._input(self.machine.invalidCommand))
            return
        self._input(self.machine.invalidCommand)

    def rateLimited(self) -> None:
        # At most once a second while messages are dropped; spectators get no
        # reply to anything, so they are not told either.
        seat = self._core.seat
        if seat is not None and seat.role is not Role.SPECTATOR:
            self.sendObject(frames.RATE_LIMITED)

    def connectionClosed(self, code: int | None) -> None:
        self.machine.lost()

    def serverShuttingDown(self) -> None:
        machine = getattr(self, "machine", None)
        if machine is None:  # never opened
            super().serverShuttingDown()
            return
        machine.shuttingDown()

    def _input(self, method: Any, *args: Any) -> None:
        try:
            method(*args)
        except NoTransition:  # pragma: no cover - every command has a transition in every state
            self.sendObject(frames.INVALID_COMMAND)

    # -- driven by the match service (each an input of the machine) ------------

    def gameStarted(self) -> None:
        self.machine.gameStarted()

    def matchOver(self) -> None:
        self.machine.matchOver()

    def farewell(self, prepared: Any) -> None:
        self.machine.farewell(prepared)

    def replaced(self) -> None:
        self.machine.replaced()

    # -- sending ------------------------------------------------------------------

    def sendObject(self, message: Any) -> bool:
        if self.state != self.STATE_OPEN:
            return False
        return super().sendObject(message)

    def prepare(self, payload: bytes) -> Any:
        return self.factory.prepareMessage(payload)

    def sendPrepared(self, prepared: Any) -> None:
        # Autobahn writes a prepared message whatever the connection's state.
        if self.state == self.STATE_OPEN:
            self.sendPreparedMessage(prepared)
