"""
The request the server writes on the launcher's fd 0 (one JSON line, then the user's code),
and the descriptor numbers both sides agree on.  Standard library only.
"""

from __future__ import annotations

from typing import TypedDict

#: The launcher's status pipe (JSON lines to the server).
STATUS_FD = 5
#: The host-wide lock of the run uid (an flock'd file, see
#: L{gameproto.processor.uids}), held by the launcher until its last process is gone.
UID_LOCK_FD = 6
#: The descriptors the program inherits; 3 and 4 are the engine channel.
PROGRAM_FDS = (1, 2, 3, 4)
#: In the isolated sandbox, what bubblewrap reads when it builds the run's view: the
#: user's file, the SDK file (C{--file FD PATH}) and the seccomp filter (C{--seccomp FD}).
CODE_FD = 10
SDK_FD = 11
SECCOMP_FD = 12


class CgroupSpec(TypedDict):
    """
    The run's cgroup: C{version} 1 (one directory per controller hierarchy: memory, pids,
    cpuacct) or 2 (one directory, under C{"unified"}).  The launcher creates the
    directories, writes the limits, puts the program in them and removes them at the end.
    """

    version: int
    paths: dict[str, str]


class Request(TypedDict):
    """The JSON line on fd 0, written by L{gameproto.processor.sandbox.Sandbox}."""

    argv: list[str]
    env: dict[str, str]
    # The isolated sandbox: argv is bubblewrap's; the run's files live in its tmpfs.
    isolated: bool
    cgroup: CgroupSpec | None
    seccomp: str | None  # base64 of the compiled BPF program
    # The weak sandbox: a run directory on the host.
    run_dir: str
    file_name: str
    sdk_source: str
    sdk_file_name: str
    uid: int | None
    gid: int | None
    namespaces: bool
    dir_size: int
    cpu_time: int
    memory: int
    processes: int
    file_size: int
    open_files: int
    nice: int
    kill_grace: float
    poll_interval: float
    parent_pid: int
