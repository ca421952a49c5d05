"""
One arena as it runs on the node that owns it: an L{ArenaEngine} glued to the sockets
attached to it, with its own tick loop and idle timer.

An L{Arena} ticks on a C{LoopingCall} every C{config.tick_ms} from its start until it is
closed, and delivers what the engine returns: each message is encoded once and framed once
(an Autobahn prepared message), however many sockets it goes to.  A socket is anything
with the L{ArenaSocket} methods: a WebSocket of this node, a socket of another node
(L{gameproto.arena.relay.RemoteSocket}), a processor run's player.

What a connection's state machine holds is an L{ArenaHandle}: this L{Arena} when it runs
here, or L{gameproto.arena.relay.RemoteArena} when another node runs it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from typing import Any, Callable, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameproto import wire
from gameproto.ticks import TickTimes
from gameproto.arena.commands import Command
from gameproto.arena.config import ArenaConfig
from gameproto.arena.engine import CONTROLLER, ArenaEngine, Message, Outgoing

class Frame:
    """
    One server message, encoded once; framed once, on first use, as an Autobahn prepared
    message that every socket it goes to can send as is.
    """

    __slots__ = ("message", "payload", "type", "_prepared")

    def __init__(self, message: Message, payload: bytes) -> None:
        self.message = message
        self.payload = payload
        # Read by every player connection it goes to: once here, not once per socket.
        self.type = str(message.get("type"))
        self._prepared: Any = None

    def prepared(self, factory: Any) -> Any:
        """@return: the prepared message, built with C{factory.prepareMessage} the first time."""
        if self._prepared is None:
            self._prepared = factory.prepareMessage(self.payload, isBinary=False)
        return self._prepared


class ArenaSocket(Protocol):
    """
    What an arena needs of a connection attached to it (the protocols of gameproto.arena).
    A connection may also have a C{username}: the user its players are attributed to.
    """

    def deliver(self, frame: Frame) -> None:
        """Send C{frame}, and let the connection's state machine see what it says."""

    def arenaClosed(self, reason: str) -> None:
        """The arena was deleted: the connection ends."""

    def replaced(self) -> None:
        """(Controllers only) A newer controller took over."""



class ArenaHandle(Protocol):
    """
    What a connection attached to an arena calls, wherever the arena runs: L{Arena} on
    this node, L{gameproto.arena.relay.RemoteArena} for an arena of another node.
    C{owner} is the user that owns the arena (C{None}: the C{default} arena without
    C{--arena-owner}).
    """

    @property
    def id(self) -> str: ...

    @property
    def owner(self) -> str | None: ...

    def add_player(self, socket: ArenaSocket) -> None: ...

    def remove_player(self, socket: ArenaSocket) -> None: ...

    def set_controller(self, socket: ArenaSocket) -> None: ...

    def remove_controller(self, socket: ArenaSocket) -> None: ...

    def submit(self, socket: ArenaSocket, command: Command) -> None: ...

    def control(self, socket: ArenaSocket, command: Command) -> None: ...


