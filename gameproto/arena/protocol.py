"""
The arena's two WebSocket endpoints:

  - C{/ws/arena/{arena_id}/player}: a bot (a token is optional and attributes the bot
    to its user);
  - C{/ws/arena/{arena_id}/control}: the arena's controller, with the owner's token.

Each protocol is a thin adapter around a state machine.  The adapter decodes frames
(malformed ones become C{InvalidCommandError}s with a reason; the connection and the
arena carry on), parses commands, and turns what the arena sends this connection into
the machine's lifecycle inputs.  Whether a command is legal now is the engine's call,
made when its tick applies it (see gameproto.arena.engine); the machines decide who is
attached to the arena, when, and how each connection ends.

Attaching is asynchronous on any number of nodes: a connection starts in C{Joining}
while the service finds where its arena runs (L{ArenaService.locate}: here, or on
another node through the relay); the commands and malformed frames it receives meanwhile
wait, and are applied in order once it has joined.

A player's connection::

    Joining ──refused (no such arena: 4004; Redis unreachable: 4011)─────▶ Closed
       │ joined                                                             ▲
       ▼                                                                    │ lost,
    Connected ──RegisterPlayerAck──▶ Registered ──StartGameOrder──▶ Playing  │ arenaClosed
       ▲                              (parked: stays    │                   │ (from any
       │                               on game over)    │ PlayerDestroyed    │  state)
       │                                                ▼                   │
       └────────────── GameOverNotification ◀──── Destroyed ◀───────────────┘
                       (from Playing or Destroyed)

A controller's connection::

    Joining ──refused (4001 unauthenticated, 4003 not the owner, 4004, 4011)──▶ Closed
       │ authorized                                                           ▲
       ▼                                                                      │
    Controlling ──replaced (4009), arenaClosed (1000), lost──────────────────┘
"""

from __future__ import annotations

from typing import Any, Callable, Protocol
from urllib.parse import unquote

import attrs
from automat import NoTransition, TypeMachineBuilder
from autobahn.twisted.resource import WebSocketResource
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource

from gameproto import wire, web
from gameproto.arena.commands import Command, InvalidCommand, parse_command
from gameproto.arena.engine import invalid_command_error
from gameproto.arena.arena import ArenaHandle, Frame
from gameproto.arena.service import ArenaService
from gameproto.store import StoreError
from gameproto.wire import CloseCode, Malformed

_log = Logger()

NO_SUCH_ARENA = "no such arena"
UNAUTHENTICATED = "unauthenticated"
UNREACHABLE = "the arena's node cannot be reached; try again"


class Connection(Protocol):
    """What the machines need of their WebSocket: the adapter below, or a fake in tests."""

    def sendObject(self, message: Any) -> bool: ...

    def closeWith(self, code: CloseCode, reason: str) -> None: ...


def _refuse(connection: Connection, reason: str, code: CloseCode) -> None:
    connection.sendObject(invalid_command_error(reason))
    connection.closeWith(code, reason)


# ---------------------------------------------------------------------------
# The player's machine


class PlayerInputs(Protocol):
    """Everything that can happen to one player connection."""

    # The handshake's outcome.
    def joined(self, arena: ArenaHandle) -> None: ...

    def refused(self, reason: str, code: CloseCode) -> None: ...

    # The client's frames.
    def command(self, command: Command) -> None: ...

    def invalid(self, reason: str) -> None: ...

    # What the arena tells this player.
    def acknowledged(self, player_id: str) -> None: ...

    def startOrdered(self) -> None: ...

    def destroyed(self) -> None: ...

    def gameOver(self) -> None: ...

    def arenaClosed(self, reason: str) -> None: ...

    # The connection is gone.
    def lost(self) -> None: ...


@attrs.define
class PlayerCore:
    """
    A player connection's dependencies and what it knows: C{socket} is its key in the
    arena (the protocol itself), C{username} the user it is attributed to, if any.
    """

    connection: Connection
    socket: Any
    username: str | None = None
    arena: ArenaHandle | None = None
    player_id: str | None = None
    waiting: list[tuple[Callable[..., None], Any]] = attrs.Factory(list)


player = TypeMachineBuilder(PlayerInputs, PlayerCore)
PJoining = player.state("Joining")
PConnected = player.state("Connected")
PRegistered = player.state("Registered")
PPlaying = player.state("Playing")
PDestroyed = player.state("Destroyed")
PClosed = player.state("Closed")
_LIVE_PLAYER = (PConnected, PRegistered, PPlaying, PDestroyed)


