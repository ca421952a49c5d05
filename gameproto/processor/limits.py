"""
The limits of a run (L{RunLimits}, every one with its default: DESIGN.md, processor), and
which one stopped it (L{Limit}), with its text for the user.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

KiB = 1024
MiB = 1024 * KiB


def positive(instance: Any, attribute: "attrs.Attribute[Any]", value: float) -> None:
    """An attrs validator: the value must be above zero."""
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


def format_seconds(value: float) -> str:
    return f"{value:g} s"


def format_size(value: int) -> str:
    if value % MiB == 0:
        return f"{value // MiB} MiB"
    if value % KiB == 0:
        return f"{value // KiB} KiB"
    return f"{value} B"


class Limit(enum.Enum):
    """
    A limit that stopped a run, in the order of DESIGN.md's list (the order in which an
    error message names them).
    """

    TIME = "time"
    CPU = "cpu"
    MEMORY = "memory"
    OUTPUT = "output"
    FILE = "file"
    PROCESSES = "processes"
    SESSION = "session"
    ENGINE_CHANNEL = "engine_channel"
    ENGINE_WAIT = "engine_wait"


@attrs.frozen
class RunLimits:
    """
    The limits of one run.  Times in seconds, sizes in bytes.

    @ivar program_time: wall time minus the time blocked in engine calls.
    @ivar session_time: wall time, engine calls included.
    @ivar cpu_time: RLIMIT_CPU soft limit (SIGXCPU); the hard limit is one more (SIGKILL).
    @ivar memory: RLIMIT_DATA (not RLIMIT_AS: V8 reserves about 1 GiB of address space);
        node's heap and PHP's memory_limit get 32 MiB less.
    @ivar processes: RLIMIT_NPROC, processes and threads of the run uid.
    @ivar file_size: RLIMIT_FSIZE, the largest file the program may write.
    @ivar run_dir_size: the tmpfs of the run directory and /tmp (root only).
    @ivar output: stdout and stderr together.
    @ivar code: the user's code, in bytes of UTF-8.
    @ivar engine_call_timeout: a call not answered in time gets
        C{{"error": "engine call timed out"}}; the run goes on.
    @ivar engine_channel: engine requests buffered and not yet answered (a request line
        longer than this, or a program writing requests without reading replies, ends the
        run).
    @ivar engine_wait: the time a run may spend blocked in engine calls, all of them
        together: a program waiting on a client that never answers holds a run slot for
        this long at most.
    @ivar output_line: longer output lines are delivered in pieces of this size.
    @ivar open_files: RLIMIT_NOFILE.
    @ivar kill_grace: KILL follows TERM after this long.
    @ivar launcher_timeout: a launcher not done this long after TERM is presumed hung: the
        server kills the run uid's processes itself and ends the run.
    """

    program_time: float = attrs.field(default=10.0, validator=positive)
    session_time: float = attrs.field(default=600.0, validator=positive)
    cpu_time: int = attrs.field(default=5, validator=positive)
    memory: int = attrs.field(default=256 * MiB, validator=positive)
    processes: int = attrs.field(default=64, validator=positive)
    file_size: int = attrs.field(default=1 * MiB, validator=positive)
    run_dir_size: int = attrs.field(default=16 * MiB, validator=positive)
    output: int = attrs.field(default=1 * MiB, validator=positive)
    code: int = attrs.field(default=256 * KiB, validator=positive)
    engine_call_timeout: float = attrs.field(default=10.0, validator=positive)
    engine_channel: int = attrs.field(default=1 * MiB, validator=positive)
    engine_wait: float = attrs.field(default=60.0, validator=positive)
    output_line: int = attrs.field(default=8 * KiB, validator=positive)
    open_files: int = attrs.field(default=256, validator=positive)
    kill_grace: float = attrs.field(default=0.2, validator=positive)
    launcher_timeout: float = attrs.field(default=5.0, validator=positive)

    def message(self, limit: Limit) -> str:
        """The text shown to the user, first in the INTERPRETER_ERROR message."""
        return {
            Limit.TIME: f"time limit exceeded ({format_seconds(self.program_time)})",
            Limit.CPU: f"CPU time limit exceeded ({format_seconds(self.cpu_time)})",
            Limit.MEMORY: "memory limit exceeded",
            Limit.OUTPUT: "output limit exceeded",
            Limit.FILE: f"file size limit exceeded ({format_size(self.file_size)})",
            Limit.PROCESSES: f"process limit exceeded ({self.processes})",
            Limit.SESSION: f"session limit exceeded ({format_seconds(self.session_time)})",
            Limit.ENGINE_CHANNEL: (
                f"engine request limit exceeded ({format_size(self.engine_channel)})"
            ),
            Limit.ENGINE_WAIT: f"engine wait limit exceeded ({format_seconds(self.engine_wait)})",
        }[limit]

    def code_too_large(self) -> str:
        return f"code too large (max {format_size(self.code)})"
