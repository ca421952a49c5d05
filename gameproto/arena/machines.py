"""
The state machines of the arena's WebSocket connections (gameproto.arena.protocol adapts
them to their sockets): a player's and a controller's.

Attaching is asynchronous on any number of nodes: a connection starts in C{Joining}
while the service finds where its arena runs (L{ArenaService.locate}: here, or on
another node through the relay); the commands and malformed frames it receives meanwhile
wait, and are applied in order once it has joined.

Commands are every connection's hot path (each bot sends one every tick), so they do not
go through a transition: the transitions into a state that handles them differently set
the core's C{command_handler}, and the adapter hands each command to it.  The machine
stays the one authority on what a command does in each state; its C{command} input does
the same as the adapter (it calls the handler and stays where it is).  A command goes:

  - in C{Joining}: into the queue of what waits for the arena (see above);
  - once joined (a player's C{Connected}, C{Registered}, C{Playing} and C{Destroyed}, a
    controller's C{Controlling}): to the arena, its C{submit} or C{control}, whose engine
    judges it;
  - in C{Closed}: nowhere, whichever way the connection ended (refused, lost, replaced,
    its arena closed).

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

from functools import partial
from typing import Any, Callable, Protocol

import attrs
from automat import TypeMachineBuilder
from twisted.logger import Logger

from gameproto.arena.arena import ArenaHandle
from gameproto.arena.commands import Command
from gameproto.arena.engine import invalid_command_error
from gameproto.wire import CloseCode

_log = Logger()


class Connection(Protocol):
    """
    What the machines need of their WebSocket: an adapter of gameproto.arena.protocol, or
    a fake in tests.
    """

    def sendObject(self, message: Any) -> bool: ...

    def closeWith(self, code: CloseCode, reason: str) -> None: ...


def _refuse(connection: Connection, reason: str, code: CloseCode) -> None:
    connection.sendObject(invalid_command_error(reason))
    connection.closeWith(code, reason)


def _dropped(command: Command) -> None:
    """The command handler of a closed connection: nothing to apply a command to."""


def _close(core: _ConnectionCore) -> None:
    """
    Whichever way a connection ends: its commands go nowhere from now on, and what waited
    for its arena (a connection that ends while joining) is let go.
    """
    core.command_handler = _dropped
    core.waiting.clear()


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
class _ConnectionCore:
    """
    What a player's and a controller's connection both hold: C{socket} is its key in the
    arena (the protocol itself), C{username} the user it is attributed to, if any,
    C{waiting} what waits for the arena while joining.  C{command_handler} is what its
    state does with a command (see the module's docstring): only the machine's
    transitions set it, and it starts as C{wait}.
    """

    connection: Connection
    socket: Any
    username: str | None = None
    arena: ArenaHandle | None = None
    waiting: list[tuple[Callable[..., None], Any]] = attrs.Factory(list)
    command_handler: Callable[[Command], None] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.command_handler = self.wait  # Joining

    def wait(self, command: Command) -> None:
        """While joining: the command waits for the arena."""
        raise NotImplementedError


@attrs.define
class PlayerCore(_ConnectionCore):
    """A player connection's dependencies and what it knows, with its player's id."""

    player_id: str | None = None

    def wait(self, command: Command) -> None:
        """While joining: the command waits for the arena's C{submit}."""
        self.waiting.append((_submit, command))


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
    _close(core)
    _refuse(core.connection, reason, code)


def _player_command(inputs: PlayerInputs, core: PlayerCore, command: Command) -> None:
    core.command_handler(command)


def _submit(inputs: PlayerInputs, core: PlayerCore, command: Command) -> None:
    assert core.arena is not None
    core.arena.submit(core.socket, command)


def _player_invalid(inputs: PlayerInputs, core: PlayerCore, reason: str) -> None:
    core.connection.sendObject(invalid_command_error(reason))


def _player_lost(inputs: PlayerInputs, core: PlayerCore) -> None:
    assert core.arena is not None
    _close(core)
    core.arena.remove_player(core.socket)


def _player_arena_closed(inputs: PlayerInputs, core: PlayerCore, reason: str) -> None:
    _close(core)
    core.connection.closeWith(CloseCode.NORMAL, reason)


def _player_lost_joining(inputs: PlayerInputs, core: PlayerCore) -> None:
    _close(core)


@PJoining.upon(PlayerInputs.joined).to(PConnected)
def _player_joined(inputs: PlayerInputs, core: PlayerCore, arena: ArenaHandle) -> None:
    core.arena = arena
    arena.add_player(core.socket)
    core.command_handler = partial(arena.submit, core.socket)
    _replay(inputs, core)


@PJoining.upon(PlayerInputs.invalid).loop()
def _player_invalid_waits(inputs: PlayerInputs, core: PlayerCore, reason: str) -> None:
    core.waiting.append((_player_invalid, reason))


for _state in (PJoining, *_LIVE_PLAYER, PClosed):
    _state.upon(PlayerInputs.command).loop()(_player_command)
for _state in _LIVE_PLAYER:
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
PJoining.upon(PlayerInputs.lost).to(PClosed)(_player_lost_joining)
for _input in (PlayerInputs.invalid, PlayerInputs.lost,
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
class ControllerCore(_ConnectionCore):
    """A controller connection's dependencies and what it knows."""

    def wait(self, command: Command) -> None:
        """While joining: the command waits for the arena's C{control}."""
        self.waiting.append((_control, command))


def _replay(inputs: Any, core: _ConnectionCore) -> None:
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
    core.command_handler = partial(arena.control, core.socket)
    _replay(inputs, core)


@CJoining.upon(ControllerInputs.refused).to(CClosed)
def _controller_refused(
    inputs: ControllerInputs, core: ControllerCore, reason: str, code: CloseCode
) -> None:
    _close(core)
    _refuse(core.connection, reason, code)


def _control(inputs: ControllerInputs, core: ControllerCore, command: Command) -> None:
    assert core.arena is not None
    core.arena.control(core.socket, command)


def _controller_command(inputs: ControllerInputs, core: ControllerCore, command: Command) -> None:
    core.command_handler(command)


for _state in (CJoining, CControlling, CClosed):
    _state.upon(ControllerInputs.command).loop()(_controller_command)


@CControlling.upon(ControllerInputs.invalid).loop()
def _controller_invalid(inputs: ControllerInputs, core: ControllerCore, reason: str) -> None:
    core.connection.sendObject(invalid_command_error(reason))


@CControlling.upon(ControllerInputs.replaced).to(CClosed)
def _replaced(inputs: ControllerInputs, core: ControllerCore) -> None:
    # The arena already points at the newer controller: nothing to detach.
    _close(core)
    core.connection.closeWith(CloseCode.REPLACED, "replaced by a newer controller")


@CControlling.upon(ControllerInputs.arenaClosed).to(CClosed)
def _controller_arena_closed(inputs: ControllerInputs, core: ControllerCore, reason: str) -> None:
    _close(core)
    core.connection.closeWith(CloseCode.NORMAL, reason)


@CControlling.upon(ControllerInputs.lost).to(CClosed)
def _controller_lost(inputs: ControllerInputs, core: ControllerCore) -> None:
    assert core.arena is not None
    _close(core)
    core.arena.remove_controller(core.socket)


def _controller_lost_joining(inputs: ControllerInputs, core: ControllerCore) -> None:
    _close(core)


@CJoining.upon(ControllerInputs.invalid).loop()
def _controller_invalid_waits(inputs: ControllerInputs, core: ControllerCore, reason: str) -> None:
    core.waiting.append((_controller_invalid, reason))


CJoining.upon(ControllerInputs.lost).to(CClosed)(_controller_lost_joining)
for _input in (ControllerInputs.invalid, ControllerInputs.lost,
               ControllerInputs.replaced, ControllerInputs.arenaClosed,
               ControllerInputs.authorized, ControllerInputs.refused):
    CClosed.upon(_input).loop().returns(None)  # type: ignore[arg-type]

ControllerMachine = controller.build()