@PJoining.upon(PlayerInputs.refused).to(PClosed)
def _player_refused(
    inputs: PlayerInputs, core: PlayerCore, reason: str, code: CloseCode
) -> None:
    _refuse(core.connection, reason, code)


def _submit(inputs: PlayerInputs, core: PlayerCore, command: Command) -> None:
    assert core.arena is not None
    core.arena.submit(core.socket, command)


def _player_invalid(inputs: PlayerInputs, core: PlayerCore, reason: str) -> None:
    core.connection.sendObject(invalid_command_error(reason))


def _player_lost(inputs: PlayerInputs, core: PlayerCore) -> None:
    assert core.arena is not None
    core.arena.remove_player(core.socket)


def _player_arena_closed(inputs: PlayerInputs, core: PlayerCore, reason: str) -> None:
    core.connection.closeWith(CloseCode.NORMAL, reason)


@PJoining.upon(PlayerInputs.joined).to(PConnected)
def _player_joined(inputs: PlayerInputs, core: PlayerCore, arena: ArenaHandle) -> None:
    core.arena = arena
    arena.add_player(core.socket)
    _replay(inputs, core)


@PJoining.upon(PlayerInputs.command).loop()
def _player_command_waits(inputs: PlayerInputs, core: PlayerCore, command: Command) -> None:
    core.waiting.append((_submit, command))


@PJoining.upon(PlayerInputs.invalid).loop()
def _player_invalid_waits(inputs: PlayerInputs, core: PlayerCore, reason: str) -> None:
    core.waiting.append((_player_invalid, reason))


for _state in _LIVE_PLAYER:
    _state.upon(PlayerInputs.command).loop()(_submit)
    _state.upon(PlayerInputs.invalid).loop()(_player_invalid)
    _state.upon(PlayerInputs.lost).to(PClosed)(_player_lost)
    _state.upon(PlayerInputs.arenaClosed).to(PClosed)(_player_arena_closed)


@PConnected.upon(PlayerInputs.acknowledged).to(PRegistered)
def _registered(inputs: PlayerInputs, core: PlayerCore, player_id: str) -> None:
    core.player_id = player_id
    _log.debug(
        "Arena {arena}: player {player} registered (user {user})",
        arena=core.arena.id if core.arena else None, player=player_id, user=core.username,
    )


PRegistered.upon(PlayerInputs.startOrdered).to(PPlaying).returns(None)
# A player parked during a started game stays registered into the next round.
PRegistered.upon(PlayerInputs.gameOver).loop().returns(None)
PPlaying.upon(PlayerInputs.destroyed).to(PDestroyed).returns(None)
# The round is cleared: register again to play the next one.
PPlaying.upon(PlayerInputs.gameOver).to(PConnected).returns(None)
PDestroyed.upon(PlayerInputs.gameOver).to(PConnected).returns(None)

# Before it joins, a connection has nothing to leave; once closed, nothing matters (the
# arena located for a connection that is gone meanwhile is not joined).
PJoining.upon(PlayerInputs.lost).to(PClosed).returns(None)
for _input in (PlayerInputs.command, PlayerInputs.invalid, PlayerInputs.lost,
               PlayerInputs.arenaClosed, PlayerInputs.gameOver, PlayerInputs.joined,
               PlayerInputs.refused):
    PClosed.upon(_input).loop().returns(None)  # type: ignore[arg-type]

PlayerMachine = player.build()


# ---------------------------------------------------------------------------
# The controller's machine


class ControllerInputs(Protocol):
    """Everything that can happen to one controller connection."""

    def authorized(self, arena: ArenaHandle) -> None: ...

    def refused(self, reason: str, code: CloseCode) -> None: ...

    def command(self, command: Command) -> None: ...

    def invalid(self, reason: str) -> None: ...

    def replaced(self) -> None: ...

    def arenaClosed(self, reason: str) -> None: ...

    def lost(self) -> None: ...


@attrs.define
class ControllerCore:
    connection: Connection
    socket: Any
    username: str | None = None
    arena: ArenaHandle | None = None
    waiting: list[tuple[Callable[..., None], Any]] = attrs.Factory(list)


def _replay(inputs: Any, core: PlayerCore | ControllerCore) -> None:
    """Apply what the connection sent while it was joining, in order."""
    waiting, core.waiting = core.waiting, []
    for handler, argument in waiting:
        handler(inputs, core, argument)


