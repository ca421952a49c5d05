"""
The processor's launcher: runs one user program in the sandbox and reports how it ended.

The server starts it with its own Python, as C{python -I -S <this directory>} (the
standard library only, so it needs neither the project on C{sys.path} nor anything the run
user could read) and, in production, as root.  It stays root for the whole run, so nothing
the user's program does can reach it; only the program drops to the run uid.

File descriptors, set up by the server's C{spawnProcess}:

  - 0: the request: one JSON line (L{launch_request.Request}), then the user's code to EOF;
  - 1, 2: the program's stdout and stderr, passed through unchanged;
  - 3, 4: the engine channel (the program writes requests on 3, reads replies on 4),
    passed through unchanged;
  - 5: status, JSON lines written by the launcher:
    C{{"event": "started", "pid": n}}, then C{{"event": "exit", "exit_code": n|null,
    "signal": n|null, "cpu_seconds": x, "reason": "exit"|"stop"|"processes"|"memory"|"cpu",
    "max_tasks": n, "oom_kills": n, "peak_memory": n, "swept": bool}}; or, if the program
    could not be started, C{{"event": "error", "message": text}};
  - 7: a Unix socket on which, with a run uid, the uid's host-wide lock arrives; held
    until the run's last process is gone.

The server may start a launcher ahead of its run (L{gameproto.processor.launchers}): it
then waits, started, for its request on fd 0.

The isolated sandbox (root, bubblewrap, cgroups, seccomp; the server's default):

  1. C{PR_SET_PDEATHSIG} (the server's death stops the run) and C{PR_SET_CHILD_SUBREAPER}.
  2. The run's cgroup, with its memory (RSS, shared and tmpfs pages alike; no swap) and
     process limits.
  3. The child joins the cgroup, calls C{setsid}, takes its rlimits, nice 19 and the run
     uid with no groups and C{PR_SET_NO_NEW_PRIVS}, and executes bubblewrap with the
     program's command line (built by the server): new user, PID, IPC, UTS, network, mount
     and cgroup namespaces, a filesystem of the interpreter's C{/usr} read-only, a minimal
     C{/dev}, its own C{/proc}, a tmpfs C{/tmp} and run directory C{/box} holding the code and
     the SDK (read by bubblewrap from fds 10 and 11), and the seccomp filter (fd 12) applied
     last.
  4. Watching: the program's exit, a TERM from the server, and the cgroup: an
     out-of-memory kill, the CPU time of the whole run, a refused fork.
  5. Ending: TERM to every process of the cgroup, KILL after the grace period, until the
     cgroup is empty; reaps until C{ECHILD}; removes the cgroup; reports.

The weak sandbox (C{--processor-allow-weak-sandbox}, where bubblewrap or cgroups are
missing) is the older one: as root a uid per run, new network and mount namespaces made
here with a tmpfs run directory and C{/tmp}, rlimits; without root, none of it (the program
keeps the server's uid).  Its end is C{kill(-1)} from a helper running as the run uid,
repeated until C{/proc} shows nothing of that uid.

Its pieces, next to this file: C{launch_request.py} (the request, the descriptors),
C{run_cgroup.py}, C{run_directory.py} (the weak sandbox's run directory),
C{run_processes.py} (every process of the run, and the sweep at its end), C{procfs.py},
C{linux.py}.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import resource
import signal
import sys
import time
from typing import Any, NoReturn

import linux
from launch_request import (
    CODE_FD,
    PROGRAM_FDS,
    SDK_FD,
    SECCOMP_FD,
    STATUS_FD,
    Request,
    close_control,
    receive_lock,
)
from procfs import descendants, task_count, tasks_of_uid
from run_cgroup import RunCgroup
from run_directory import RunDirectory, write_all
from run_processes import RunProcesses

#: Signals the launcher handles synchronously (blocked, read with sigtimedwait).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
HANDLED_SIGNALS = STOP_SIGNALS | {signal.SIGCHLD}

#: How long the final sweep may take before the launcher gives up and says so.
SWEEP_TIMEOUT = 4.0
#: Upper bound on the request (a JSON line plus the code; the server caps code far lower).
MAX_REQUEST = 16 * 1024 * 1024
#: Exit statuses above this are deaths by signal, as bubblewrap (like a shell) reports them.
SIGNAL_EXIT_BASE = 128
#: Where the child parks descriptors before moving them onto their agreed numbers.
_HIGH_FD = 100


class LaunchError(Exception):
    """The program could not be started; reported as C{{"event": "error"}}."""


class Launcher:
    """One run, from the request to the status report."""

    def __init__(self, request: Request, code: bytes, early: RunCgroup | None = None) -> None:
        self.request = request
        self.code = code
        self.uid = request["uid"]
        self.gid = request["gid"] if request["gid"] is not None else request["uid"]
        self.run_dir = request["run_dir"]
        self.isolated = request["isolated"]
        spec = request["cgroup"]
        # The cgroup this launcher entered while it waited becomes the run's (see
        # run_cgroup); without one, the run's is made now and the program joins it.
        self.early = early if spec is not None else None
        self.cgroup = self.early or (RunCgroup.of(dict(spec)) if spec is not None else None)
        self.run_directory: RunDirectory | None = None  # the weak sandbox's
        self.processes = RunProcesses(self.uid, self.gid, self.cgroup)
        self.child = -1
        self.child_status: int | None = None
        self.child_cpu = 0.0
        self.max_tasks = 0
        # With a cgroup, its pids limit counts the run's tasks; RLIMIT_NPROC (which counts
        # the run uid's, bubblewrap's own included) stays a backstop above it.
        processes = request["processes"]
        self.nproc_limit = processes * 2 if self.cgroup is not None else processes
        self.inherited: dict[int, int] = {}  # fd in the program -> fd here

    # -- status ------------------------------------------------------------

    @staticmethod
    def report(**event: Any) -> None:
        data = (json.dumps(event) + "\n").encode()
        try:
            while data:
                data = data[os.write(STATUS_FD, data) :]
        except OSError:
            pass  # the server is gone; the cleanup still has to happen

    # -- setup -------------------------------------------------------------

    def prepare(self) -> None:
        """The cgroup and the run's files (isolated), or the run directory (weak)."""
        with open(self.request["sdk_source"], "rb") as sdk:
            sdk_code = sdk.read()
        if self.early is not None:
            self.early.adopt(dict(self.request["cgroup"]), self.request["memory"], self.request["processes"])  # type: ignore[arg-type]
        elif self.cgroup is not None:
            self.cgroup.create(self.request["memory"], self.request["processes"])
        if self.isolated:
            # bubblewrap copies these into the run's tmpfs; nothing touches the host's disk.
            self.inherited[CODE_FD] = _memfd("code", self.code)
            self.inherited[SDK_FD] = _memfd("sdk", sdk_code)
            seccomp = self.request["seccomp"]
            if seccomp is not None:
                self.inherited[SECCOMP_FD] = _memfd("seccomp", base64.b64decode(seccomp))
            return
        self.run_directory = RunDirectory(self.run_dir, self.uid, self.gid)
        self.run_directory.create(
            {self.request["file_name"]: self.code, self.request["sdk_file_name"]: sdk_code},
            self.request["namespaces"],
            self.request["dir_size"],
        )

    # -- the program -------------------------------------------------------

    def start(self) -> None:
        """Fork the program; raise L{LaunchError} if it could not be executed."""
        if self.uid is None:
            # Not root: RLIMIT_NPROC counts every task of the server's uid, so the run gets
            # the current count plus its limit.
            self.nproc_limit = tasks_of_uid(os.getuid()) + self.request["processes"]
        devnull = os.open("/dev/null", os.O_RDWR)
        error_read, error_write = os.pipe()  # both close-on-exec: EOF means exec worked
        self.child = os.fork()
        if self.child == 0:
            self._exec_program(devnull, error_write)
        os.close(error_write)
        failure = b""
        while chunk := os.read(error_read, 4096):
            failure += chunk
        os.close(error_read)
        # The program holds fds 1-4 now; the launcher lets go of them, so the server sees
        # EOF on the program's pipes once the program and its descendants are gone.
        for fd in (0, *PROGRAM_FDS):
            os.dup2(devnull, fd)
        os.close(devnull)
        for fd in self.inherited.values():
            os.close(fd)
        if failure:
            self.reap(block_until=time.monotonic() + 1.0)
            raise LaunchError(failure.decode("utf-8", "replace"))

    def _exec_program(self, devnull: int, error_write: int) -> NoReturn:
        request = self.request
        try:
            if self.cgroup is not None and not self.cgroup.inside:
                self.cgroup.join(os.getpid())  # as root, before anything of the user runs
            os.setsid()
            for number in signal.valid_signals():
                if number not in (signal.SIGKILL, signal.SIGSTOP):
                    try:
                        signal.signal(number, signal.SIG_DFL)
                    except (OSError, ValueError):
                        pass
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            os.dup2(devnull, 0)
            for fd in PROGRAM_FDS:
                os.set_inheritable(fd, True)
            # The memfds for bubblewrap go out of the way first (a plain dup could land on
            # one of the agreed numbers), then onto those numbers; everything else closes.
            high = {
                target: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
                for target, fd in self.inherited.items()
            }
            for target, fd in high.items():
                os.dup2(fd, target)
            keep = {0, *PROGRAM_FDS, *high, error_write}
            for fd in _open_fds():
                if fd not in keep:
                    _close(fd)
            if not self.isolated:
                os.chdir(self.run_dir)
            cpu = request["cpu_time"]
            limits = {
                resource.RLIMIT_CPU: (cpu, cpu + 1),  # SIGXCPU at the soft limit, then KILL
                resource.RLIMIT_DATA: (request["memory"],) * 2,
                resource.RLIMIT_FSIZE: (request["file_size"],) * 2,
                resource.RLIMIT_NOFILE: (request["open_files"],) * 2,
                resource.RLIMIT_CORE: (0, 0),
                resource.RLIMIT_NPROC: (self.nproc_limit,) * 2,
            }
            for kind, value in limits.items():
                resource.setrlimit(kind, value)
            os.setpriority(os.PRIO_PROCESS, 0, request["nice"])
            if self.uid is not None:
                os.setgroups([])
                os.setresgid(self.gid, self.gid, self.gid)
                os.setresuid(self.uid, self.uid, self.uid)
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            os.execve(request["argv"][0], request["argv"], request["env"])
        except BaseException as error:
            message = f"cannot start {request['argv'][0]}: {error}"
            try:
                os.write(error_write, message.encode("utf-8", "replace"))
            finally:
                os._exit(127)
        os._exit(127)  # unreachable: execve does not return

    def reap(self, block_until: float | None = None) -> bool:
        """
        Reap every exited child (the program, orphans the subreaper inherited, helpers);
        with C{block_until}, wait for children until that monotonic time.  True once
        there is no child left (ECHILD).
        """
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                if block_until is None or time.monotonic() >= block_until:
                    return False
                signal.sigtimedwait({signal.SIGCHLD}, min(0.05, block_until - time.monotonic()))
                continue
            if pid == self.child:
                self.child_status = status
                self.child_cpu = usage.ru_utime + usage.ru_stime

    def run_tasks(self) -> int:
        """The run's tasks (processes and threads), counted from the launcher's tree."""
        return task_count(descendants(os.getpid()), zombies=True)

    def watch(self) -> str:
        """Wait for the program's end, a stop, or a limit of the whole run; return which."""
        poll = self.request["poll_interval"]
        while True:
            info = signal.sigtimedwait(HANDLED_SIGNALS, poll)
            self.reap()
            if self.cgroup is not None:
                limit = self.cgroup_limit()
                if limit is not None:
                    return limit
            if self.child_status is not None:
                return "exit"
            if info is not None and info.si_signo in STOP_SIGNALS:
                return "stop"
            if self.cgroup is None:
                tasks = self.run_tasks()
                self.max_tasks = max(self.max_tasks, tasks)
                if tasks >= self.request["processes"]:
                    # The run sits at its cap: a fork bomb.  Stop it now rather than let 64
                    # spinning processes take the machine's cores until the time limit.
                    return "processes"

    def cgroup_limit(self) -> str | None:
        """A limit of the whole run the cgroup shows as reached, if any."""
        cgroup = self.cgroup
        assert cgroup is not None
        tasks = cgroup.tasks()
        self.max_tasks = max(self.max_tasks, tasks)
        if cgroup.oom_kills():
            return "memory"
        if cgroup.run_cpu_seconds() >= self.request["cpu_time"]:
            return "cpu"
        if cgroup.refused_forks() or tasks >= self.request["processes"]:
            # A fork was refused at the cap: a fork bomb, stopped now rather than left to
            # spin on the machine's cores until the time limit.
            return "processes"
        return None

    # -- the end -----------------------------------------------------------

    def terminate(self) -> None:
        """TERM the run; give the program the grace period to exit."""
        if self.child_status is None:
            self.signal_run(signal.SIGTERM)
            self.reap_child(time.monotonic() + self.request["kill_grace"])

    def reap_child(self, deadline: float) -> None:
        while self.child_status is None and time.monotonic() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, max(0.001, deadline - time.monotonic()))
            self.reap()

    def signal_run(self, number: int) -> None:
        """Send C{number} to every process of the run."""
        self.processes.signal(number, self.child)

    def sweep(self) -> bool:
        """KILL everything of the run until nothing is left; reap until ECHILD."""
        return self.processes.sweep(self.child, self.reap, SWEEP_TIMEOUT)

    def remove_cgroup(self) -> bool:
        """Remove the run's cgroup (retried while the last processes leave it)."""
        if self.cgroup is None:
            return True
        deadline = time.monotonic() + SWEEP_TIMEOUT
        while not self.cgroup.remove():
            if time.monotonic() >= deadline:
                return False
            self.cgroup.kill()
            signal.sigtimedwait({signal.SIGCHLD}, 0.005)
            self.reap()
        return True

    def remove_run_dir(self) -> None:
        if self.run_directory is not None:
            self.run_directory.remove()

    def exit_status(self) -> tuple[int | None, int | None]:
        """The program's exit code or signal number."""
        status = self.child_status
        if status is None:
            return None, None
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            return None, -code
        if self.isolated and code > SIGNAL_EXIT_BASE and code - SIGNAL_EXIT_BASE < signal.NSIG:
            # bubblewrap exits with 128 + N when its program died of signal N.
            return None, code - SIGNAL_EXIT_BASE
        return code, None

    def finish(self, reason: str) -> None:
        swept = self.sweep()
        cgroup = self.cgroup
        cpu = cgroup.run_cpu_seconds() if cgroup is not None else self.child_cpu
        oom_kills = cgroup.oom_kills() if cgroup is not None else 0
        peak = cgroup.peak_memory() if cgroup is not None else 0
        if reason == "exit" and cgroup is not None:
            # The program may have ended *because* of a limit the kernel enforced.
            reason = self.cgroup_limit() or reason
        swept = self.remove_cgroup() and swept
        self.remove_run_dir()
        exit_code, signal_number = self.exit_status()
        self.report(
            event="exit",
            exit_code=exit_code,
            signal=signal_number,
            cpu_seconds=round(cpu, 3),
            reason=reason,
            max_tasks=self.max_tasks,
            oom_kills=oom_kills,
            peak_memory=peak,
            swept=swept,
        )


