"""
The processor's WebSocket endpoint, C{/ws/processor/} (specs/processor.md, DESIGN.md §4
"processor"): a thin adapter around an explicit state machine.

One connection is one run::

    Opening ──refused (unauthenticated: 4001)────────────────────────────────▶ Closed
       │ opened: ready "send context"                                         ▲
       ▼                                                                      │
    AwaitingContext ──context: ready "send code"──▶ AwaitingCode               │ lost (the run
                                                    │  ▲                       │  is stopped)
                                          code text │  │ refused (no such      │
                                                    ▼  │ arena)                │
                                                  Locating (the arena engine's │
                                                    │  │ arena, on any node)   │
                                          located   ▼  │ refused (unknown      │
                                                    │  │ language, too large)  │
                                                  Starting ──busy (4029), spawn failure (4011)─┤
                                                    │ started: "started"      │
                                                    ▼                         │
                                                  Running ──ended: INTERPRETER_ERROR?, "end",  │
                                                       output, command/result,  close 1000 ──▶ Ended
                                                       stop

A client message with no transition in the current state (a C{stop} before the run, a
C{result} while waiting for code, ...) is answered with SERVER_ERROR and changes nothing;
so are malformed frames: a binary frame, invalid JSON outside the code, a bad context, a
result with a wrong id.  Every server message carries C{type}, C{message} and C{time}
(epoch milliseconds as a string).

The machine, its inputs and transitions are in L{gameproto.processor.connection_machine};
the messages in L{gameproto.processor.messages}.
"""

from __future__ import annotations

from typing import Any

from automat import NoTransition
from autobahn.twisted.resource import WebSocketResource
from twisted.internet.defer import succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto import wire
from gameproto.arena.service import ArenaService
from gameproto.processor.connection_machine import ProcessorCore, ProcessorMachine, Runs
from gameproto.processor.match_engine import MatchSeats
from gameproto.processor.messages import (
    ARENAS_UNREACHABLE,
    NO_SUCH_ARENA,
    SERVER_ERROR,
    BadContext,
    Context,
    echo,
    now_ms,
    parse_context,
)
from gameproto.store import StoreError
from gameproto.wire import CloseCode, Malformed


class ProcessorProtocol(wire.JSONProtocol):
    """C{/ws/processor/}: frames in, machine inputs; the machine's messages out."""

    _log = Logger()
    endpoint = "processor"
    metrics_protocol = "processor"
    _machine: Any = None

    @property
    def runs(self) -> Runs:
        return self.factory.runs

    def connectionOpened(self) -> None:
        username = getattr(self.user, "username", None)
        anonymous: bool = self.factory.anonymous
        user = username.casefold() if username else f"anonymous@{self._address}"
        core = ProcessorCore(self, self.context.clock, self.runs, self.factory.arenas, user,
                             username, seats=self.factory.matches)
        self._machine = core.inputs = ProcessorMachine(core)
        if username is None and not anonymous:
            self._machine.refused("unauthenticated", CloseCode.UNAUTHENTICATED)
        else:
            self._machine.opened()

    def textReceived(self, payload: bytes) -> None:
        try:
            message = wire.decode(payload)
        except wire.InvalidJSON:
            self._text(payload, Malformed.INVALID_JSON.value)
            return
        if not isinstance(message, dict):
            self._text(payload, Malformed.NOT_AN_OBJECT.value)
        elif not isinstance(message.get("type"), str):
            self._text(payload, "a message needs a string type")
        else:
            self.objectReceived(message)

    def _text(self, payload: bytes, problem: str) -> None:
        # Autobahn has validated the UTF-8 of every text frame.
        self._input("text", payload.decode("utf-8"), problem)

    def objectReceived(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "context":
            try:
                context = self._validated(parse_context(message))
            except BadContext as e:
                self._input("badContext", e.reason, kind=kind)
            else:
                self._arena_checked(context)
        elif kind == "stop":
            self._input("stop", kind=kind)
        elif kind == "result":
            call_id = message.get("id")
            if isinstance(call_id, bool) or not isinstance(call_id, int):
                self._input("invalid", "result: id must be an integer")
            else:
                self._input("result", call_id, message.get("message"), kind=kind)
        else:
            self._input("invalid", f"unknown message type: {echo(kind)}")

    def _validated(self, context: Context) -> Context:
        refusal = self.runs.language_refusal(context.language)
        if refusal is not None:
            raise BadContext(refusal)
        if context.engine == "match":
            if self.factory.matches is None:
                raise BadContext('engine "match" is not available on this server')
            if self.user is None:
                raise BadContext("the match engine needs an authenticated user")
        return context

    def _arena_checked(self, context: Context) -> None:
        """The context, once its arena is known to exist (on any node: Redis is asked)."""
        if context.engine != "arena":
            self._input("context", context, kind="context")
            return
        arenas: ArenaService | None = self.factory.arenas
        exists = arenas.exists(context.arena or "") if arenas is not None else succeed(False)

        def known(found: bool) -> None:
            if found:
                self._input("context", context, kind="context")
            else:
                self._input("badContext", f"{NO_SUCH_ARENA}: {echo(context.arena or '')}",
                            kind="context")

        def unreachable(failure: Failure) -> None:
            failure.trap(StoreError)
            self._input("badContext", ARENAS_UNREACHABLE, kind="context")

        exists.addCallbacks(known, unreachable)
        exists.addErrback(lambda f: self._log.failure("processor: checking an arena", f))

    def malformedFrame(self, problem: Malformed) -> None:
        self._input("invalid", problem.value)

    def _input(self, name: str, *args: Any, kind: str | None = None) -> None:
        try:
            getattr(self._machine, name)(*args)
        except NoTransition:
            # A message with no transition now: out of order.
            if self.state == self.STATE_OPEN:
                self._machine_core_error(f"unexpected message now: {echo(kind or name)}")

    def _machine_core_error(self, message: str) -> None:
        self.sendObject(
            {"type": "error", "code": SERVER_ERROR, "message": message,
             "time": now_ms(self.context.clock)}
        )

    def sendObject(self, message: Any) -> bool:
        # The run's last events may come while the close handshake is under way.
        if self.state != self.STATE_OPEN:
            return False
        return super().sendObject(message)

    def closeWith(self, code: CloseCode, reason: str) -> None:
        if self.state == self.STATE_OPEN:
            super().closeWith(code, reason)

    def connectionClosed(self, code: int | None) -> None:
        if self._machine is not None:
            self._machine.lost()


def processor_resource(
    runs: Runs,
    limits: wire.EndpointLimits,
    context: wire.WireContext,
    arenas: ArenaService | None = None,
    anonymous: bool = False,
    matches: MatchSeats | None = None,
) -> WebSocketResource:
    """The resource to mount at C{/ws/processor}; C{matches} offers the match engine."""
    factory = wire.make_factory(
        ProcessorProtocol, limits, context, runs=runs, arenas=arenas, anonymous=anonymous,
        matches=matches,
    )
    return WebSocketResource(factory)


__all__ = ["BadContext", "Context", "ProcessorProtocol", "parse_context", "processor_resource"]
