"""
The state machine of one processor connection (L{ProcessorInputs}, L{ProcessorCore},
L{ProcessorMachine}); its diagram is in L{gameproto.processor.protocol}'s docstring, and
L{gameproto.processor.protocol.ProcessorProtocol} is its adapter.

The run's own events (started, output, its end) are machine inputs too, so that nothing
reaches a connection that is closing and the order of what the program did is the order
the client sees.  Engine calls go straight to the run's engine: the runner makes them only
while the program runs (the Running state), and a program may make tens of thousands a
second.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import attrs
from automat import TypeMachineBuilder
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto.arena.arena import ArenaHandle
from gameproto.arena.service import ArenaService
from gameproto.processor.admission import RunRefused, ServerBusy
from gameproto.match.frames import Role
from gameproto.processor.engines import ArenaEngine, ClientEngine, Engine
from gameproto.processor.match_engine import MatchEngine, MatchSeats
from gameproto.processor.messages import (
    ARENAS_UNREACHABLE,
    INTERPRETER_ERROR,
    NO_SUCH_ARENA,
    SERVER_ERROR,
    Context,
    now_ms,
)
from gameproto.processor.runner import RunResult, SpawnError
from gameproto.store import StoreError
from gameproto.wire import CloseCode

_log = Logger(namespace="gameproto.processor.protocol")


class Connection(Protocol):
    """What the machine needs of its WebSocket: the adapter below, or a fake in tests."""

    def sendObject(self, message: Any) -> bool: ...

    def closeWith(self, code: CloseCode, reason: str) -> None: ...


class RunHandle(Protocol):
    """What the machine needs of a run (L{gameproto.processor.runner.Run})."""

    started: Deferred[None]
    ended: Deferred[RunResult]

    def stop(self) -> None: ...


class Runs(Protocol):
    """
    Where runs come from: L{gameproto.processor.service.ProcessorService}, or a fake.
    """

    @property
    def engine_call_timeout(self) -> float: ...

    def language_refusal(self, language: str) -> str | None:
        """Why C{language} cannot run here, or None."""

    def start_run(
        self,
        user: str,
        language: str,
        code: str,
        on_output: Callable[[str, str], None],
        on_engine: Callable[[int, Any], Any],
        output_before_calls: bool = True,
    ) -> RunHandle:
        """L{gameproto.processor.runner.Processor.start_run}: may raise L{RunRefused}."""


class ProcessorInputs(Protocol):
    """Everything that can happen to one processor connection."""

    # The handshake's outcome.
    def opened(self) -> None: ...

    def refused(self, reason: str, code: CloseCode) -> None: ...

    # The client's frames.
    def context(self, context: Context) -> None: ...

    def badContext(self, reason: str) -> None: ...

    def text(self, text: str, problem: str) -> None:
        """A text frame that is not a message: the code, when code is awaited."""

    def stop(self) -> None: ...

    def result(self, call_id: int, message: Any) -> None: ...

    def invalid(self, reason: str) -> None:
        """A frame that is wrong in any state (binary, a bad message)."""

    # The arena engine's arena, the match engine's seat (at once with the client engine,
    # or a match engine that matchmakes).
    def located(self, arena: ArenaHandle | None, code: str) -> None: ...

    # The match engine's seat is gone (its match is over): the run is stopped.
    def engineOver(self) -> None: ...

    # The run.
    def runRefused(self, message: str) -> None: ...

    def busy(self, message: str, retry_after: float) -> None: ...

    def started(self) -> None: ...

    def spawnFailed(self) -> None: ...

    def output(self, stream: str, text: str) -> None: ...

    def ended(self, result: RunResult) -> None: ...

    # The connection is gone.
    def lost(self) -> None: ...


@attrs.define
class ProcessorCore:
    """
    One connection's dependencies and what it knows.

    @ivar user: the key runs are admitted under (one run per user): the username, or
        C{anonymous@ADDRESS} with C{--processor-anonymous}.
    @ivar username: the authenticated user, if any (arena players are attributed to it).
    @ivar inputs: the machine itself, for the run's callbacks.
    @ivar seats: the match engine's parts (None: the engine is not offered).
    """

    connection: Connection
    clock: IReactorTime
    runs: Runs
    arenas: ArenaService | None
    user: str
    username: str | None = None
    inputs: Any = None
    context: Context | None = None
    run: RunHandle | None = None
    engine: Engine | None = None
    early_output: list[tuple[str, str]] = attrs.Factory(list)
    seats: MatchSeats | None = None

    def release_engine(self) -> None:
        """The run is not started: what its engine holds (a match seat) is given back."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()

    def send(self, kind: str, message: Any = "", **fields: Any) -> None:
        self.connection.sendObject(
            {"type": kind, "message": message, **fields, "time": now_ms(self.clock)}
        )

    def error(self, message: str, code: str = SERVER_ERROR, **fields: Any) -> None:
        self.connection.sendObject(
            {"type": "error", "code": code, "message": message, **fields, "time": now_ms(self.clock)}
        )


