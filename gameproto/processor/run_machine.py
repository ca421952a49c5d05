"""
The state machine of one run (L{RunInputs}, L{RunCore}, L{RunMachine}); its diagram is in
L{gameproto.processor.runner.Run}'s docstring, its adapter.

Its inputs are what decides a run's course: the server starting it, the launcher's status
reports, a limit reached, the client's stop, the launcher hung or ended.  The program's
output and engine calls go past it (L{gameproto.processor.output_lines},
L{gameproto.processor.engine_channel}): its outputs switch those pieces on and off.

Nothing here calls back into the data path while a transition runs (Automat postpones an
input that arrives then): the adapter relays the engine calls waiting once the program's
start is over.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Protocol

import attrs
from automat import TypeMachineBuilder
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IProcessTransport, IReactorTime
from twisted.logger import Logger

from gameproto.processor.admission import RunSlot
from gameproto.processor.budget import RunTime
from gameproto.processor.engine_channel import EngineChannel
from gameproto.processor.languages import Language
from gameproto.processor.launchers import Launchers
from gameproto.processor.output_lines import OutputLines
from gameproto.processor.run_result import RunRecord, RunResult
from gameproto.processor.limits import Limit, RunLimits
from gameproto.processor.sandbox import Sandbox

_REQUEST_FD = 0

_log = Logger(namespace="gameproto.processor.runner")


class LauncherRun(Protocol):
    """What the machine needs of its run: L{gameproto.processor.runner.Run}."""

    name: str
    run_dir: str
    started: Deferred[None]
    ended: Deferred[RunResult]
    transport: IProcessTransport | None


class SpawnError(Exception):
    """The launcher could not start the program (SERVER_ERROR, close 4011)."""


class RunInputs(Protocol):
    """Everything that can happen to a run, apart from its output and engine calls."""

    # The server.
    def start(self) -> None:
        """Start the launcher and send it the request."""

    def spawnFailed(self, error: str) -> None:
        """The launcher could not even be started."""

    # The launcher's status pipe (L{gameproto.processor.launcher_status}).
    def programStarted(self, pid: int | None) -> None: ...

    def launcherError(self, message: str) -> None: ...

    def programExited(self, status: dict[str, Any]) -> None: ...

    # The limits the server keeps: a clock, the output, the engine channel.
    def limitReached(self, limit: Limit) -> None: ...

    # The client: its stop, or its connection gone (or the server stopping).
    def stop(self) -> None: ...

    # The launcher's process.
    def launcherHung(self) -> None:
        """The launcher has not ended well after the grace period it was given."""

    def launcherEnded(self) -> None: ...


@attrs.define
class RunCore:
    """
    One run's pieces and what is known of it.

    @ivar readers: where each pipe of the launcher goes; emptied once the run is over, so
        that nothing a launcher given up on writes reaches anyone.
    """

    run: LauncherRun
    launchers: Launchers
    clock: IReactorTime
    sandbox: Sandbox
    language: Language
    code: str
    slot: RunSlot
    time: RunTime
    output: OutputLines
    channel: EngineChannel
    record: RunRecord = attrs.Factory(RunRecord)
    readers: dict[int, Any] = attrs.Factory(dict)
    hang_timer: IDelayedCall | None = None

    @property
    def limits(self) -> RunLimits:
        return self.sandbox.limits


machine = TypeMachineBuilder(RunInputs, RunCore)
New = machine.state("New")
Starting = machine.state("Starting")
Cancelling = machine.state("Cancelling")
Running = machine.state("Running")
Stopping = machine.state("Stopping")
Exited = machine.state("Exited")
ExitedStopping = machine.state("ExitedStopping")
Abandoned = machine.state("Abandoned")
Ended = machine.state("Ended")

#: Before the launcher's "started" report.
_UNSTARTED = (Starting, Cancelling)
#: After TERM was sent to the launcher: its hang timer runs.
_SIGNALLED = (Cancelling, Stopping, ExitedStopping)
#: Where the launcher is expected to end.
_LAUNCHER_ALIVE = (Starting, Cancelling, Running, Stopping, Exited, ExitedStopping)


# -- starting ------------------------------------------------------------------------


@New.upon(RunInputs.start).to(Starting)
def _spawn(inputs: RunInputs, core: RunCore) -> None:
    core.record.spawned_at = core.clock.seconds()
    try:
        core.launchers.start(core.run, core.sandbox.lock_fd(core.slot.uid))
    except Exception as error:
        _log.failure("cannot spawn the processor launcher", run=repr(core.run))
        inputs.spawnFailed(f"cannot spawn the launcher: {error}")
        return
    core.time.start_session()
    request = core.sandbox.launch_request(core.language, core.code, core.run.name, core.slot.uid)
    core.code = ""
    transport = core.run.transport
    assert transport is not None
    transport.writeToChild(_REQUEST_FD, request)
    transport.closeChildFD(_REQUEST_FD)


@New.upon(RunInputs.stop).loop()
def _stopped(inputs: RunInputs, core: RunCore) -> None:
    core.record.stopped = True


def _started(inputs: RunInputs, core: RunCore, pid: int | None) -> None:
    core.record.pid = pid
    core.record.started_at = core.clock.seconds()
    _log.info(
        "run {run} of {user} started ({language}, uid {uid})",
        run=repr(core.run),
        user=core.slot.user,
        language=core.language.name,
        uid=core.slot.uid,
    )


@Starting.upon(RunInputs.programStarted).to(Running)
def _program_runs(inputs: RunInputs, core: RunCore, pid: int | None) -> None:
    _started(inputs, core, pid)
    core.time.program_runs()
    # The calls waiting are relayed once this transition is over (the adapter pumps the
    # channel): by then, whatever the started callbacks did to the run has happened.
    core.channel.relay()
    core.run.started.callback(None)


@Cancelling.upon(RunInputs.programStarted).to(Stopping)
def _program_started_stopping(inputs: RunInputs, core: RunCore, pid: int | None) -> None:
    _started(inputs, core, pid)
    core.run.started.callback(None)


@Starting.upon(RunInputs.spawnFailed).to(Ended)
def _spawn_failed(inputs: RunInputs, core: RunCore, error: str) -> None:
    core.record.spawn_error = error
    _finish(core)


def _launcher_error(inputs: RunInputs, core: RunCore, message: str) -> None:
    core.record.spawn_error = message


def _exited(inputs: RunInputs, core: RunCore, status: dict[str, Any]) -> None:
    core.record.status = status
    core.record.exited_at = core.clock.seconds()
    core.time.halt()


for _state in _LAUNCHER_ALIVE:
    _state.upon(RunInputs.launcherError).loop()(_launcher_error)
    if _state not in _UNSTARTED:
        _state.upon(RunInputs.programStarted).loop().returns(None)  # said once already
Starting.upon(RunInputs.programExited).loop()(_exited)  # never before "started", but kept
Cancelling.upon(RunInputs.programExited).loop()(_exited)
Running.upon(RunInputs.programExited).to(Exited)(_exited)
Stopping.upon(RunInputs.programExited).to(ExitedStopping)(_exited)
Exited.upon(RunInputs.programExited).loop()(_exited)
ExitedStopping.upon(RunInputs.programExited).loop()(_exited)


# -- stopping ------------------------------------------------------------------------


def _terminate(inputs: RunInputs, core: RunCore) -> None:
    """TERM to the launcher, which TERMs the program, KILLs everything after the grace
    period, and reports."""
    core.time.halt()
    core.channel.hold()  # once the run is being stopped, its calls are no longer relayed
    transport = core.run.transport
    assert transport is not None
    try:
        transport.signalProcess("TERM")
    except ProcessExitedAlready:
        return
    # The launcher reports within milliseconds of the grace period; one that does not
    # is hung (never SIGKILLed: it is the only thing that reaps the run's processes).
    core.hang_timer = core.clock.callLater(
        core.limits.kill_grace + core.limits.launcher_timeout, inputs.launcherHung
    )


def _limit(inputs: RunInputs, core: RunCore, limit: Limit) -> None:
    if core.record.limit is None:
        core.record.limit = limit
        _log.info(
            "run {run} of {user}: {limit}", run=repr(core.run), user=core.slot.user, limit=limit.value
        )


def _stop(inputs: RunInputs, core: RunCore) -> None:
    _stopped(inputs, core)
    _terminate(inputs, core)


def _limit_stop(inputs: RunInputs, core: RunCore, limit: Limit) -> None:
    _limit(inputs, core, limit)
    _terminate(inputs, core)


for _from, _to in ((Starting, Cancelling), (Running, Stopping), (Exited, ExitedStopping)):
    _from.upon(RunInputs.stop).to(_to)(_stop)
for _from, _to in ((Starting, Cancelling), (Running, Stopping)):
    _from.upon(RunInputs.limitReached).to(_to)(_limit_stop)
for _state in (Cancelling, Stopping):
    _state.upon(RunInputs.limitReached).loop()(_limit)
for _state in _SIGNALLED:
    _state.upon(RunInputs.stop).loop()(_stopped)
# Once the program exited, a clock running out (or its last output) changes nothing.
for _state in (Exited, ExitedStopping):
    _state.upon(RunInputs.limitReached).loop().returns(None)


@Cancelling.upon(RunInputs.launcherHung).to(Abandoned)
def _abandon(inputs: RunInputs, core: RunCore) -> None:
    core.hang_timer = None
    _log.error(
        "processor launcher of {run} did not finish; killing uid {uid} from the server",
        run=repr(core.run),
        uid=core.slot.uid,
    )
    core.sandbox.sweep(core.slot.uid)
    pid = core.record.pid
    if core.slot.uid is None and pid is not None:
        try:
            os.killpg(pid, signal.SIGKILL)  # without root, the program's group
        except OSError:
            pass
    # The user may run again; the uid stays out of the pool until the launcher ends.
    _finish(core, keep_uid=True, swept=True)


Stopping.upon(RunInputs.launcherHung).to(Abandoned)(_abandon)
ExitedStopping.upon(RunInputs.launcherHung).to(Abandoned)(_abandon)


# -- the end -------------------------------------------------------------------------


def _launcher_ended(inputs: RunInputs, core: RunCore) -> None:
    core.output.flush_all()
    _finish(core)


for _state in _LAUNCHER_ALIVE:
    _state.upon(RunInputs.launcherEnded).to(Ended)(_launcher_ended)


@Abandoned.upon(RunInputs.launcherEnded).to(Ended)
def _abandoned_launcher_ended(inputs: RunInputs, core: RunCore) -> None:
    # The hung launcher finally ended: its uid can be reused once swept.
    core.sandbox.sweep(core.slot.uid)
    core.slot.release_uid()


def _launcher_left_processes(record: RunRecord, run: LauncherRun) -> bool:
    """Whether the launcher may have left processes of the run behind (and says which way)."""
    if record.status is None and record.started:
        # It died between the program's start and its report: it swept nothing.
        _log.error("launcher of {run} ended without its report", run=repr(run))
        return True
    if record.status is not None and not record.status.get("swept", True):
        _log.error("launcher of {run} could not kill every process", run=repr(run))
        return True
    return False


def _finish(core: RunCore, keep_uid: bool = False, swept: bool = False) -> None:
    """End the run; C{swept}: the server has killed what was left of its uid already."""
    run, record = core.run, core.record
    now = core.clock.seconds()
    core.readers.clear()
    core.time.end()
    if core.hang_timer is not None and core.hang_timer.active():
        core.hang_timer.cancel()
    core.hang_timer = None
    core.channel.close()
    if not swept and _launcher_left_processes(record, run):
        core.sandbox.sweep(core.slot.uid)
    core.slot.release_slot()
    if not keep_uid:
        core.slot.release_uid()
    result = record.result(
        now, core.output.stderr_tail(), core.channel.calls, core.limits, core.language, run.run_dir
    )
    if not record.started:
        _log.warn("run {run} did not start: {error}", run=repr(run), error=result.spawn_error)
        run.started.errback(SpawnError(result.spawn_error))
    _log.info(
        "run {run} of {user} ended: {end} after {duration_ms} ms, limit {limit}, "
        "{calls} engine calls, {output} bytes of output",
        run=repr(run),
        user=core.slot.user,
        end=result.end_message,
        duration_ms=result.duration_ms,
        limit=result.limit.value if result.limit else None,
        calls=result.engine_calls,
        output=core.output.delivered,
    )
    run.ended.callback(result)


# Over is over: a late stop, limit or report changes nothing.
for _state in (Abandoned, Ended):
    for _input in (
        RunInputs.stop, RunInputs.limitReached, RunInputs.programStarted,
        RunInputs.launcherError, RunInputs.programExited, RunInputs.launcherHung,
    ):
        _state.upon(_input).loop().returns(None)
Ended.upon(RunInputs.launcherEnded).loop().returns(None)

RunMachine = machine.build()