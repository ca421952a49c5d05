"""
The processor's launcher: runs one user program in the sandbox and reports how it ended.

The server starts it with its own Python, as C{python -I -S launcher.py} (the standard
library only, so it needs neither the project on C{sys.path} nor anything the run user
could read) and, in production, as root.  It stays root for the whole run, so nothing the
user's program does (C{kill(-1)} included) can reach it; only the interpreter and the kill
helper drop to the run uid.

File descriptors, set up by the server's C{spawnProcess}:

  - 0: the request: one JSON line (see L{Request}), then the user's code up to EOF;
  - 1, 2: the program's stdout and stderr, passed through unchanged;
  - 3, 4: the engine channel (the program writes requests on 3, reads replies on 4),
    passed through unchanged;
  - 5: status, JSON lines written by the launcher:
    C{{"event": "started", "pid": n}}, then C{{"event": "exit", "exit_code": n|null,
    "signal": n|null, "cpu_seconds": x, "reason": "exit"|"stop"|"processes",
    "max_tasks": n, "swept": bool}}; or, if the program could not be started,
    C{{"event": "error", "message": text}}.

What it does, in order (DESIGN.md, processor):

  1. C{PR_SET_PDEATHSIG} (the server's death stops the run) and C{PR_SET_CHILD_SUBREAPER}
     (everything the program forks, double-forked daemons included, stays a descendant).
  2. A fresh run directory (C{mkdir}, never reused), owned by the run uid, mode 0700.
  3. As root: new network and mount namespaces (mounts private first); a tmpfs of the run
     directory's size on C{/tmp} (also bound on C{/var/tmp} and C{/dev/shm}) and on the run
     directory; C{/proc} remounted with C{hidepid=invisible}; C{/} read-only.  User code
     cannot reach the server, Redis or any network, nor leave a file behind.
  4. The code and the SDK written into the run directory.
  5. The interpreter forked with C{setsid}, default signal dispositions, fds 0 (/dev/null)
     to 4 only, rlimits (CPU, DATA, NPROC, FSIZE, NOFILE, CORE), nice 19, the run uid and
     gid with no supplementary groups, C{PR_SET_NO_NEW_PRIVS}, and an explicit minimal
     environment.
  6. Watching: reaps orphans, counts the run's tasks (the process limit), waits for the
     interpreter's exit or a TERM from the server.
  7. Ending: TERM to the run, KILL after the grace period (0.2 s); then, as root,
     C{kill(-1, SIGKILL)} from a helper running as the run uid, repeated until C{/proc}
     shows no live process of that uid (one C{killpg} misses a fork bomb's children and
     anything that called C{setsid}; Linux's C{kill(-1)} succeeds even when it signalled
     nothing, so the check is C{/proc}); reaps until C{ECHILD}; removes the directory;
     reports the interpreter's wait status and exits.

Without root (the server's own uid runs the program) there are no uid, namespace or
tmpfs protections: the program can read what the server can read, use the network, and
signal the server.  RLIMIT_NPROC is then the uid's current task count plus the limit, and
the final sweep kills the launcher's descendants (the subreaper keeps every process of the
run among them) instead of everything of a uid.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn, TypedDict

STATUS_FD = 5
#: The descriptors the program inherits; 3 and 4 are the engine channel.
PROGRAM_FDS = (1, 2, 3, 4)

# Linux constants (not in Python 3.11's os module).
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

#: Signals the launcher handles synchronously (blocked, read with sigtimedwait).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
HANDLED_SIGNALS = STOP_SIGNALS | {signal.SIGCHLD}

#: How long the final sweep may take before the launcher gives up and says so.
SWEEP_TIMEOUT = 4.0
#: Upper bound on the request (a JSON line plus the code; the server caps code far lower).
MAX_REQUEST = 16 * 1024 * 1024


class Request(TypedDict):
    """The JSON line on fd 0, written by L{gameproto.processor.sandbox.Sandbox}."""

    argv: list[str]
    env: dict[str, str]
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


class LaunchError(Exception):
    """The program could not be started; reported as C{{"event": "error"}}."""


# ---------------------------------------------------------------------------
# system calls Python 3.11 lacks (os.unshare is 3.12), through ctypes

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), f"prctl({option})")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def umount(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


# ---------------------------------------------------------------------------
# /proc


def _status_fields(pid: int) -> dict[str, str] | None:
    """The fields of /proc/PID/status, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            text = status.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def live_processes_of(uid: int, exclude: int = -1) -> list[int]:
    """
    Processes whose real or saved uid is C{uid} (those C{kill(-1)} as that uid reaches) and
    that are not zombies: a zombie is dead, and the launcher reaps its own.
    """
    return live_processes_by_uid({uid}, exclude).get(uid, [])


