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

The machines, and where each of their states sends a command, are in
L{gameproto.arena.machines}.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from automat import NoTransition
from autobahn.twisted.resource import WebSocketResource
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource

from gameproto import wire, web
from gameproto.arena.commands import InvalidCommand, parse_command
from gameproto.arena.engine import invalid_command_error
from gameproto.arena.arena import ArenaHandle, Frame
from gameproto.arena.machines import (
    Connection,
    ControllerCore,
    ControllerMachine,
    PlayerCore,
    PlayerMachine,
)
from gameproto.arena.service import ArenaService
from gameproto.store import StoreError
from gameproto.wire import CloseCode, Malformed

__all__ = [
    "NO_SUCH_ARENA", "UNAUTHENTICATED", "UNREACHABLE", "arena_id_of",
    "ArenaPlayerProtocol", "ArenaControllerProtocol", "arena_resource",
    # gameproto.arena.machines, where they are defined
    "Connection", "PlayerCore", "PlayerMachine", "ControllerCore", "ControllerMachine",
]

NO_SUCH_ARENA = "no such arena"
UNAUTHENTICATED = "unauthenticated"
UNREACHABLE = "the arena's node cannot be reached; try again"


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
    _core: Any = None
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
        # What the machine's state does with a command, without a transition (see
        # gameproto.arena.machines): the same as self._machine.command(command).
        self._core.command_handler(command)

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
        self._core = ControllerCore(self, self, self._username())
        self._machine = ControllerMachine(self._core)
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