class Arena:
    """
    One arena: its engine, the sockets attached to it, its tick loop and its idle timer.

    @ivar owner: the username that may control it and delete it; for the C{default} arena
        the C{--arena-owner} option, or C{None} when any authenticated user may control it.
    """

    _log = Logger()

    def __init__(
        self,
        arena_id: str,
        owner: str | None,
        config: ArenaConfig,
        clock: IReactorTime,
        rng: random.Random,
        idle_timeout: float | None = None,
        on_idle: Callable[[Arena], None] | None = None,
        ticks: TickTimes | None = None,
    ) -> None:
        self.id = arena_id
        self.owner = owner
        self.config = config
        self.clock = clock
        self.engine = ArenaEngine(config, rng)
        self.controller: ArenaSocket | None = None
        # A dict for its order: players hear broadcasts in the order they connected.
        self._players: dict[ArenaSocket, None] = {}
        self._loop = LoopingCall(self._scheduled_tick)
        self._loop.clock = clock
        self._due = 0.0
        self._ticks = ticks
        self._idle_timeout = idle_timeout
        self._on_idle = on_idle
        self._idle_call: IDelayedCall | None = None
        self.ticks = 0
        self.closed = False
        self._idle()

    # -- lifecycle ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop.running

    def start(self) -> None:
        """Start ticking (the first tick comes one period from now)."""
        if not self._loop.running and not self.closed:
            self._loop.start(self.config.tick_ms / 1000, now=False)
            self._due = self.clock.seconds() + self.config.tick_ms / 1000

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def close(self, reason: str) -> None:
        """Stop for good: the loop and the idle timer stop, every socket is told."""
        self.closed = True
        self.stop()
        self._cancel_idle()
        sockets = list(self._players)
        if self.controller is not None:
            sockets.append(self.controller)
        self._players.clear()
        self.controller = None
        for socket in sockets:
            self._guarded(socket.arenaClosed, reason)

    # -- connections --------------------------------------------------------------

    @property
    def connections(self) -> int:
        return len(self._players) + (self.controller is not None)

    @property
    def controller_connected(self) -> bool:
        return self.controller is not None

    def add_player(self, socket: ArenaSocket) -> None:
        self._players[socket] = None
        self.engine.attribute(socket, getattr(socket, "username", None))
        self._cancel_idle()

    def remove_player(self, socket: ArenaSocket) -> None:
        """A player's connection is gone: the engine forgets it (which may end the round)."""
        if socket not in self._players:
            return
        del self._players[socket]
        self.deliver(self.engine.leave(socket))
        self._idle()

    def set_controller(self, socket: ArenaSocket) -> None:
        """Make C{socket} the controller; the previous one, if any, is told it was replaced."""
        previous, self.controller = self.controller, socket
        self._cancel_idle()
        if previous is not None and previous is not socket:
            self._guarded(previous.replaced)

    def remove_controller(self, socket: ArenaSocket) -> None:
        if self.controller is socket:
            self.controller = None
            self._idle()

    # -- commands -------------------------------------------------------------------

    def submit(self, socket: ArenaSocket, command: Command) -> None:
        """A player's command: queued for the next tick (or refused at once)."""
        if socket in self._players:
            # Most commands are queued, with nothing to deliver now.
            refusal = self.engine.submit(socket, command)
            if refusal:
                self.deliver(refusal)

    def control(self, socket: ArenaSocket, command: Command) -> None:
        """The controller's command, applied at once."""
        if socket is self.controller:
            self.deliver(self.engine.control(command))

    def _scheduled_tick(self) -> None:
        # A loop that fell behind skips the ticks it missed (LoopingCall's rule: the next
        # call is at the next multiple of the interval), so the engine's time stays tied to
        # the clock.  How late each tick ran is recorded.
        now = self.clock.seconds()
        if self._ticks is not None:
            self._ticks.late(now - self._due)
        interval = self.config.tick_ms / 1000
        start = self._loop.starttime if self._loop.starttime is not None else now
        # The epsilon absorbs float rounding at epoch-sized times: on time is on time.
        elapsed = math.floor((now - start) / interval + 1e-6)
        self._due = start + (elapsed + 1) * interval
        began = time.perf_counter()
        self.tick()
        if self._ticks is not None:
            self._ticks.took(time.perf_counter() - began)

    def tick(self) -> None:
        """One engine tick and its messages.  Never raises: the loop must keep running."""
        self.ticks += 1
        try:
            # An arena nobody controls still ticks (its players play); the snapshot, a
            # message per shot and player, is only made for a controller to read.
            outgoing = self.engine.tick(snapshot=self.controller is not None)
        except Exception:
            self._log.failure("Arena {arena}: tick failed", arena=self.id)
            return
        self.deliver(outgoing)

    # -- delivery -------------------------------------------------------------------

    def deliver(self, outgoing: Iterable[Outgoing]) -> None:
        """
        Send each message to its recipient.  A message shared by several recipients (the
        engine passes one dict) is encoded and framed once.  Recipients that are gone are
        skipped, like messages to a controller that is not connected.
        """
        # Every tick of every arena comes through here with a message per player or more:
        # the loop keeps to locals and catches a connection's failure itself.
        frames: dict[int, Frame] = {}
        players = self._players
        for recipient, message in outgoing:
            if recipient is CONTROLLER:
                socket = self.controller
                if socket is None:
                    continue
            elif recipient in players:
                socket = recipient  # type: ignore[assignment]
            else:
                continue
            frame = frames.get(id(message))
            if frame is None:
                try:
                    payload = wire.encode(message)
                except wire.UnencodableValue as e:
                    self._log.warn("Arena {arena}: unencodable message ({why})",
                                   arena=self.id, why=str(e))
                    continue
                frame = frames[id(message)] = Frame(message, payload)
            try:
                socket.deliver(frame)
            except Exception:
                # One broken connection must not keep the others from their messages.
                self._log.failure("Arena {arena}: a connection failed", arena=self.id)

    def _guarded(self, call: Callable[..., Any], *args: Any) -> None:
        # One broken connection must not keep the others from their messages.
        try:
            call(*args)
        except Exception:
            self._log.failure("Arena {arena}: a connection failed", arena=self.id)

    # -- idleness -------------------------------------------------------------------

    def _idle(self) -> None:
        if self.connections or self.closed or self._idle_timeout is None:
            return
        if self._on_idle is not None and self._idle_call is None:
            self._idle_call = self.clock.callLater(self._idle_timeout, self._reap)

    def _cancel_idle(self) -> None:
        if self._idle_call is not None:
            if self._idle_call.active():
                self._idle_call.cancel()
            self._idle_call = None

    def _reap(self) -> None:
        self._idle_call = None
        if self._on_idle is not None and not self.connections:
            self._on_idle(self)

    # -- views ----------------------------------------------------------------------

    def asjson(self) -> dict[str, Any]:
        """The REST representation."""
        return {
            "id": self.id,
            "owner": self.owner,
            "config": self.config.asdict(),
            "players": self.engine.player_ids(),
            "started": self.engine.started,
            "controller_connected": self.controller_connected,
        }