controller = TypeMachineBuilder(ControllerInputs, ControllerCore)
CJoining = controller.state("Joining")
CControlling = controller.state("Controlling")
CClosed = controller.state("Closed")


@CJoining.upon(ControllerInputs.authorized).to(CControlling)
def _controller_authorized(
    inputs: ControllerInputs, core: ControllerCore, arena: ArenaHandle
) -> None:
    core.arena = arena
    arena.set_controller(core.socket)
    _replay(inputs, core)


@CJoining.upon(ControllerInputs.refused).to(CClosed)
def _controller_refused(
    inputs: ControllerInputs, core: ControllerCore, reason: str, code: CloseCode
) -> None:
    _refuse(core.connection, reason, code)


@CControlling.upon(ControllerInputs.command).loop()
def _control(inputs: ControllerInputs, core: ControllerCore, command: Command) -> None:
    assert core.arena is not None
    core.arena.control(core.socket, command)


@CControlling.upon(ControllerInputs.invalid).loop()
def _controller_invalid(inputs: ControllerInputs, core: ControllerCore, reason: str) -> None:
    core.connection.sendObject(invalid_command_error(reason))


@CControlling.upon(ControllerInputs.replaced).to(CClosed)
def _replaced(inputs: ControllerInputs, core: ControllerCore) -> None:
    # The arena already points at the newer controller: nothing to detach.
    core.connection.closeWith(CloseCode.REPLACED, "replaced by a newer controller")


@CControlling.upon(ControllerInputs.arenaClosed).to(CClosed)
def _controller_arena_closed(inputs: ControllerInputs, core: ControllerCore, reason: str) -> None:
    core.connection.closeWith(CloseCode.NORMAL, reason)


@CControlling.upon(ControllerInputs.lost).to(CClosed)
def _controller_lost(inputs: ControllerInputs, core: ControllerCore) -> None:
    assert core.arena is not None
    core.arena.remove_controller(core.socket)


@CJoining.upon(ControllerInputs.command).loop()
def _control_waits(inputs: ControllerInputs, core: ControllerCore, command: Command) -> None:
    core.waiting.append((_control, command))


@CJoining.upon(ControllerInputs.invalid).loop()
def _controller_invalid_waits(inputs: ControllerInputs, core: ControllerCore, reason: str) -> None:
    core.waiting.append((_controller_invalid, reason))


CJoining.upon(ControllerInputs.lost).to(CClosed).returns(None)
for _input in (ControllerInputs.command, ControllerInputs.invalid, ControllerInputs.lost,
               ControllerInputs.replaced, ControllerInputs.arenaClosed,
               ControllerInputs.authorized, ControllerInputs.refused):
    CClosed.upon(_input).loop().returns(None)  # type: ignore[arg-type]

ControllerMachine = controller.build()


# ---------------------------------------------------------------------------
# The adapters


def arena_id_of(path: str) -> str:
    """
    C{/ws/arena/abc/player} (or C{.../player/}) → C{abc}: the segment before the endpoint's,
    wherever the resource is mounted.
    """
    segments = [segment for segment in path.split("/") if segment]
    return unquote(segments[-2]) if len(segments) >= 2 else ""


class _ArenaProtocol(wire.JSONProtocol):
    """What the player and controller adapters share: decoding into machine inputs."""

    _log = Logger()
    _machine: Any = None
    _arena_id = ""

    @property
    def service(self) -> ArenaService:
        return self.factory.arenas

    def onConnect(self, request: ConnectionRequest) -> Deferred[None]:
        self._arena_id = arena_id_of(request.path)
        return super().onConnect(request)

    def _join(self) -> None:
        """Find where the arena runs; the machine waits in C{Joining} meanwhile."""
        d = self.service.locate(self._arena_id)
        d.addCallbacks(self._located, self._unreachable)
        d.addErrback(lambda f: self._log.failure("Arena {arena}: attaching", f,
                                                 arena=self._arena_id))

    def _located(self, arena: ArenaHandle | None) -> None:
        raise NotImplementedError

    def _unreachable(self, failure: Any) -> None:
        failure.trap(StoreError)
        self._log.warn("Arena {arena}: cannot locate it: {why}", arena=self._arena_id,
                       why=failure.getErrorMessage())
        self._machine.refused(UNREACHABLE, CloseCode.INTERNAL_ERROR)

    def objectReceived(self, message: dict[str, Any]) -> None:
        try:
            command = parse_command(message)
        except InvalidCommand as e:
            self._machine.invalid(e.reason)
            return
        self._machine.command(command)

    def malformedFrame(self, problem: Malformed) -> None:
        self._machine.invalid(problem.value)

    def rateLimited(self) -> None:
        self.sendObject(invalid_command_error("rate limit exceeded: messages were dropped"))

    def connectionClosed(self, code: int | None) -> None:
        if self._machine is not None:
            self._machine.lost()

    def arenaClosed(self, reason: str) -> None:
        self._machine.arenaClosed(reason)

    def replaced(self) -> None:
        self._machine.replaced()

    def deliver(self, frame: Frame) -> None:
        """Send one of the arena's frames (encoded and framed once for all its recipients)."""
        if self.state == self.STATE_OPEN:
            self.sendPreparedMessage(frame.prepared(self.factory))

    def _username(self) -> str | None:
        return getattr(self.user, "username", None)