processor = TypeMachineBuilder(ProcessorInputs, ProcessorCore)
Opening = processor.state("Opening")
AwaitingContext = processor.state("AwaitingContext")
AwaitingCode = processor.state("AwaitingCode")
Locating = processor.state("Locating")
Starting = processor.state("Starting")
Running = processor.state("Running")
Ended = processor.state("Ended")
Closed = processor.state("Closed")
_LIVE = (AwaitingContext, AwaitingCode, Locating, Starting, Running)
_OVER = (Ended, Closed)


@Opening.upon(ProcessorInputs.opened).to(AwaitingContext)
def _opened(inputs: ProcessorInputs, core: ProcessorCore) -> None:
    core.send("ready", "send context")


@Opening.upon(ProcessorInputs.refused).to(Closed)
def _refused(inputs: ProcessorInputs, core: ProcessorCore, reason: str, code: CloseCode) -> None:
    core.error(reason)
    core.connection.closeWith(code, reason)


Opening.upon(ProcessorInputs.lost).to(Closed).returns(None)


# -- context ------------------------------------------------------------------


@AwaitingContext.upon(ProcessorInputs.context).to(AwaitingCode)
def _context(inputs: ProcessorInputs, core: ProcessorCore, context: Context) -> None:
    core.context = context
    core.send("ready", "send code")


@AwaitingContext.upon(ProcessorInputs.badContext).loop()
def _bad_context(inputs: ProcessorInputs, core: ProcessorCore, reason: str) -> None:
    core.error(reason)


def _context_again(inputs: ProcessorInputs, core: ProcessorCore, *ignored: Any) -> None:
    core.error("context already received")


for _state in (AwaitingCode, Locating, Starting, Running):
    _state.upon(ProcessorInputs.context).loop()(_context_again)
    _state.upon(ProcessorInputs.badContext).loop()(_context_again)


# -- errors in any live state ------------------------------------------------------


def _invalid(inputs: ProcessorInputs, core: ProcessorCore, reason: str) -> None:
    core.error(reason)


def _not_a_message(inputs: ProcessorInputs, core: ProcessorCore, text: str, problem: str) -> None:
    core.error(problem)


for _state in _LIVE:
    _state.upon(ProcessorInputs.invalid).loop()(_invalid)
    if _state is not AwaitingCode:
        _state.upon(ProcessorInputs.text).loop()(_not_a_message)


# -- the code ------------------------------------------------------------------------


@AwaitingCode.upon(ProcessorInputs.text).to(Locating)
def _code(inputs: ProcessorInputs, core: ProcessorCore, text: str, problem: str) -> None:
    context = core.context
    assert context is not None
    if context.engine == "match":
        _take_seat(inputs, core, context, text)
        return
    if context.engine != "arena":
        inputs.located(None, text)
        return
    # Wherever the arena runs, on this node or another (asked of Redis then).
    found = core.arenas.locate(context.arena or "") if core.arenas is not None else succeed(None)

    def located(arena: ArenaHandle | None) -> None:
        if arena is None:
            inputs.runRefused(NO_SUCH_ARENA)
        else:
            inputs.located(arena, text)

    def unreachable(failure: Failure) -> None:
        failure.trap(StoreError)
        inputs.runRefused(ARENAS_UNREACHABLE)

    found.addCallbacks(located, unreachable)
    found.addErrback(lambda f: _log.failure("processor: locating an arena", f))


