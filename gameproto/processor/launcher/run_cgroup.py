"""
One run's cgroup, as the root launcher drives it: created with the run's limits, the
program put in it before it executes, read while it runs (out-of-memory kills, CPU time,
refused forks, peak memory), emptied with SIGKILL, removed.

Moving a process into a cgroup waits for an RCU grace period when no other move happened
lately (about 10 ms here): on the path from a client's code to its program's first line,
that is most of the launcher's own time.  So a launcher started ahead of its run enters a
cgroup of its own while it waits for the request (L{RunCgroup.enter_early}), which then
becomes the run's (renamed to the run's name, limited); its program is forked inside it,
and the launcher leaves for its home cgroup at the end.  Pages the launcher allocated
before entering stay charged where they were; its one task and its CPU time since
entering are not counted against the run.

cgroup v2 is one directory; cgroup v1 is one directory per controller hierarchy (memory,
pids, cpuacct).  The server chooses the directories (L{gameproto.processor.cgroups}); the
files are written here directly, as the field's sandboxes do (isolate, nsjail).  Standard
library only, imported by its plain name by the launcher.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
from typing import Any


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as file:
            return file.read().decode("ascii", "replace")
    except OSError:
        return ""


def _number(path: str) -> int:
    """The integer a cgroup file holds, or 0 (absent, or "max")."""
    text = _read(path).strip()
    return int(text) if text.isdigit() else 0


def _write_if_there(path: str, value: str) -> None:
    """Write a control file the kernel may not have (swap accounting off, an old kernel)."""
    if os.path.exists(path):
        _write(path, value)


def _make_directories(paths: list[str]) -> None:
    """Each of C{paths}, fresh (an existing one is an error); none of them on failure."""
    made: list[str] = []
    try:
        for path in paths:
            os.mkdir(path, 0o755)
            made.append(path)
    except OSError:
        for path in reversed(made):
            try:
                os.rmdir(path)
            except OSError:
                pass
        raise


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _field(text: str, name: str) -> int:
    """C{name}'s value in a flat-keyed cgroup file (C{"oom_kill 2\\n..."}), or 0."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class RunCgroup:
    """
    The cgroup of one run; L{create} it and L{join} it from the child, or
    L{enter_early} and L{adopt} it; L{remove} it.

    @ivar inside: the launcher itself is in the cgroup (entered early).
    """

    def __init__(self, paths: dict[str, str], homes: dict[str, str] | None = None) -> None:
        self.paths = paths
        self.homes = homes or {}
        self.inside = False
        self._own_cpu_at_entry = 0.0

    @staticmethod
    def of(spec: dict[str, Any]) -> RunCgroup:
        kind = CgroupV2 if spec["version"] == 2 else CgroupV1
        return kind(dict(spec["paths"]))

    @staticmethod
    def enter_early(spec: dict[str, Any]) -> RunCgroup:
        """
        A fresh cgroup in each of C{spec}'s bases (a launcher's spec: version, bases,
        homes), with this process in it.  Raises OSError (nothing is left behind).
        """
        kind = CgroupV2 if spec["version"] == 2 else CgroupV1
        name = f"launcher-{os.getpid()}"
        paths = {hierarchy: os.path.join(base, name) for hierarchy, base in spec["bases"].items()}
        cgroup = kind(paths, dict(spec["homes"]))
        _make_directories(list(paths.values()))
        try:
            cgroup.join(os.getpid())
        except OSError:
            cgroup.leave()
            cgroup.remove()
            raise
        cgroup.inside = True
        cgroup._own_cpu_at_entry = _own_cpu()
        return cgroup

    def adopt(self, spec: dict[str, Any], memory: int, processes: int) -> None:
        """
        Become the run's cgroup: the run's name (C{spec}'s paths, in the same bases) and
        limits; the launcher's own task is one more than the run's.
        """
        paths = dict(spec["paths"])
        for hierarchy, path in self.paths.items():
            os.rename(path, paths[hierarchy])
        self.paths = paths
        self.limit(memory, processes + 1 if self.inside else processes)

    def leave(self) -> None:
        """The launcher goes back to its home cgroups."""
        for path in self.homes.values():
            try:
                _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
            except OSError:
                pass
        self.inside = False

    # -- life ----------------------------------------------------------------

    def create(self, memory: int, processes: int) -> None:
        """The directories (fresh: an existing one is an error) with the run's limits."""
        _make_directories(list(self.paths.values()))
        try:
            self.limit(memory, processes)
        except OSError:
            self.remove()
            raise

    def limit(self, memory: int, processes: int) -> None:
        raise NotImplementedError

    def join(self, pid: int) -> None:
        """Put C{pid} in every hierarchy of the run (the child, before it executes)."""
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        """The run's processes in the cgroup now (not the launcher)."""
        text = _read(os.path.join(self.main_path, "cgroup.procs"))
        return [int(pid) for pid in text.split() if int(pid) != os.getpid()]

    def signal(self, number: int) -> int:
        """Send C{number} to every process in the cgroup; how many there were."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass
        return len(pids)

    def kill(self) -> int:
        return self.signal(signal.SIGKILL)

    def remove(self) -> bool:
        """Leave, and remove the directories; False while a process is still in one."""
        if self.inside:
            self.leave()
        removed = True
        for path in self.paths.values():
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as error:
                if error.errno != errno.EBUSY:
                    raise
                removed = False
        return removed

    # -- what happened -------------------------------------------------------

    @property
    def main_path(self) -> str:
        raise NotImplementedError

    def oom_kills(self) -> int:
        raise NotImplementedError

    def cpu_seconds(self) -> float:
        raise NotImplementedError

    def refused_forks(self) -> int:
        """Forks refused at the pids limit (the C{max} event)."""
        return _field(_read(os.path.join(self.paths["pids"], "pids.events")), "max")

    def peak_memory(self) -> int:
        raise NotImplementedError

    def tasks(self) -> int:
        """The run's tasks (processes and threads) now, the launcher's own not counted."""
        count = _number(os.path.join(self.paths.get("pids", self.main_path), "pids.current"))
        return max(0, count - 1) if self.inside else count

    def run_cpu_seconds(self) -> float:
        """The run's CPU time: the cgroup's, less the launcher's own since it entered."""
        cpu = self.cpu_seconds()
        if self.inside:
            cpu -= _own_cpu() - self._own_cpu_at_entry
        return max(0.0, cpu)


