"""
The match WebSocket endpoint, C{/ws/game/{match_id}/?role=host|challenger|spectator}.

L{MatchProtocol} is a thin adapter: it runs the two handshake checks that need
only the request (authentication, query string), turns every frame into one input
of the connection's state machine, and exposes the inputs the match service
drives (game started, match over, replaced).  The rules of who may say what, and
when, are the machine's transitions below; a message with no transition in the
current state gets the documented error.

States of one connection::

    Opening ──refused (handshake checks)─────────────────────────────▶ Closed
       │ join                                                          ▲
       ▼                                                               │
    Joining ──refused (codes 5, 8, 9, 10)──────────────────────────────┤
       │ hostJoined        challengerJoined     spectatorJoined  playerRejoined
       ▼                         ▼                    ▼              │
    HostLobby             ChallengerLobby ──ready──▶ ChallengerReady │
       │ gameStarted             │                    │ gameStarted  │
       └──────────────▶ Playing ◀┴────────────────────┘◀─────────────┘
                           │ matchOver                     Spectating
                           ▼                                   │
                        Finished ──farewell (end / code 4)──▶ Closed ◀─ lost, replaced, shutdown

Joining waits for the match directory (on another node's Redis, or at once on a
single node); what the client sends meanwhile is held and handled, in order, once
it is seated.  A connection lost while joining gives its seat back when the join
ends.  The host's C{startMatch} is answered by the service: C{challengerNotReady}
sends code 3, a start moves the players on with C{gameStarted}.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol
from urllib.parse import parse_qsl, urlsplit

import attrs
from automat import NoTransition, TypeMachineBuilder
from twisted.logger import Logger

from gameproto import wire
from gameproto.match import frames
from gameproto.match.frames import Refusal, Role
from gameproto.match.live import Seat
from gameproto.match.lobby import JoinRefused, StartOutcome
from gameproto.match.pong import PaddleCommand
from gameproto.match.service import MatchService
from gameproto.wire import CloseCode, Malformed


class MatchInputs(Protocol):
    """Everything that can happen to one match connection."""

    # The handshake's outcome.
    def refused(self, refusal: Refusal) -> None: ...

    def join(self, match_id: str, username: str, role: Role) -> None: ...

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
    def challengerNotReady(self) -> None: ...

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
    service: MatchService
    seat: Seat | None = None
    # What the client sent while joining, handled once seated.
    held: list[Callable[[MatchInputs], None]] = attrs.Factory(list)
    # Told the outcome of each start_match (a WebSocket hears only code 3; a
    # program's engine answers every call: gameproto.processor.match_engine).
    on_start: Callable[[StartOutcome], None] | None = None

    def send(self, message: Any) -> None:
        self.connection.sendObject(message)

    def leave(self) -> None:
        if self.seat is not None:
            self.service.leave(self.seat)


builder = TypeMachineBuilder(MatchInputs, MatchCore)
Opening = builder.state("Opening")
Joining = builder.state("Joining")
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
_SEATED = (MatchInputs.hostJoined, MatchInputs.challengerJoined, MatchInputs.spectatorJoined,
           MatchInputs.playerRejoined)
# How each command input is replayed once a joining connection is seated.
_REPLAY: dict[Any, Callable[..., Callable[[MatchInputs], None]]] = {
    MatchInputs.ready: lambda: lambda machine: machine.ready(),
    MatchInputs.startMatch: lambda: lambda machine: machine.startMatch(),
    MatchInputs.paddle: lambda command: lambda machine: machine.paddle(command),
    MatchInputs.invalidCommand: lambda: lambda machine: machine.invalidCommand(),
    MatchInputs.noCommand: lambda: lambda machine: machine.noCommand(),
}


# -- the handshake --------------------------------------------------------------


def refuse(inputs: MatchInputs, core: MatchCore, refusal: Refusal) -> None:
    core.send(refusal.frame())
    core.connection.closeWith(refusal.close, refusal.error)


for _state in (Opening, Joining):
    _state.upon(MatchInputs.refused).to(Closed)(refuse)
Closed.upon(MatchInputs.refused).loop().returns(None)  # gone while joining


@Opening.upon(MatchInputs.join).to(Joining)
def join(inputs: MatchInputs, core: MatchCore, match_id: str, username: str, role: Role) -> None:
    d = core.service.join(match_id, username, role, core.connection)

    def seated(seat: Seat) -> None:
        if seat.role is Role.SPECTATOR:
            inputs.spectatorJoined(seat)
        elif seat.match.record.is_started:
            inputs.playerRejoined(seat)
        elif seat.role is Role.HOST:
            inputs.hostJoined(seat)
        else:
            inputs.challengerJoined(seat)

    def refused(failure: Any) -> None:
        if failure.check(JoinRefused):
            inputs.refused(failure.value.refusal)
            return
        MatchProtocol._log.failure("Match join", failure)
        inputs.refused(frames.UNAVAILABLE)

    d.addCallbacks(seated, refused)


def _welcome(inputs: MatchInputs, core: MatchCore, seat: Seat) -> None:
    core.seat = seat
    core.send(frames.SUCCESS)
    core.service.welcome(seat)
    held, core.held = core.held, []
    for replay in held:
        replay(inputs)  # handled in the new state, after this output


for _input, _state in zip(_SEATED, (HostLobby, ChallengerLobby, Spectating, Playing)):
    Joining.upon(_input).to(_state)(_welcome)


def _give_back(inputs: MatchInputs, core: MatchCore, seat: Seat) -> None:
    core.service.leave(seat)  # the connection went away while joining


for _input in _SEATED:
    Closed.upon(_input).loop()(_give_back)


def _holder(command: Any) -> Callable[..., None]:
    def hold(inputs: MatchInputs, core: MatchCore, *args: Any) -> None:
        core.held.append(_REPLAY[command](*args))

    return hold


for _input in _REPLAY:
    Joining.upon(_input).loop()(_holder(_input))


# -- the lobby ------------------------------------------------------------------


@HostLobby.upon(MatchInputs.startMatch).loop()
def start_match(inputs: MatchInputs, core: MatchCore) -> None:
    # A start moves this machine to Playing through gameStarted; no ack: lobby and
    # init confirm it.  A challenger not ready is the service's answer.
    assert core.seat is not None

    def answered(outcome: StartOutcome) -> None:
        if outcome is StartOutcome.NOT_READY:
            inputs.challengerNotReady()
        if core.on_start is not None:
            core.on_start(outcome)

    core.service.start_match(core.seat).addCallback(answered)


@HostLobby.upon(MatchInputs.challengerNotReady).loop()
def challenger_not_ready(inputs: MatchInputs, core: MatchCore) -> None:
    core.send(frames.CHALLENGER_NOT_READY)


@ChallengerLobby.upon(MatchInputs.ready).to(ChallengerReady)
def ready(inputs: MatchInputs, core: MatchCore) -> None:
    assert core.seat is not None
    core.service.ready(core.seat)


@Playing.upon(MatchInputs.paddle).loop()
def move_paddle(inputs: MatchInputs, core: MatchCore, command: PaddleCommand) -> None:
    assert core.seat is not None
    core.service.paddle(core.seat, command)


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

# The answer to a start that did not start, once the connection has moved on.
for _state in (Joining, ChallengerLobby, ChallengerReady, Playing, Spectating, Finished, Closed):
    _state.upon(MatchInputs.challengerNotReady).loop().returns(None)
for _state in (HostLobby, ChallengerReady):
    _state.upon(MatchInputs.gameStarted).to(Playing).returns(None)
for _state in (Playing, Spectating, Closed, ChallengerLobby, Finished):
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
for _state in (Opening, Joining):
    _state.upon(MatchInputs.lost).to(Closed).returns(None)
Closed.upon(MatchInputs.lost).loop().returns(None)


def _shutting_down(inputs: MatchInputs, core: MatchCore) -> None:
    core.send(frames.SHUTTING_DOWN)
    core.connection.closeWith(CloseCode.SHUTTING_DOWN, "server shutting down")


for _state in (Opening, Joining, *_JOINED):
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


def feed_command(machine: MatchInputs, message: dict[str, Any]) -> None:
    """
    One client message as its input of a connection's machine: a socket's frame, or a
    program's C{send} (gameproto.processor.match_engine).
    """
    if "command" not in message:
        machine.noCommand()
        return
    command = message["command"]
    if command == "ready":
        machine.ready()
    elif command == "start_match":
        machine.startMatch()
    elif isinstance(command, str) and (paddle := PaddleCommand.parse(command)) is not None:
        machine.paddle(paddle)
    else:
        machine.invalidCommand()


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
    metrics_protocol = "match"

    def connectionOpened(self) -> None:
        self._core = MatchCore(self, self.factory.service)
        self.machine: MatchInputs = MatchMachine(self._core)
        if self.user is None:
            self.machine.refused(frames.UNAUTHENTICATED)
            return
        role = parse_role(self.http_request_uri)
        if isinstance(role, Refusal):
            self.machine.refused(role)
            return
        self.machine.join(match_id_of(self.postpath), self.user.username, role)

    def objectReceived(self, message: dict[str, Any]) -> None:
        self._input(feed_command, self.machine, message)

    def malformedFrame(self, problem: Malformed) -> None:
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