def _memfd(name: str, data: bytes) -> int:
    """An anonymous file holding C{data}, positioned at its start."""
    fd = os.memfd_create(f"gameproto-{name}", os.MFD_CLOEXEC)
    write_all(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _open_fds() -> list[int]:
    return [int(fd) for fd in os.listdir("/proc/self/fd")]


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def read_request(fd: int) -> tuple[Request, bytes]:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
        if len(data) > MAX_REQUEST:
            raise LaunchError("request too large")
    line, newline, code = data.partition(b"\n")
    if not newline:
        raise LaunchError("truncated request")
    request: Request = json.loads(line)
    return request, code


def enter_early_cgroup(argv: list[str]) -> RunCgroup | None:
    """
    The cgroup a launcher started ahead of its run enters while it waits (its argument
    is the JSON of where runs' cgroups go); None without one, or if it cannot be made
    (the run's cgroup is then made when the request comes).
    """
    if len(argv) < 2:
        return None
    try:
        return RunCgroup.enter_early(json.loads(argv[1]))
    except (OSError, ValueError, KeyError):
        return None


def main() -> int:
    # Everything the launcher waits for is read synchronously with sigtimedwait: no
    # handler can interrupt a half-done step.  The program gets an empty mask back.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    # Armed before the (possibly long) wait for the request: a launcher started ahead of
    # its run must not outlive the server either.
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGTERM)
    early = enter_early_cgroup(sys.argv)
    try:
        request, code = read_request(0)
        if os.getppid() != request["parent_pid"]:
            raise LaunchError("the server died before the death signal was armed")
        if request["uid"] is not None:
            receive_lock()  # kept open: the claim on the uid lasts as long as this process
        else:
            close_control()
    except (LaunchError, ValueError, OSError) as error:
        if early is not None:
            early.remove()
        Launcher.report(event="error", message=f"bad request: {error}")
        return 2
    launcher = Launcher(request, code, early)
    if early is not None and launcher.early is None:
        early.remove()  # a request without a cgroup: the weak sandbox
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    try:
        launcher.prepare()
        if STOP_SIGNALS & signal.sigpending():
            raise LaunchError("stopped before the program started")
        launcher.start()
    except (LaunchError, OSError) as error:
        launcher.sweep()
        launcher.remove_cgroup()
        launcher.remove_run_dir()
        launcher.report(event="error", message=str(error))
        return 1
    launcher.report(event="started", pid=launcher.child)
    try:
        reason = launcher.watch()
        if reason != "exit":
            launcher.terminate()
    except Exception:
        # A bug here must not leave the program running: sweep and report regardless.
        reason = "stop"
    launcher.finish(reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
