"""
The game engines a run's program talks to through its SDK (C{send(command)}).

The processor protocol picks one per run from the client's C{context}:

  - L{ClientEngine} (C{"engine": "client"}): each call is relayed to the WebSocket client
    as C{{"type": "command", "id": n, "message": command}}; the client's C{{"type":
    "result", "id": n, "message": reply}} is the reply.
  - L{ArenaEngine} (C{"engine": "arena"}): the program is a player of an arena of this
    server, on whichever node runs it, attached to it like a player WebSocket of
    C{gameproto.arena.protocol} (the engine itself is the connection key): through the
    L{gameproto.arena.arena.ArenaHandle} the arena service located for the run.  A command gets the arena's reply to it (an C{...Ack} or
    C{InvalidCommandError}); everything else the arena sends the player is a notification,
    kept for C{{"type": "GetNotifications"}} and C{{"type": "WaitNotification",
    "timeout_ms": n}}.  Nothing is relayed to the WebSocket client.

Both are driven the same way: L{call} gets each engine call with the Deferred the runner
waits on; L{cancelled} is called when the runner gives up on a call (its engine call
timeout, or the end of the run); L{close} when the run is over.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gameproto.arena.commands import InvalidCommand, parse_command
from gameproto.arena.engine import invalid_command_error
from gameproto.arena.arena import ArenaHandle, Frame

#: Notifications an arena program has not read yet, at most; the oldest are dropped first.
MAX_PENDING_NOTIFICATIONS = 1024
#: At most this many notifications per C{GetNotifications}, oldest first.
NOTIFICATIONS_PER_CALL = 256


class Engine(Protocol):
    """What the processor protocol needs of a run's engine."""

    def call(self, call_id: int, command: Any) -> Any:
        """
        Handle one engine call: the reply now (most calls: no Deferred on the hot path of
        a program's round trips), or a Deferred firing with it later, which forgets the
        call when cancelled.
        """

    def result(self, call_id: int, message: Any) -> bool:
        """The client's result for C{call_id}; C{False} if no such call is waiting."""

    def cancelled(self, call_id: int) -> None:
        """The runner gave up on C{call_id}: forget it (a late result is then a wrong id)."""

    def close(self) -> None:
        """The run is over."""


class ClientEngine:
    """
    The WebSocket client is the engine: calls go out as C{command} messages, C{result}
    messages come back.  The SDK makes one call at a time, so at most one id is waiting.
    """

    def __init__(self, send_command: Callable[[int, Any], None]) -> None:
        self._send_command = send_command
        self._waiting: dict[int, Deferred[Any]] = {}

    def call(self, call_id: int, command: Any) -> Deferred[Any]:
        reply: Deferred[Any] = Deferred(lambda _: self.cancelled(call_id))
        self._waiting[call_id] = reply
        self._send_command(call_id, command)
        return reply

    def result(self, call_id: int, message: Any) -> bool:
        reply = self._waiting.pop(call_id, None)
        if reply is None:
            return False
        reply.callback(message)
        return True

    def cancelled(self, call_id: int) -> None:
        self._waiting.pop(call_id, None)

    def close(self) -> None:
        self._waiting.clear()


def is_reply(message: dict[str, Any]) -> bool:
    """Whether an arena message answers a player's command (rather than notifying it)."""
    kind = message.get("type")
    return isinstance(kind, str) and (kind.endswith("Ack") or kind == "InvalidCommandError")


class ArenaEngine:
    """
    A run's own player in an arena, on this node or another.  It is the arena's key for
    this player (an L{gameproto.arena.arena.ArenaSocket}), attached at creation and
    detached by L{close}.

    @param username: the run's user, to whom the player is attributed (logs).
    @param max_wait: the longest C{WaitNotification}, in seconds; longer ones are refused
        (the runner answers any call after its engine call timeout anyway).
    """

    _log = Logger()

    def __init__(
        self, arena: ArenaHandle, username: str | None, clock: IReactorTime, max_wait: float
    ) -> None:
        self.arena = arena
        self.username = username
        self._clock = clock
        self._max_wait_ms = int(max_wait * 1000)
        self._notifications: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING_NOTIFICATIONS)
        self._reply: tuple[int, Deferred[Any]] | None = None
        self._wait: tuple[int, Deferred[Any], IDelayedCall] | None = None
        self._closed_reason: str | None = None
        self._attached = True
        arena.add_player(self)
        self._log.info(
            "Arena {arena}: a processor run of {user} joined", arena=arena.id, user=username
        )

    def __repr__(self) -> str:
        return f"<ArenaEngine {self.arena.id} {self.username}>"

    # -- engine calls -------------------------------------------------------------

    def call(self, call_id: int, command: Any) -> Any:
        if self._closed_reason is not None:
            return {"error": f"arena closed: {self._closed_reason}"}
        kind = command.get("type") if isinstance(command, dict) else None
        if kind == "GetNotifications":
            return [
                self._notifications.popleft()
                for _ in range(min(NOTIFICATIONS_PER_CALL, len(self._notifications)))
            ]
        if kind == "WaitNotification":
            return self._wait_notification(call_id, command)
        try:
            parsed = parse_command(command)
        except InvalidCommand as e:
            return invalid_command_error(e.reason)
        reply: Deferred[Any] = Deferred(lambda _: self.cancelled(call_id))
        self._reply = (call_id, reply)
        self.arena.submit(self, parsed)
        return reply

    def _wait_notification(self, call_id: int, command: dict[str, Any]) -> Any:
        timeout = command.get("timeout_ms")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 <= timeout <= self._max_wait_ms
        ):
            return {"error": f"WaitNotification needs timeout_ms from 0 to {self._max_wait_ms}"}
        if self._notifications:
            return self._notifications.popleft()
        reply: Deferred[Any] = Deferred(lambda _: self.cancelled(call_id))
        timer = self._clock.callLater(timeout / 1000, self._wait_over, call_id)
        self._wait = (call_id, reply, timer)
        return reply

    def _wait_over(self, call_id: int) -> None:
        if self._wait is not None and self._wait[0] == call_id:
            _, reply, _ = self._wait
            self._wait = None
            reply.callback(None)

    def result(self, call_id: int, message: Any) -> bool:
        return False  # nothing is relayed to the WebSocket client

    def cancelled(self, call_id: int) -> None:
        if self._reply is not None and self._reply[0] == call_id:
            self._reply = None
        if self._wait is not None and self._wait[0] == call_id:
            _, _, timer = self._wait
            self._wait = None
            if timer.active():
                timer.cancel()

    def close(self) -> None:
        if self._wait is not None:
            self.cancelled(self._wait[0])
        self._reply = None
        if self._attached:
            self._attached = False
            self.arena.remove_player(self)

    # -- ArenaSocket --------------------------------------------------------------

    def deliver(self, frame: Frame) -> None:
        message = frame.message
        if self._reply is not None and is_reply(message):
            _, reply = self._reply
            self._reply = None
            reply.callback(message)
        elif self._wait is not None:
            call_id, reply, timer = self._wait
            self._wait = None
            if timer.active():
                timer.cancel()
            reply.callback(message)
        else:
            self._notifications.append(message)

    def arenaClosed(self, reason: str) -> None:
        self._closed_reason = reason
        self._attached = False
        error = {"error": f"arena closed: {reason}"}
        pending, self._reply = self._reply, None
        if pending is not None:
            pending[1].callback(error)
        if self._wait is not None:
            _, reply, timer = self._wait
            self._wait = None
            if timer.active():
                timer.cancel()
            reply.callback(error)

    def replaced(self) -> None:
        """Only controllers are replaced."""