def live_processes_by_uid(uids: set[int], exclude: int = -1) -> dict[int, list[int]]:
    """L{live_processes_of} for several uids in one pass over /proc."""
    wanted = {str(uid): uid for uid in uids}
    found: dict[int, list[int]] = {}
    for pid in _pids():
        if pid == exclude:
            continue
        fields = _status_fields(pid)
        if fields is None or fields.get("State", "").startswith(("Z", "X")):
            continue
        ids = fields.get("Uid", "").split()
        for owner in {ids[0], ids[2]} if len(ids) >= 3 else set():
            if owner in wanted:
                found.setdefault(wanted[owner], []).append(pid)
    return found


def tasks_of_uid(uid: int) -> int:
    """The number of tasks (threads) whose real uid is C{uid}: what RLIMIT_NPROC counts."""
    count = 0
    for pid in _pids():
        fields = _status_fields(pid)
        if fields and fields.get("Uid", "").split()[:1] == [str(uid)]:
            count += int(fields.get("Threads", "1") or 1)
    return count


def descendants(root: int) -> list[int]:
    """Every descendant of C{root}, from /proc/PID/task/TID/children (breadth first)."""
    found: list[int] = []
    queue = [root]
    while queue:
        pid = queue.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as children:
                    for child in children.read().split():
                        found.append(int(child))
                        queue.append(int(child))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


def _task_count(pids: list[int], zombies: bool = False) -> int:
    """
    The tasks (threads) of C{pids}; with C{zombies}, an unreaped zombie counts as one, as
    it does for RLIMIT_NPROC until its parent reaps it.
    """
    count = 0
    for pid in pids:
        fields = _status_fields(pid)
        if fields is None:
            continue
        if fields.get("State", "").startswith(("Z", "X")):
            count += 1 if zombies else 0
        else:
            count += int(fields.get("Threads", "1") or 1)
    return count


# ---------------------------------------------------------------------------
# the launcher