class CgroupV1(RunCgroup):
    """Directories under the memory, pids and cpuacct hierarchies."""

    @property
    def main_path(self) -> str:
        return self.paths["pids"]

    def limit(self, memory: int, processes: int) -> None:
        base = self.paths["memory"]
        _write(os.path.join(base, "memory.limit_in_bytes"), str(memory))
        # memory + swap at the same value: no swap (the file exists with swap accounting).
        _write_if_there(os.path.join(base, "memory.memsw.limit_in_bytes"), str(memory))
        _write(os.path.join(self.paths["pids"], "pids.max"), str(processes))

    def oom_kills(self) -> int:
        return _field(_read(os.path.join(self.paths["memory"], "memory.oom_control")), "oom_kill")

    def cpu_seconds(self) -> float:
        return _number(os.path.join(self.paths["cpuacct"], "cpuacct.usage")) / 1e9

    def peak_memory(self) -> int:
        return _number(os.path.join(self.paths["memory"], "memory.max_usage_in_bytes"))


class CgroupV2(RunCgroup):
    """One directory of the unified hierarchy."""

    @property
    def main_path(self) -> str:
        return self.paths["unified"]

    def limit(self, memory: int, processes: int) -> None:
        base = self.paths["unified"]
        _write(os.path.join(base, "memory.max"), str(memory))
        _write_if_there(os.path.join(base, "memory.swap.max"), "0")
        # An out-of-memory kill takes the whole run, not one process of it.
        _write_if_there(os.path.join(base, "memory.oom.group"), "1")
        _write(os.path.join(base, "pids.max"), str(processes))

    def kill(self) -> int:
        count = len(self.pids())
        kill_file = os.path.join(self.main_path, "cgroup.kill")
        if count and not self.inside and os.path.exists(kill_file):
            _write(kill_file, "1")  # atomic: a forking process cannot outrun it
            return count
        return self.signal(signal.SIGKILL)

    def refused_forks(self) -> int:
        return _field(_read(os.path.join(self.main_path, "pids.events")), "max")

    def oom_kills(self) -> int:
        return _field(_read(os.path.join(self.main_path, "memory.events")), "oom_kill")

    def cpu_seconds(self) -> float:
        return _field(_read(os.path.join(self.main_path, "cpu.stat")), "usage_usec") / 1e6

    def peak_memory(self) -> int:
        return _number(os.path.join(self.main_path, "memory.peak"))