def _take_seat(inputs: ProcessorInputs, core: ProcessorCore, context: Context, text: str) -> None:
    """The match engine, seated in the context's match before the program starts."""
    assert core.seats is not None and core.username is not None
    engine = core.engine = MatchEngine(core.seats, core.username, core.clock, _max_wait(core),
                                       done=lambda: inputs.engineOver())
    if context.match is None:
        inputs.located(None, text)  # the program matchmakes
        return

    def joined(refusal: dict[str, Any] | None) -> None:
        if refusal is None:
            inputs.located(None, text)
        else:
            inputs.runRefused(f"match: {refusal['error']}" + (
                f" (code {refusal['code']})" if "code" in refusal else ""))

    engine.take_seat(context.match, Role(context.role)).addCallback(joined)


@Locating.upon(ProcessorInputs.runRefused).to(AwaitingCode)
def _arena_refused(inputs: ProcessorInputs, core: ProcessorCore, message: str) -> None:
    core.release_engine()
    core.error(message)


@Locating.upon(ProcessorInputs.located).to(Starting)
def _start(inputs: ProcessorInputs, core: ProcessorCore, arena: ArenaHandle | None,
           text: str) -> None:
    context = core.context
    assert context is not None

    def on_output(stream: str, line: str) -> None:
        inputs.output(stream, line)

    def on_engine(call_id: int, command: Any) -> Any:
        # The data path, past the machine: the runner calls the engine only while the
        # program runs (from its start until it is stopped or over), which is the
        # Running state; a program may make tens of thousands of calls a second.
        assert core.engine is not None
        return core.engine.call(call_id, command)

    try:
        # The client sees the program's output and its calls, in the order the program
        # made them; the arena engine's calls are seen by no one.
        run = core.runs.start_run(
            core.user, context.language, text, on_output, on_engine,
            output_before_calls=context.engine == "client",
        )
    except ServerBusy as e:
        core.release_engine()
        inputs.busy(e.message, e.retry_after)
        return
    except RunRefused as e:
        core.release_engine()
        inputs.runRefused(e.message)
        return
    except Exception:
        _log.failure("processor: starting a run of {user} failed", user=core.user)
        core.release_engine()
        inputs.spawnFailed()
        return
    core.run = run
    if arena is not None:
        core.engine = ArenaEngine(arena, core.username, core.clock, _max_wait(core))
    elif core.engine is None:  # the match engine is made (and seated) while locating
        core.engine = ClientEngine(lambda i, c: core.send("command", c, id=i))
    run.started.addCallbacks(lambda _: inputs.started(), lambda f: _spawn_failed(inputs, f))
    run.ended.addCallback(lambda result: _run_over(inputs, core, result))


def _max_wait(core: ProcessorCore) -> float:
    # A WaitNotification must end before the runner answers "engine call timed out".
    return max(0.0, core.runs.engine_call_timeout - 1.0)


def _spawn_failed(inputs: ProcessorInputs, failure: Failure) -> None:
    if not failure.check(SpawnError):
        _log.failure("processor: a run failed to start", failure)
    inputs.spawnFailed()


def _run_over(inputs: ProcessorInputs, core: ProcessorCore, result: RunResult) -> None:
    if core.engine is not None:
        core.engine.close()
    inputs.ended(result)


@Starting.upon(ProcessorInputs.runRefused).to(AwaitingCode)
def _run_refused(inputs: ProcessorInputs, core: ProcessorCore, message: str) -> None:
    core.release_engine()
    core.error(message)


@Starting.upon(ProcessorInputs.busy).to(Closed)
def _busy(inputs: ProcessorInputs, core: ProcessorCore, message: str, retry_after: float) -> None:
    seconds = max(1, math.ceil(retry_after))
    core.error(f"{message}; try again in {seconds} s", retry_after_ms=seconds * 1000)
    core.connection.closeWith(CloseCode.BUSY, "server busy")


@Starting.upon(ProcessorInputs.output).loop()
def _early_output(inputs: ProcessorInputs, core: ProcessorCore, stream: str, text: str) -> None:
    # The program's first lines may be read before the launcher's "started" report.
    core.early_output.append((stream, text))


@Starting.upon(ProcessorInputs.started).to(Running)
def _started(inputs: ProcessorInputs, core: ProcessorCore) -> None:
    core.send("started")
    early, core.early_output = core.early_output, []
    for stream, text in early:
        core.send("output", text, stream=stream)