class Launcher:
    """One run, from the request to the status report."""

    def __init__(self, request: Request, code: bytes) -> None:
        self.request = request
        self.code = code
        self.uid = request["uid"]
        self.gid = request["gid"]
        self.run_dir = request["run_dir"]
        self.base_fd = -1
        self.mounted_run_dir = False
        self.child = -1
        self.child_status: int | None = None
        self.child_cpu = 0.0
        self.max_tasks = 0
        self.nproc_limit = request["processes"]

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
        """The run directory (and, as root, the namespaces), with the code and the SDK."""
        os.umask(0o022)
        base, name = os.path.split(self.run_dir)
        # Everything on the host goes through this fd: after unshare the host's base may be
        # hidden under the new /tmp, and the directory is removed through it at the end.
        self.base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        os.mkdir(name, 0o700, dir_fd=self.base_fd)  # fresh: fails if the name exists
        if self.uid is not None:
            os.chown(name, self.uid, self.gid or self.uid, dir_fd=self.base_fd)
        # Read before the namespaces: a server installed under /tmp (a CI checkout)
        # has its SDK hidden by the run's fresh /tmp afterwards.
        with open(self.request["sdk_source"], "rb") as sdk:
            sdk_code = sdk.read()
        if self.request["namespaces"]:
            self.enter_namespaces()
        self.write_file(self.request["file_name"], self.code)
        self.write_file(self.request["sdk_file_name"], sdk_code)

    def enter_namespaces(self) -> None:
        unshare(CLONE_NEWNS | CLONE_NEWNET)
        # Without this, mounts below would propagate back to the host.
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        size = self.request["dir_size"]
        scratch = MS_NOSUID | MS_NODEV | MS_NOEXEC
        mount("tmpfs", "/tmp", "tmpfs", scratch, f"size={size},mode=1777")
        for shared in ("/var/tmp", "/dev/shm"):
            if os.path.isdir(shared):
                mount("/tmp", shared, None, MS_BIND)
        owner = f"uid={self.uid},gid={self.gid}" if self.uid is not None else ""
        if os.path.commonpath([self.run_dir, "/tmp"]) == "/tmp":
            # The run directory now lives in the new /tmp (one 16 MiB budget for both).
            os.makedirs(os.path.dirname(self.run_dir), mode=0o711, exist_ok=True)
            os.mkdir(self.run_dir, 0o700)
            if self.uid is not None:
                os.chown(self.run_dir, self.uid, self.gid or self.uid)
        else:
            mount("tmpfs", self.run_dir, "tmpfs", scratch, f"size={size},mode=0700,{owner}")
            self.mounted_run_dir = True
        # The run uid sees only its own processes (no server command lines).
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible")
        # Nothing of the host is writable any more: no file outlives the run.
        mount("none", "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)

    def write_file(self, name: str, data: bytes) -> None:
        path = os.path.join(self.run_dir, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.uid is not None:
                os.fchown(fd, self.uid, self.gid or self.uid)
        finally:
            os.close(fd)

    # -- the program -------------------------------------------------------

    def start(self) -> None:
        """Fork the interpreter; raise L{LaunchError} if it could not be executed."""
        if self.uid is None:
            # Not root: RLIMIT_NPROC counts every task of the server's uid, so the run gets
            # the current count plus its limit (DESIGN.md).
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
        if failure:
            self.reap(block_until=time.monotonic() + 1.0)
            raise LaunchError(failure.decode("utf-8", "replace"))

    def _exec_program(self, devnull: int, error_write: int) -> NoReturn:
        request = self.request
        try:
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
            os.closerange(STATUS_FD, error_write)
            os.closerange(error_write + 1, 1 << 20)
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
                gid = self.gid if self.gid is not None else self.uid
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(self.uid, self.uid, self.uid)
            prctl(PR_SET_NO_NEW_PRIVS, 1)
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
        return _task_count(descendants(os.getpid()), zombies=True)

    def watch(self) -> str:
        """Wait for the program's end, a stop, or the process limit; return which."""
        poll = self.request["poll_interval"]
        while True:
            info = signal.sigtimedwait(HANDLED_SIGNALS, poll)
            self.reap()
            if self.child_status is not None:
                return "exit"
            if info is not None and info.si_signo in STOP_SIGNALS:
                return "stop"
            tasks = self.run_tasks()
            self.max_tasks = max(self.max_tasks, tasks)
            if tasks >= self.request["processes"]:
                # The run sits at its cap: a fork bomb.  Stop it now rather than let 64
                # spinning processes take the machine's cores until the time limit.
                return "processes"

    # -- the end -----------------------------------------------------------

    def terminate(self) -> None:
        """TERM the run; give the interpreter the grace period to exit."""
        if self.child_status is None:
            self.signal_run(signal.SIGTERM)
            self.reap_child(time.monotonic() + self.request["kill_grace"])

    def reap_child(self, deadline: float) -> None:
        while self.child_status is None and time.monotonic() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, max(0.001, deadline - time.monotonic()))
            self.reap()

    def signal_run(self, number: int) -> None:
        """Send C{number} to every process of the run."""
        if self.uid is not None:
            self.as_run_uid_kill_all(number)
            return
        for pid in [self.child, *descendants(os.getpid())]:
            try:
                os.kill(pid, number)
            except (ProcessLookupError, PermissionError):
                pass

    def as_run_uid_kill_all(self, number: int) -> None:
        """
        C{kill(-1, number)} from a helper running as the run uid: it reaches every process
        of that uid (setsid'd daemons and a fork bomb's children included) and nothing else;
        the launcher, root, is out of its reach.
        """
        uid = self.uid
        gid = self.gid if self.gid is not None else uid
        assert uid is not None and gid is not None
        helper = os.fork()
        if helper == 0:
            try:
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, number)
            except BaseException:
                os._exit(1)
            os._exit(0)
        while True:
            try:
                pid, status, usage = os.wait4(helper, 0)
                break
            except InterruptedError:
                continue

    def sweep(self) -> bool:
        """KILL everything of the run until nothing is left; reap until ECHILD."""
        deadline = time.monotonic() + SWEEP_TIMEOUT
        while True:
            if self.uid is not None:
                self.as_run_uid_kill_all(signal.SIGKILL)
            else:
                self.signal_run(signal.SIGKILL)
            self.reap()
            if self.uid is not None:
                alive = live_processes_of(self.uid)
            else:
                alive = [pid for pid in descendants(os.getpid()) if _task_count([pid])]
            if not alive:
                break
            if time.monotonic() >= deadline:
                return False
            # Killed processes take a moment to become zombies; wait for a SIGCHLD a little.
            signal.sigtimedwait({signal.SIGCHLD}, 0.005)
        # Every process of the run is dead; the ones still unreaped are (or will be
        # reparented as) the launcher's children.
        return self.reap(block_until=deadline)

    def remove_run_dir(self) -> None:
        if self.base_fd < 0:
            return
        name = os.path.basename(self.run_dir)
        if self.mounted_run_dir:
            try:
                umount(self.run_dir)
            except OSError:
                pass
        try:
            # With namespaces the host's directory is empty (the files lived in a tmpfs
            # that disappears with the namespace); without, remove the files.
            shutil.rmtree(name, dir_fd=self.base_fd, onerror=_make_removable)
        except FileNotFoundError:
            pass
        except OSError:
            shutil.rmtree(name, dir_fd=self.base_fd, ignore_errors=True)

    def finish(self, reason: str) -> None:
        swept = self.sweep()
        self.remove_run_dir()
        status = self.child_status
        exit_code = os.waitstatus_to_exitcode(status) if status is not None else None
        self.report(
            event="exit",
            exit_code=exit_code if exit_code is not None and exit_code >= 0 else None,
            signal=-exit_code if exit_code is not None and exit_code < 0 else None,
            cpu_seconds=round(self.child_cpu, 3),
            reason=reason,
            max_tasks=self.max_tasks,
            swept=swept,
        )


def _make_removable(function: Any, path: str, excinfo: Any) -> None:
    # The program may have left a directory without write permission: give it back and
    # retry (the launcher, or root, owns or can chmod it).
    try:
        parent = os.path.dirname(path) or "."
        os.chmod(parent, 0o700)
        function(path)
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


def main() -> int:
    # Everything the launcher waits for is read synchronously with sigtimedwait: no
    # handler can interrupt a half-done step.  The program gets an empty mask back.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        request, code = read_request(0)
    except (LaunchError, ValueError, OSError) as error:
        Launcher.report(event="error", message=f"bad request: {error}")
        return 2
    launcher = Launcher(request, code)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != request["parent_pid"]:
        # The server died before the death signal was armed.
        return 3
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        launcher.prepare()
        if STOP_SIGNALS & signal.sigpending():
            raise LaunchError("stopped before the program started")
        launcher.start()
    except (LaunchError, OSError) as error:
        launcher.sweep()
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
