"""
How a run ended (L{RunResult}), judged from what was seen of it (L{RunRecord}).
"""

from __future__ import annotations

import signal
from typing import Any

import attrs

from gameproto.processor.languages import Language
from gameproto.processor.limits import Limit, RunLimits

#: The launcher's end reasons that are limits: the run's cgroup (or, in the weak
#: sandbox, its process tree) as the launcher saw it.
LAUNCHER_LIMITS = {"processes": Limit.PROCESSES, "memory": Limit.MEMORY, "cpu": Limit.CPU}


def signal_name(number: int | None) -> str | None:
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


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
    def reason(self) -> str:
        """How it ended in one word or two, for the metrics: a limit's name, C{spawn error},
        C{stopped}, C{signal}, C{exit 0} or C{exit error}."""
        if self.spawn_error is not None:
            return "spawn error"
        if self.limit is not None:
            return self.limit.value
        if self.stopped:
            return "stopped"
        if self.signal is not None:
            return "signal"
        return "exit 0" if self.exit_code == 0 else "exit error"

    @property
    def end_message(self) -> str:
        """The C{message} of the C{end} message."""
        if self.signal is not None:
            return f"killed by {self.signal}"
        if self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return "ended"


@attrs.define
class RunRecord:
    """
    What was seen of one run as it went: the facts its L{RunResult} is made of.

    @ivar status: the launcher's C{exit} report, once it came.
    @ivar limit: the first limit the server saw the run reach.
    @ivar spawn_error: why the launcher could not start the program, if it said.
    """

    spawned_at: float = 0.0
    started_at: float | None = None
    exited_at: float | None = None
    pid: int | None = None
    status: dict[str, Any] | None = None
    limit: Limit | None = None
    stopped: bool = False
    spawn_error: str | None = None

    @property
    def started(self) -> bool:
        """The launcher reported the program started."""
        return self.started_at is not None

    def result(
        self, now: float, stderr: str, engine_calls: int, limits: RunLimits, language: Language,
        run_dir: str,
    ) -> RunResult:
        """The run's result, C{now} that it is over; C{stderr} is the end of its stderr."""
        status = self.status or {}
        exit_code = status.get("exit_code")
        signum = status.get("signal")
        cpu = status.get("cpu_seconds")
        began = self.started_at if self.started_at is not None else self.spawned_at
        finished = self.exited_at if self.exited_at is not None else now
        duration_ms = max(0, round((finished - began) * 1000))
        failed = bool(status) and exit_code != 0
        limit = self.limit
        if limit is None:
            limit = LAUNCHER_LIMITS.get(status.get("reason"))
        if limit is None and failed:
            limit = _limit_from_status(signum, cpu, stderr, limits, language)
        interpreter_error = None
        if self.spawn_error is None and (limit is not None or (failed and not self.stopped)):
            parts = [limits.message(limit)] if limit is not None else []
            error = language.rewrite_error(stderr, run_dir)
            if error:
                parts.append(error)
            if not parts:
                parts.append(
                    f"killed by {signal_name(signum)}"
                    if signum is not None
                    else f"exited with code {exit_code}"
                )
            interpreter_error = "\n".join(parts)
        spawn_error = self.spawn_error
        if not self.started and spawn_error is None:
            spawn_error = "the launcher ended without starting the program"
            interpreter_error = None
        return RunResult(
            exit_code=exit_code,
            signal=signal_name(signum),
            duration_ms=duration_ms,
            limit=limit,
            interpreter_error=interpreter_error,
            stopped=self.stopped,
            spawn_error=spawn_error,
            cpu_seconds=cpu,
            engine_calls=engine_calls,
        )


def _limit_from_status(
    signum: int | None, cpu: float | None, stderr: str, limits: RunLimits, language: Language
) -> Limit | None:
    """The limits the kernel enforces, recognised from how the program died."""
    if signum == signal.SIGXCPU or (
        signum == signal.SIGKILL and cpu is not None and cpu >= limits.cpu_time
    ):
        return Limit.CPU
    if language.out_of_memory(stderr):
        return Limit.MEMORY
    # CPython ignores SIGXFSZ: its file limit is "OSError: [Errno 27] File too large";
    # node says "EFBIG: file too large".
    if signum == signal.SIGXFSZ or "file too large" in stderr.lower():
        return Limit.FILE
    return None