@Starting.upon(ProcessorInputs.spawnFailed).to(Closed)
def _spawn_failure(inputs: ProcessorInputs, core: ProcessorCore) -> None:
    core.error("cannot start the program")
    core.connection.closeWith(CloseCode.INTERNAL_ERROR, "cannot start the program")


# -- the run -------------------------------------------------------------------------


def _stop(inputs: ProcessorInputs, core: ProcessorCore) -> None:
    assert core.run is not None
    core.run.stop()


Starting.upon(ProcessorInputs.stop).loop()(_stop)
Running.upon(ProcessorInputs.stop).loop()(_stop)
Starting.upon(ProcessorInputs.engineOver).loop()(_stop)
Running.upon(ProcessorInputs.engineOver).loop()(_stop)


@Running.upon(ProcessorInputs.output).loop()
def _output(inputs: ProcessorInputs, core: ProcessorCore, stream: str, text: str) -> None:
    core.send("output", text, stream=stream)


@Running.upon(ProcessorInputs.result).loop()
def _result(inputs: ProcessorInputs, core: ProcessorCore, call_id: int, message: Any) -> None:
    assert core.engine is not None
    if not core.engine.result(call_id, message):
        core.error(f"no command with id {call_id} is waiting for a result")


@Running.upon(ProcessorInputs.ended).to(Ended)
def _ended(inputs: ProcessorInputs, core: ProcessorCore, result: RunResult) -> None:
    if result.interpreter_error is not None:
        core.error(result.interpreter_error, INTERPRETER_ERROR)
    core.send(
        "end",
        result.end_message,
        exit_code=result.exit_code,
        signal=result.signal,
        duration_ms=result.duration_ms,
    )
    core.connection.closeWith(CloseCode.NORMAL, "run ended")


def _lost_mid_run(inputs: ProcessorInputs, core: ProcessorCore) -> None:
    if core.run is not None:  # None when the run could not be started
        core.run.stop()


@Locating.upon(ProcessorInputs.lost).to(Closed)
def _lost_while_locating(inputs: ProcessorInputs, core: ProcessorCore) -> None:
    core.release_engine()  # a seat being taken is given back once taken
Starting.upon(ProcessorInputs.lost).to(Closed)(_lost_mid_run)
Running.upon(ProcessorInputs.lost).to(Closed)(_lost_mid_run)
AwaitingContext.upon(ProcessorInputs.lost).to(Closed).returns(None)
AwaitingCode.upon(ProcessorInputs.lost).to(Closed).returns(None)
Ended.upon(ProcessorInputs.lost).to(Closed).returns(None)

# The run's events in a state that expects none of them (the client is gone, or the run
# is over) change nothing.  The runner never ends a run before its start or failure.
_RUN_EVENTS = (
    ProcessorInputs.runRefused, ProcessorInputs.busy, ProcessorInputs.started,
    ProcessorInputs.spawnFailed, ProcessorInputs.output, ProcessorInputs.ended,
    ProcessorInputs.engineOver,
)
_IGNORED: dict[Any, tuple[Any, ...]] = {
    Opening: _RUN_EVENTS,
    AwaitingContext: _RUN_EVENTS,
    AwaitingCode: _RUN_EVENTS,
    Locating: (ProcessorInputs.busy, ProcessorInputs.started, ProcessorInputs.spawnFailed,
               ProcessorInputs.output, ProcessorInputs.ended, ProcessorInputs.engineOver),
    Starting: (ProcessorInputs.ended,),
    Running: (ProcessorInputs.runRefused, ProcessorInputs.busy, ProcessorInputs.started,
              ProcessorInputs.spawnFailed),
    Ended: _RUN_EVENTS,
    Closed: _RUN_EVENTS + (ProcessorInputs.lost,),
}
for _state, _events in _IGNORED.items():
    for _event in _events:
        _state.upon(_event).loop().returns(None)
# An arena located for a connection that is gone (or whatever came first) starts nothing.
for _state in (Opening, AwaitingContext, AwaitingCode, Starting, Running, Ended, Closed):
    _state.upon(ProcessorInputs.located).loop().returns(None)

ProcessorMachine = processor.build()
