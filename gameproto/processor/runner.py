"""
Runs of user programs, seen from the reactor.

L{Processor} admits runs (L{gameproto.processor.admission}) and starts them; L{Run} is the
C{ProcessProtocol} of one launcher (C{gameproto/processor/launcher/}): it streams the
program's output lines, relays its engine calls, enforces the limits the server keeps
(program time, session time, output, engine channel), asks the launcher to stop, and ends
with a L{RunResult}.

How a protocol drives a run::

    run = processor.start_run(user, "python", code, on_output=..., on_engine=...)
    run.started.addCallbacks(send_started, spawn_failed)   # spawn_failed: SpawnError
    run.ended.addCallback(send_error_then_end_then_close)  # always fires, once
    ...
    run.stop()                                              # client's {"type": "stop"}

C{on_output(stream, text)} gets each line of C{"stdout"} or C{"stderr"}, without its
newline.  C{on_engine(call_id, command)} gets each engine call (ids from 1, per run) and
returns the reply or a Deferred of it; raising or failing with L{EngineCallError} answers
C{{"error": message}}.  A call not answered within the engine call timeout is answered
C{{"error": "engine call timed out"}} and its Deferred is cancelled (a protocol relaying
calls to its client forgets the id in its canceller, so a late result is a wrong id).

L{Run.ended} fires after every process of the run is reaped and the user's slot is free,
with the exit code or signal, the duration, the limit that stopped the run if any, and the
INTERPRETER_ERROR message if there is one.

The pieces of a run, each in its module: its output lines
(L{gameproto.processor.output_lines}), its engine channel
(L{gameproto.processor.engine_channel}), the launcher's status pipe
(L{gameproto.processor.launcher_status}), its clocks (L{gameproto.processor.budget}) and
its result (L{gameproto.processor.run_result}).  L{Run} is the adapter: the launcher's
pipes go to those pieces, and what decides the run's course goes to its state machine.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, TypeVar

from automat import NoTransition
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from gameproto.processor.admission import (
    CodeTooLarge,
    LanguageUnavailable,
    RunLimiter,
    RunSlot,
    ServerBusy,
    default_max_runs,
)
from gameproto.processor.budget import RunTime
from gameproto.processor.engine_channel import (
    ENGINE_TIMEOUT_REPLY,
    EngineCallError,
    EngineChannel,
    EngineHandler,
)
from gameproto.processor.languages import Language
from gameproto.processor.launcher_status import StatusReader
from gameproto.processor.launchers import Launchers
from gameproto.processor.output_lines import STDERR_TAIL, STREAMS, OutputHandler, OutputLines
from gameproto.processor.run_machine import RunCore, RunInputs, RunMachine, SpawnError
from gameproto.processor.run_result import RunResult, signal_name
from gameproto.processor.limits import Limit, RunLimits
from gameproto.processor.sandbox import Sandbox

_T = TypeVar("_T")

_REQUESTS_FD = 3
_REPLIES_FD = 4
_STATUS_FD = 5


# ---------------------------------------------------------------------------
# one run: the adapter


class Run(ProcessProtocol):
    """
    One launcher and the program it runs.  Create it through L{Processor.start_run}.

    The run's course is a state machine (L{gameproto.processor.run_machine})::

        New ──start──▶ Starting ──program started──▶ Running ──program exited──▶ Exited
                        │   │                          │                          │
                        │   │ stop, limit (TERM)       │ stop, limit (TERM)       │ stop (TERM)
                        │   ▼                          ▼                          ▼
                        │ Cancelling ──program ───▶ Stopping ──program exited──▶ ExitedStopping
                        │   │          started         │                          │
                        │   └──────────────────────────┴─────── launcher hung ────┴──▶ Abandoned
                        │                                       (uid swept here)         │
                        │ spawn failed; launcher ended, from any state above             │ launcher
                        └──────────────────────────────────────────────────────▶ Ended ◀┘ ended

    Its inputs: the server starts the run (or cannot spawn the launcher); the launcher's
    status pipe reports the program started, could not start, or exited
    (L{gameproto.processor.launcher_status}); a limit is reached (a clock of
    L{gameproto.processor.budget.RunTime} runs out, the output goes over its limit, the
    engine channel is flooded; the first one is the run's); the client stops the run or
    is gone (L{stop}, also at server shutdown); the launcher hangs after its TERM (it is
    given up on: the server sweeps the run uid itself, and the uid returns to the pool
    once the launcher ends) or ends.  Once the program exited, limits change nothing;
    once the run is over, nothing does.  Ending fails L{started} if the program never
    started, then fires L{ended}.

    The program's output and engine calls, thousands a second, go past the machine:
    its transitions switch the relaying of calls on (Running) and off (TERM), and the
    end disconnects every pipe.

    @ivar started: fires with None once the program runs; fails with L{SpawnError} if it
        never does.
    @ivar ended: fires with the L{RunResult}, once, after everything is reaped and the slot
        is free (also after a spawn failure).
    """

    def __init__(
        self,
        launchers: Launchers,
        clock: IReactorTime,
        sandbox: Sandbox,
        language: Language,
        code: str,
        slot: RunSlot,
        on_output: OutputHandler,
        on_engine: EngineHandler,
        output_before_calls: bool = True,
    ) -> None:
        self.started: Deferred[None] = Deferred()
        self.ended: Deferred[RunResult] = Deferred()
        self.language = language
        self.user = slot.user
        self.uid = slot.uid
        self.name = sandbox.new_run_name(slot.uid)
        self.run_dir = sandbox.run_dir(self.name)
        limits = sandbox.limits
        name = repr(self)
        time = RunTime(clock, limits, self._limit_reached)
        output = OutputLines(
            limits, self.run_dir, on_output, partial(self._limit_reached, Limit.OUTPUT), name
        )
        channel = EngineChannel(
            clock,
            limits,
            on_engine,
            self._write_reply,
            time,
            self._drain_output if output_before_calls else None,
            partial(self._limit_reached, Limit.ENGINE_CHANNEL),
            name,
        )
        self._core = core = RunCore(
            self, launchers, clock, sandbox, language, code, slot, time, output, channel
        )
        self._machine: RunInputs = RunMachine(core)
        status = StatusReader(self._machine, name)
        core.readers.update(
            {
                1: partial(output.received, 1),
                2: partial(output.received, 2),
                _REQUESTS_FD: channel.received,
                _STATUS_FD: partial(self._status_received, status),
            }
        )

    def __repr__(self) -> str:
        return f"<Run {self.name} {self.language.name}>"

    # -- public ------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The interpreter's pid, once it started."""
        return self._core.record.pid

    @property
    def engine_calls(self) -> int:
        return self._core.channel.calls

    def program_time(self) -> float:
        """Seconds of program time used so far (engine calls excluded)."""
        return self._core.time.program_time()

    def start(self) -> None:
        """Spawn the launcher and send it the request."""
        try:
            self._machine.start()
        except NoTransition:
            raise RuntimeError("a run starts once") from None

    def stop(self) -> None:
        """
        Stop the run: TERM to the launcher, which TERMs the program, KILLs everything after
        the grace period, and reports.  L{ended} fires as usual (C{stopped} is set).
        """
        self._machine.stop()

    # -- ProcessProtocol ---------------------------------------------------

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        reader = self._core.readers.get(childFD)
        if reader is not None:
            reader(data)

    def childConnectionLost(self, childFD: int) -> None:
        if childFD in STREAMS and childFD in self._core.readers:
            self._core.output.flush(childFD)

    def processEnded(self, reason: Failure) -> None:
        self._machine.launcherEnded()

    # -- the pieces' ways into the machine and the launcher -------------------

    def _status_received(self, status: StatusReader, data: bytes) -> None:
        status.received(data)
        # Calls read before the program started are relayed now that it runs, after the
        # started callbacks (which may have stopped the run already).
        self._core.channel.pump()

    def _limit_reached(self, limit: Limit) -> None:
        self._machine.limitReached(limit)

    def _drain_output(self) -> None:
        self._core.output.drain(self.transport)

    def _write_reply(self, data: bytes) -> None:
        try:
            self.transport.writeToChild(_REPLIES_FD, data)  # type: ignore[union-attr]
        except (KeyError, OSError):
            pass  # the program closed fd 4 or is gone; its end is on its way


# ---------------------------------------------------------------------------
# the processor


class Processor:
    """
    Admits and starts runs: the object a processor protocol (or service) holds.

    @ivar sandbox: the checked sandbox (L{gameproto.processor.sandbox.start_sandbox}).
    @ivar launchers: starts the runs' launchers, C{spares} of them ahead of their runs.
    """

    def __init__(
        self,
        reactor: IReactorProcess,
        clock: IReactorTime,
        sandbox: Sandbox,
        max_runs: int | None = None,
        runs_per_minute: int = 30,
        spares: int = 0,
        metrics: Any = None,
    ) -> None:
        self.sandbox = sandbox
        self.metrics = metrics
        self.launchers = sandbox.launchers(reactor, spares)
        self.launchers.replenish()
        self._clock = clock
        limits = sandbox.limits
        self.limiter = RunLimiter(
            max_runs or default_max_runs(),
            sandbox.uid_pool,
            clock,
            runs_per_minute=runs_per_minute,
            worst_case=min(limits.session_time, limits.program_time + limits.engine_wait)
            + limits.kill_grace,
        )
        self.runs: set[Run] = set()

    @property
    def limits(self) -> RunLimits:
        return self.sandbox.limits

    def start_run(
        self,
        user: str,
        language: str,
        code: str,
        on_output: OutputHandler,
        on_engine: EngineHandler,
        output_before_calls: bool = True,
    ) -> Run:
        """
        Start C{code} in C{language} for C{user}.  Raises L{LanguageUnavailable},
        L{CodeTooLarge} or L{ServerBusy} (in that order of checks); otherwise the run is
        spawned and returned (its L{Run.started} may still fail).

        With C{output_before_calls}, what the program printed before an engine call
        reaches C{on_output} before the call reaches C{on_engine} (two reads of its
        output pipes per call); without, output and calls are each in order, not with
        each other.
        """
        chosen = self.sandbox.languages.get(language)
        if chosen is None:
            reason = self.sandbox.disabled.get(language)
            raise LanguageUnavailable(
                f"language {language} is not available" if reason else f"unknown language: {language}"
            )
        if len(code.encode("utf-8", errors="surrogatepass")) > self.limits.code:
            raise CodeTooLarge(self.limits.code_too_large())
        try:
            slot = self.limiter.acquire(user)
        except ServerBusy as e:
            if self.metrics is not None:
                self.metrics.rate_limited.labels("processor", e.limit).inc()
            raise
        run = Run(
            self.launchers, self._clock, self.sandbox, chosen, code, slot, on_output, on_engine,
            output_before_calls,
        )
        self.runs.add(run)
        run.ended.addBoth(self._forget, run)
        if self.metrics is not None:
            self._measure(run)
        run.start()
        return run

    def _measure(self, run: Run) -> None:
        """The run's start-up time and how it ended, in the metrics."""
        metrics, began = self.metrics, time.perf_counter()

        def started(result: _T) -> _T:
            metrics.spawn_latency.observe(time.perf_counter() - began)
            return result

        def ended(result: RunResult) -> RunResult:
            metrics.runs.labels(result.reason).inc()
            return result

        run.started.addCallback(started)
        run.ended.addCallback(ended)

    def _forget(self, result: _T, run: Run) -> _T:
        self.runs.discard(run)
        return result

    def stop_all(self) -> Deferred[None]:
        """
        Stop every run and the spare launchers (server shutdown); fires once every run and
        every spare has ended.
        """
        ended = [self.launchers.stop()]
        for run in list(self.runs):
            ended.append(_when_ended(run))
            run.stop()
        return gatherResults(ended).addCallback(lambda _: None)


def _when_ended(run: Run) -> Deferred[None]:
    """Fires when C{run} ends, leaving C{run.ended}'s own result to its other users."""
    done: Deferred[None] = Deferred()

    def notify(result: RunResult) -> RunResult:
        done.callback(None)
        return result

    run.ended.addCallback(notify)
    return done


__all__ = [
    "ENGINE_TIMEOUT_REPLY",
    "STDERR_TAIL",
    "EngineCallError",
    "Processor",
    "Run",
    "RunResult",
    "SpawnError",
    "signal_name",
]