class ArenaPlayerProtocol(_ArenaProtocol):
    """C{/ws/arena/{arena_id}/player}."""

    endpoint = "arena player"
    metrics_protocol = "arena"

    # What the arena says to a player that moves its machine.
    _LIFECYCLE = {
        "StartGameOrder": "startOrdered",
        "PlayerDestroyedNotification": "destroyed",
        "GameOverNotification": "gameOver",
    }

    def connectionOpened(self) -> None:
        self._core = PlayerCore(self, self, self._username())
        self._machine = PlayerMachine(self._core)
        self._join()

    def _located(self, arena: ArenaHandle | None) -> None:
        if arena is None:
            self._machine.refused(NO_SUCH_ARENA, CloseCode.NOT_FOUND)
        else:
            self._machine.joined(arena)

    def deliver(self, frame: Frame) -> None:
        kind = frame.type
        try:
            if kind == "RegisterPlayerAck":
                self._machine.acknowledged(frame.message["data"]["id"])
            elif kind in self._LIFECYCLE:
                getattr(self._machine, self._LIFECYCLE[kind])()
        except NoTransition:
            # The engine is the authority on the game; a message the machine did not expect
            # is a bug to report, never a reason to withhold the message.
            self._log.failure("Arena {arena}: unexpected {kind} for a player",
                              arena=self._arena_id, kind=kind)
        super().deliver(frame)

    @property
    def player_id(self) -> str | None:
        return self._core.player_id

    @property
    def username(self) -> str | None:
        """The user this connection's players are attributed to (its token's)."""
        return self._username()


class ArenaControllerProtocol(_ArenaProtocol):
    """C{/ws/arena/{arena_id}/control}."""

    endpoint = "arena controller"
    metrics_protocol = "arena"

    def connectionOpened(self) -> None:
        self._machine = ControllerMachine(ControllerCore(self, self, self._username()))
        self._join()

    def _located(self, arena: ArenaHandle | None) -> None:
        if arena is None:
            self._machine.refused(NO_SUCH_ARENA, CloseCode.NOT_FOUND)
            return
        refusal = self.service.controller_refusal(arena, self._username())
        if refusal is None:
            self._machine.authorized(arena)
        elif refusal == UNAUTHENTICATED:
            self._machine.refused(refusal, CloseCode.UNAUTHENTICATED)
        else:
            self._machine.refused(refusal, CloseCode.FORBIDDEN)


# ---------------------------------------------------------------------------
# Mounting


def arena_resource(
    arenas: ArenaService, limits: wire.EndpointLimits, context: wire.WireContext
) -> IResource:
    """
    The resource to mount at C{/ws/arena}: C{{arena_id}/player} and C{{arena_id}/control}
    for any id (an unknown one is refused after the handshake, with "no such arena").
    """
    players = wire.make_factory(ArenaPlayerProtocol, limits, context, arenas=arenas)
    controllers = wire.make_factory(ArenaControllerProtocol, limits, context, arenas=arenas)
    per_arena = web.Tree()
    per_arena.putChild(b"player", WebSocketResource(players))
    per_arena.putChild(b"control", WebSocketResource(controllers))
    return _AnyArena(per_arena)


class _AnyArena(web.Tree):
    """Routes C{/{arena_id}/...} to the same endpoints whatever the id."""

    def __init__(self, per_arena: Resource) -> None:
        super().__init__()
        self._per_arena = per_arena

    def getChild(self, path: bytes, request: Any) -> IResource:
        if not path:
            return super().getChild(path, request)
        return self._per_arena
