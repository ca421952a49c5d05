"""
Runs of user programs, seen from the reactor.

L{Processor} admits runs (L{gameproto.processor.admission}) and starts them; L{Run} is the
C{ProcessProtocol} of one launcher (C{gameproto/processor/launcher/}): it streams the program's output lines, relays its
engine calls, enforces the limits the server keeps (program time, session time, output,
engine channel), asks the launcher to stop, and ends with a L{RunResult}.

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
"""

from __future__ import annotations

import enum
import os
import signal
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import attrs
import orjson
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto.processor.admission import (
    CodeTooLarge,
    LanguageUnavailable,
    RunLimiter,
    RunSlot,
    default_max_runs,
)
from gameproto.processor.budget import Budget
from gameproto.processor.languages import Language, relativize
from gameproto.processor.launchers import Launchers
from gameproto.processor.sandbox import Limit, RunLimits, Sandbox

_T = TypeVar("_T")

OutputHandler = Callable[[str, str], None]
EngineHandler = Callable[[int, Any], Any]

_STREAMS = {1: "stdout", 2: "stderr"}
_REQUESTS_FD = 3
_REPLIES_FD = 4
_STATUS_FD = 5

#: How much of the end of stderr is kept to build the INTERPRETER_ERROR message.
STDERR_TAIL = 64 * 1024

ENGINE_TIMEOUT_REPLY = {"error": "engine call timed out"}


def _utf8_cut(data: bytes, limit: int) -> int:
    """Where to cut C{data} at most C{limit} bytes in without splitting a UTF-8 character."""
    cut = limit
    while cut > max(1, limit - 3) and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut


def signal_name(number: int | None) -> str | None:
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


class SpawnError(Exception):
    """The launcher could not start the program (SERVER_ERROR, close 4011)."""


class EngineCallError(Exception):
    """Raised by an engine handler: the program's call is answered C{{"error": str(e)}}."""


@attrs.frozen
class RunResult:
    """
    How a run ended.

    @ivar exit_code: the interpreter's exit code, or None if a signal killed it.
    @ivar signal: the name of that signal (C{"SIGKILL"}), or None.
    @ivar duration_ms: from the program's start to its end, in milliseconds.
    @ivar limit: the limit that stopped the run, if one did.
    @ivar interpreter_error: the INTERPRETER_ERROR message (limit text first), or None when
        the program exited with 0 or was stopped by L{Run.stop}.
    @ivar stopped: L{Run.stop} was called.
    @ivar spawn_error: the program never started (also L{Run.started}'s failure).
    @ivar cpu_seconds: the interpreter's CPU time, when the launcher reported it.
    @ivar engine_calls: how many engine calls the program made.
    """

    exit_code: int | None
    signal: str | None
    duration_ms: int
    limit: Limit | None = None
    interpreter_error: str | None = None
    stopped: bool = False
    spawn_error: str | None = None
    cpu_seconds: float | None = None
    engine_calls: int = 0

    @property
    def end_message(self) -> str:
        """The C{message} of the C{end} message."""
        if self.signal is not None:
            return f"killed by {self.signal}"
        if self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return "ended"


# ---------------------------------------------------------------------------
# one run


class _State(enum.Enum):
    NEW = "new"
    STARTING = "starting"  # launcher spawned, program not yet started
    RUNNING = "running"
    ENDED = "ended"


@attrs.define
class _Call:
    """The engine call in flight (the SDK makes one at a time)."""

    call_id: int
    started: float
    deferred: Deferred[Any] | None = None
    answered: bool = False


