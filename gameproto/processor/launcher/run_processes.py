"""
Every process of one run, wherever it went (L{RunProcesses}): in the run's cgroup (the
isolated sandbox), of the run uid (the weak sandbox as root), or below the launcher (the
weak sandbox without root).  Standard library only: the launcher imports it by its plain
name (it runs as C{python -I -S <this directory>}).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from procfs import descendants, live_processes_by_uid, live_processes_of, task_count
from run_cgroup import RunCgroup


class RunProcesses:
    """The processes of the run of C{uid} (None without root) in C{cgroup} (if any)."""

    def __init__(self, uid: int | None, gid: int | None, cgroup: RunCgroup | None) -> None:
        self.uid = uid
        self.gid = gid
        self.cgroup = cgroup

    def signal(self, number: int, child: int) -> None:
        """Send C{number} to every process of the run (C{child}: the program's pid)."""
        if self.cgroup is not None:
            self.cgroup.signal(number)
        elif self.uid is not None:
            self.as_run_uid_kill_all(number)
        else:
            for pid in [child, *descendants(os.getpid())]:
                if pid <= 0:
                    # No program yet (its set-up failed): kill(0) would reach the
                    # launcher's group and kill(-1) every process of its uid, the
                    # server's among them.
                    continue
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
        uid, gid = self.uid, self.gid
        assert uid is not None and gid is not None
        try:
            helper = os.fork()
        except BlockingIOError:
            # A launcher started ahead of its run waits inside the run's cgroup: with the
            # run at its process cap, the launcher cannot fork either.  The sweep comes
            # back here once the cgroup's own kill has freed a slot.
            return
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
                os.wait4(helper, 0)
                break
            except InterruptedError:
                continue

    def kill_all(self, child: int) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
        elif self.uid is not None:
            self.as_run_uid_kill_all(signal.SIGKILL)
        else:
            self.signal(signal.SIGKILL, child)

    def alive(self) -> list[int]:
        """What is left of the run: the cgroup's processes, and any of the run uid."""
        left: list[int] = []
        if self.cgroup is not None:
            left += self.cgroup.pids()
        if self.uid is not None:
            left += live_processes_of(self.uid)
        elif self.cgroup is None:
            left += [pid for pid in descendants(os.getpid()) if task_count([pid])]
        return left

    def sweep(self, child: int, reap: Callable[..., bool], timeout: float) -> bool:
        """
        KILL everything of the run until nothing is left, reaping with C{reap} (the
        launcher's) until ECHILD; False if that took longer than C{timeout}.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.kill_all(child)
            reap()
            if not self.alive():
                break
            if self.uid is not None and self.cgroup is not None:
                # A process of the run uid outside the cgroup: only the weak sandbox's
                # helper reaches it.
                self.as_run_uid_kill_all(signal.SIGKILL)
            if time.monotonic() >= deadline:
                return False
            # Killed processes take a moment to become zombies; wait for a SIGCHLD a little.
            signal.sigtimedwait({signal.SIGCHLD}, 0.005)
        # Every process of the run is dead; the ones still unreaped are (or will be
        # reparented as) the launcher's children.
        if not reap(block_until=deadline):
            return False
        # A zombie whose parent was itself still exiting becomes the launcher's (the
        # subreaper's) only once that parent is gone, possibly after the reap above
        # found no child: the run is over when not even a zombie of its uid is left.
        while self.uid is not None and live_processes_by_uid({self.uid}, zombies=True):
            if time.monotonic() >= deadline:
                return False
            signal.sigtimedwait({signal.SIGCHLD}, 0.005)
            reap()
        return True