class Run(ProcessProtocol):
    """
    One launcher and the program it runs.  Create it through L{Processor.start_run}.

    @ivar started: fires with None once the program runs; fails with L{SpawnError} if it
        never does.
    @ivar ended: fires with the L{RunResult}, once, after everything is reaped and the slot
        is free (also after a spawn failure).
    """

    _log = Logger()

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
        self.pid: int | None = None  # the interpreter's, once started
        self._launchers = launchers
        self._clock = clock
        self._sandbox = sandbox
        self._limits: RunLimits = sandbox.limits
        self._code = code
        self._slot = slot
        self._on_output = on_output
        self._on_engine = on_engine
        self._output_before_calls = output_before_calls
        self._state = _State.NEW
        self._stopped = False
        self._limit: Limit | None = None
        self._terminating = False
        self._abandoned = False
        self._spawn_error: str | None = None
        self._exit: dict[str, Any] | None = None
        # output
        self._partial: dict[int, bytes] = {1: b"", 2: b""}
        self._received: dict[int, int] = {1: 0, 2: 0}
        self._output_bytes = 0
        self._output_closed = False
        self._stderr_tail = b""
        # engine channel
        self._engine_buffer = b""
        self._requests: deque[bytes] = deque()
        self._call: _Call | None = None
        self._call_count = 0
        self._dispatching = False
        # status pipe
        self._status_buffer = b""
        # time
        self._spawned_at = 0.0
        self._started_at: float | None = None
        self._exited_at: float | None = None
        self._program_clock = Budget(clock, self._limits.program_time, partial(self._limit_reached, Limit.TIME))
        self._engine_wait = Budget(
            clock, self._limits.engine_wait, partial(self._limit_reached, Limit.ENGINE_WAIT)
        )
        self._session_timer: IDelayedCall | None = None
        self._hang_timer: IDelayedCall | None = None
        self._call_timer: IDelayedCall | None = None

    def __repr__(self) -> str:
        return f"<Run {self.name} {self.language.name} {self._state.value}>"

    # -- public ------------------------------------------------------------

    @property
    def engine_calls(self) -> int:
        return self._call_count

    def program_time(self) -> float:
        """Seconds of program time used so far (engine calls excluded)."""
        return self._program_clock.used()

    def start(self) -> None:
        """Spawn the launcher and send it the request."""
        if self._state is not _State.NEW:
            raise RuntimeError("a run starts once")
        self._state = _State.STARTING
        self._spawned_at = self._clock.seconds()
        try:
            self._launchers.start(self, self._sandbox.lock_fd(self.uid))
        except Exception as error:
            self._log.failure("cannot spawn the processor launcher", run=repr(self))
            self._spawn_error = f"cannot spawn the launcher: {error}"
            self._finish()
            return
        self._session_timer = self._clock.callLater(
            self._limits.session_time, self._limit_reached, Limit.SESSION
        )
        request = self._sandbox.launch_request(self.language, self._code, self.name, self.uid)
        self._code = ""
        self.transport.writeToChild(0, request)  # type: ignore[union-attr]
        self.transport.closeChildFD(0)  # type: ignore[union-attr]

    def stop(self) -> None:
        """
        Stop the run: TERM to the launcher, which TERMs the program, KILLs everything after
        the grace period, and reports.  L{ended} fires as usual (C{stopped} is set).
        """
        if self._state is _State.ENDED:
            return
        self._stopped = True
        self._terminate()

    # -- ProcessProtocol ---------------------------------------------------

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if self._state is _State.ENDED:
            return  # the run was given up on (hung launcher); nothing more reaches anyone
        if childFD in _STREAMS:
            self._received[childFD] += len(data)
            self._output(childFD, data)
        elif childFD == _REQUESTS_FD:
            self._engine_data(data)
        elif childFD == _STATUS_FD:
            self._status_data(data)

    def childConnectionLost(self, childFD: int) -> None:
        if childFD in _STREAMS and self._state is not _State.ENDED:
            self._flush_partial(childFD)

    def processEnded(self, reason: Failure) -> None:
        if self._abandoned:
            # The hung launcher finally ended: its uid can be reused once swept.
            self._sandbox.sweep(self.uid)
            self._slot.release_uid()
            return
        for fd in _STREAMS:
            self._flush_partial(fd)
        self._finish()

    # -- output ------------------------------------------------------------

    def _output(self, fd: int, data: bytes) -> None:
        if self._output_closed:
            return
        remaining = self._limits.output - self._output_bytes
        over = len(data) > remaining
        if over:
            data = data[:remaining]
        self._output_bytes += len(data)
        if fd == 2:
            self._stderr_tail = (self._stderr_tail + data)[-STDERR_TAIL:]
        lines = (self._partial[fd] + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            self._emit_line(fd, line[:-1] if line.endswith(b"\r") else line)
        # A line may not grow without bound in memory: an unfinished one is delivered in
        # pieces too once it is longer than a line may be.
        while len(self._partial[fd]) > self._limits.output_line:
            cut = _utf8_cut(self._partial[fd], self._limits.output_line)
            piece, self._partial[fd] = self._partial[fd][:cut], self._partial[fd][cut:]
            self._emit_line(fd, piece)
        if over:
            self._flush_partial(fd)
            self._output_closed = True
            self._limit_reached(Limit.OUTPUT)

    def _flush_partial(self, fd: int) -> None:
        if self._partial[fd]:
            piece, self._partial[fd] = self._partial[fd], b""
            self._emit_line(fd, piece)

    def _emit_line(self, fd: int, line: bytes) -> None:
        """Deliver one line, in pieces of at most C{output_line} bytes."""
        longest = self._limits.output_line
        while True:
            cut = _utf8_cut(line, longest) if len(line) > longest else len(line)
            text = line[:cut].decode("utf-8", errors="replace")
            if fd == 2:
                # Tracebacks the program prints itself name main.py, like the error message.
                text = relativize(text, self.run_dir)
            try:
                self._on_output(_STREAMS[fd], text)
            except Exception:
                self._log.failure("output handler failed", run=repr(self))
            line = line[cut:]
            if not line:
                return

    def _drain_output(self) -> None:
        """
        Read what the program wrote on stdout/stderr before an engine call, before the call
        is relayed: the SDK flushed it into the pipes first, but the reactor may service fd
        3 before fds 1 and 2 in the same iteration, and the user would see the command
        before the line printed ahead of it.
        """
        pipes = getattr(self.transport, "pipes", None)
        if not isinstance(pipes, dict):
            return
        for fd in _STREAMS:
            for _ in range(16):  # 16 x 8 KiB covers a full pipe buffer (64 KiB)
                reader = pipes.get(fd)
                if reader is None:
                    break
                before = self._received[fd]
                reader.doRead()
                if self._received[fd] == before:
                    break

    # -- engine channel ----------------------------------------------------

    def _engine_data(self, data: bytes) -> None:
        if self._limit is Limit.ENGINE_CHANNEL:
            return
        lines = (self._engine_buffer + data).split(b"\n")
        self._engine_buffer = lines.pop()
        self._requests.extend(lines)
        pending = len(self._engine_buffer) + sum(len(line) for line in self._requests)
        if pending > self._limits.engine_channel:
            # Either one request line larger than any engine message, or requests written
            # without waiting for replies: the SDK does neither.
            self._requests.clear()
            self._engine_buffer = b""
            self._limit_reached(Limit.ENGINE_CHANNEL)
            return
        self._dispatch_requests()

    def _dispatch_requests(self) -> None:
        # A loop, not recursion: a handler answering synchronously must not nest one frame
        # per queued request.
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._call is None and self._requests and self._relaying():
                self._dispatch(self._requests.popleft())
        finally:
            self._dispatching = False

    def _relaying(self) -> bool:
        # Once the run is being stopped, its calls are no longer relayed to the engine.
        return self._state is _State.RUNNING and not self._terminating

    def _dispatch(self, line: bytes) -> None:
        try:
            command = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._write_reply({"error": "invalid JSON in engine request"})
            return
        self._pause_program_clock(engine_call=True)
        if self._output_before_calls:
            self._drain_output()
            if not self._relaying():  # the drained output went over the output limit
                return
        self._call_count += 1
        call = _Call(self._call_count, self._clock.seconds())
        self._call = call
        if self._call_timer is None:
            # One timer for every call (see Budget): set for this call's deadline, or
            # earlier for a call answered since, and looking again when it fires.
            self._call_timer = self._clock.callLater(
                self._limits.engine_call_timeout, self._check_call_time
            )
        try:
            reply = self._on_engine(call.call_id, command)
        except Exception:
            self._engine_failed(Failure(), call)
            return
        if not isinstance(reply, Deferred):
            self._answer(call, reply)  # most engines answer at once: no Deferred to run
            return
        call.deferred = reply
        reply.addCallbacks(
            self._engine_answered,
            self._engine_failed,
            callbackArgs=(call,),
            errbackArgs=(call,),
        )

    def _engine_answered(self, reply: Any, call: _Call) -> None:
        self._answer(call, reply)

    def _check_call_time(self) -> None:
        self._call_timer = None
        call = self._call
        if call is None or call.answered:
            return
        left = call.started + self._limits.engine_call_timeout - self._clock.seconds()
        if left > 0:
            self._call_timer = self._clock.callLater(left, self._check_call_time)
        else:
            self._engine_timed_out(call)

    def _engine_failed(self, failure: Failure, call: _Call) -> None:
        if call.answered:
            return  # cancelled after the timeout, or at the end of the run
        if failure.check(EngineCallError):
            reply = {"error": str(failure.value)}
        elif failure.check(CancelledError):
            reply = {"error": "engine call cancelled"}
        else:
            self._log.failure("engine handler failed", failure, run=repr(self), call=call.call_id)
            reply = {"error": "engine failure"}
        self._answer(call, reply)

    def _engine_timed_out(self, call: _Call) -> None:
        self._log.info(
            "engine call {call} of {run} timed out", call=call.call_id, run=repr(self)
        )
        self._answer(call, ENGINE_TIMEOUT_REPLY)
        if call.deferred is not None:
            call.deferred.cancel()

    def _answer(self, call: _Call, reply: Any) -> None:
        if call.answered or call is not self._call:
            return
        call.answered = True
        self._call = None
        if self._state is not _State.RUNNING:
            return
        self._write_reply(reply)
        self._resume_program_clock()
        self._dispatch_requests()

    def _write_reply(self, reply: Any) -> None:
        try:
            data = orjson.dumps(reply)
        except TypeError:  # orjson's JSONEncodeError: a lone surrogate, a huge integer
            data = orjson.dumps({"error": "engine reply is not valid JSON"})
        try:
            self.transport.writeToChild(_REPLIES_FD, data + b"\n")  # type: ignore[union-attr]
        except (KeyError, OSError):
            pass  # the program closed fd 4 or is gone; its end is on its way

    # -- status pipe ---------------------------------------------------------

    def _status_data(self, data: bytes) -> None:
        lines = (self._status_buffer + data).split(b"\n")
        self._status_buffer = lines.pop()
        for line in lines:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                self._log.error("unreadable launcher status", run=repr(self))
                continue
            kind = event.get("event") if isinstance(event, dict) else None
            if kind == "started" and self._state is _State.STARTING:
                self._program_started(event)
            elif kind == "error":
                self._spawn_error = str(event.get("message"))
            elif kind == "exit":
                self._exit = event
                self._exited_at = self._clock.seconds()
                self._pause_program_clock()

    def _program_started(self, event: dict[str, Any]) -> None:
        self._state = _State.RUNNING
        self.pid = event.get("pid")
        self._started_at = self._clock.seconds()
        self._log.info(
            "run {run} of {user} started ({language}, uid {uid})",
            run=repr(self),
            user=self.user,
            language=self.language.name,
            uid=self.uid,
        )
        if not self._terminating:
            self._resume_program_clock()
        self.started.callback(None)
        self._dispatch_requests()

    # -- time and limits ----------------------------------------------------

    def _resume_program_clock(self) -> None:
        """The program runs again (started, or an engine call answered)."""
        self._engine_wait.pause()
        if self._state is not _State.RUNNING or self._terminating or self._exit is not None:
            return
        self._program_clock.resume()

    def _pause_program_clock(self, engine_call: bool = False) -> None:
        """The program stops running: ended, stopped, or blocked in an engine call."""
        self._program_clock.pause()
        if engine_call:
            self._engine_wait.resume()
        else:
            self._engine_wait.pause()

    def _limit_reached(self, limit: Limit) -> None:
        if limit is Limit.SESSION:
            self._session_timer = None
        if self._state is _State.ENDED or self._exit is not None:
            return  # the program already ended on its own
        if self._limit is None:
            self._limit = limit
            self._log.info(
                "run {run} of {user}: {limit}", run=repr(self), user=self.user, limit=limit.value
            )
        self._terminate()

    def _terminate(self) -> None:
        if self._terminating or self._state is _State.ENDED or self.transport is None:
            return
        self._terminating = True
        self._pause_program_clock()
        try:
            self.transport.signalProcess("TERM")
        except ProcessExitedAlready:
            return
        # The launcher reports within milliseconds of the grace period; one that does not
        # is hung (never SIGKILLed: it is the only thing that reaps the run's processes).
        self._hang_timer = self._clock.callLater(
            self._limits.kill_grace + self._limits.launcher_timeout, self._launcher_hung
        )

    def _launcher_hung(self) -> None:
        self._hang_timer = None
        self._log.error(
            "processor launcher of {run} did not finish; killing uid {uid} from the server",
            run=repr(self),
            uid=self.uid,
        )
        self._sandbox.sweep(self.uid)
        if self.uid is None and self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # without root, the program's group
            except OSError:
                pass
        # The user may run again; the uid stays out of the pool until the launcher ends.
        self._abandoned = True
        self._finish(keep_uid=True)

    # -- the end -------------------------------------------------------------

    def _finish(self, keep_uid: bool = False) -> None:
        if self._state is _State.ENDED:
            return
        was_running = self._state is _State.RUNNING
        self._state = _State.ENDED
        now = self._clock.seconds()
        self._program_clock.stop()
        self._engine_wait.stop()
        for timer in (self._session_timer, self._hang_timer, self._call_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._session_timer = self._hang_timer = self._call_timer = None
        call, self._call = self._call, None
        if call is not None:
            call.answered = True
            if call.deferred is not None:
                call.deferred.cancel()  # lets a relaying protocol forget the call id
        if self._exit is not None and not self._exit.get("swept", True):
            self._log.error("launcher of {run} could not kill every process", run=repr(self))
            self._sandbox.sweep(self.uid)
        self._slot.release_slot()
        if not keep_uid:
            self._slot.release_uid()
        result = self._result(now)
        if not was_running:
            error = self._spawn_error or "the launcher ended without starting the program"
            if self._spawn_error is None:
                result = attrs.evolve(result, spawn_error=error, interpreter_error=None)
            self._log.warn("run {run} did not start: {error}", run=repr(self), error=error)
            self.started.errback(SpawnError(error))
        self._log.info(
            "run {run} of {user} ended: {end} after {duration_ms} ms, limit {limit}, "
            "{calls} engine calls, {output} bytes of output",
            run=repr(self),
            user=self.user,
            end=result.end_message,
            duration_ms=result.duration_ms,
            limit=result.limit.value if result.limit else None,
            calls=self._call_count,
            output=self._output_bytes,
        )
        self.ended.callback(result)

    def _result(self, now: float) -> RunResult:
        status = self._exit or {}
        exit_code = status.get("exit_code")
        signum = status.get("signal")
        cpu = status.get("cpu_seconds")
        began = self._started_at if self._started_at is not None else self._spawned_at
        finished = self._exited_at if self._exited_at is not None else now
        duration_ms = max(0, round((finished - began) * 1000))
        failed = bool(status) and exit_code != 0
        stderr = self._stderr_tail.decode("utf-8", errors="replace")
        limit = self._limit
        if limit is None:
            # Limits of the whole run, seen by the launcher in the run's cgroup (or, in the
            # weak sandbox, in its process tree).
            limit = _LAUNCHER_LIMITS.get(status.get("reason"))
        if limit is None and failed:
            limit = self._limit_from_status(signum, cpu, stderr)
        interpreter_error = None
        if self._spawn_error is None and (limit is not None or (failed and not self._stopped)):
            parts = [self._limits.message(limit)] if limit is not None else []
            error = self.language.rewrite_error(stderr, self.run_dir)
            if error:
                parts.append(error)
            if not parts:
                parts.append(
                    f"killed by {signal_name(signum)}"
                    if signum is not None
                    else f"exited with code {exit_code}"
                )
            interpreter_error = "\n".join(parts)
        return RunResult(
            exit_code=exit_code,
            signal=signal_name(signum),
            duration_ms=duration_ms,
            limit=limit,
            interpreter_error=interpreter_error,
            stopped=self._stopped,
            spawn_error=self._spawn_error,
            cpu_seconds=cpu,
            engine_calls=self._call_count,
        )

    def _limit_from_status(self, signum: int | None, cpu: float | None, stderr: str) -> Limit | None:
        """The limits the kernel enforces, recognised from how the program died."""
        if signum == signal.SIGXCPU or (
            signum == signal.SIGKILL and cpu is not None and cpu >= self._limits.cpu_time
        ):
            return Limit.CPU
        if self.language.out_of_memory(stderr):
            return Limit.MEMORY
        # CPython ignores SIGXFSZ: its file limit is "OSError: [Errno 27] File too large";
        # node says "EFBIG: file too large".
        if signum == signal.SIGXFSZ or "file too large" in stderr.lower():
            return Limit.FILE
        return None


# ---------------------------------------------------------------------------
# the processor


#: The launcher's end reasons that are limits.
_LAUNCHER_LIMITS = {"processes": Limit.PROCESSES, "memory": Limit.MEMORY, "cpu": Limit.CPU}


class Processor:
    """
    Admits and starts runs: the object a processor protocol (or service) holds.

    @ivar sandbox: the checked sandbox (L{gameproto.processor.sandbox.start_sandbox}).
    @ivar launchers: starts the runs' launchers, C{spares} of them ahead of their runs.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorProcess,
        clock: IReactorTime,
        sandbox: Sandbox,
        max_runs: int | None = None,
        runs_per_minute: int = 30,
        spares: int = 0,
    ) -> None:
        self.sandbox = sandbox
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
        slot = self.limiter.acquire(user)
        run = Run(
            self.launchers, self._clock, self.sandbox, chosen, code, slot, on_output, on_engine,
            output_before_calls,
        )
        self.runs.add(run)
        run.ended.addBoth(self._forget, run)
        run.start()
        return run

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
