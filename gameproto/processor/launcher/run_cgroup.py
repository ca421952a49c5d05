"""
One run's cgroup, as the root launcher drives it: created with the run's limits, the
program put in it before it executes, read while it runs (out-of-memory kills, CPU time,
refused forks, peak memory), emptied with SIGKILL, removed.

cgroup v2 is one directory; cgroup v1 is one directory per controller hierarchy (memory,
pids, cpuacct).  The server chooses the directories (L{gameproto.processor.cgroups}); the
files are written here directly, as the field's sandboxes do (isolate, nsjail).  Standard
library only, imported by its plain name by the launcher.
"""

from __future__ import annotations

import errno
import os
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
    """The cgroup of one run; L{create} it, L{join} it from the child, L{remove} it."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    @staticmethod
    def of(spec: dict[str, Any]) -> RunCgroup:
        kind = CgroupV2 if spec["version"] == 2 else CgroupV1
        return kind(dict(spec["paths"]))

    # -- life ----------------------------------------------------------------

    def create(self, memory: int, processes: int) -> None:
        """The directories (fresh: an existing one is an error) with the run's limits."""
        made: list[str] = []
        try:
            for path in self.paths.values():
                os.mkdir(path, 0o755)
                made.append(path)
            self.limit(memory, processes)
        except OSError:
            for path in reversed(made):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            raise

    def limit(self, memory: int, processes: int) -> None:
        raise NotImplementedError

    def join(self, pid: int) -> None:
        """Put C{pid} in every hierarchy of the run (the child, before it executes)."""
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        """The processes in the cgroup now."""
        text = _read(os.path.join(self.main_path, "cgroup.procs"))
        return [int(pid) for pid in text.split()]

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
        """Remove the directories; False while a process is still in one."""
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
        """The run's tasks (processes and threads) now: what the pids limit counts."""
        path = os.path.join(self.paths.get("pids", self.main_path), "pids.current")
        text = _read(path).strip()
        return int(text) if text.isdigit() else 0


class CgroupV1(RunCgroup):
    """Directories under the memory, pids and cpuacct hierarchies."""

    @property
    def main_path(self) -> str:
        return self.paths["pids"]

    def limit(self, memory: int, processes: int) -> None:
        base = self.paths["memory"]
        _write(os.path.join(base, "memory.limit_in_bytes"), str(memory))
        # memory + swap at the same value: no swap (the file exists with swap accounting).
        if os.path.exists(os.path.join(base, "memory.memsw.limit_in_bytes")):
            _write(os.path.join(base, "memory.memsw.limit_in_bytes"), str(memory))
        _write(os.path.join(self.paths["pids"], "pids.max"), str(processes))

    def oom_kills(self) -> int:
        return _field(_read(os.path.join(self.paths["memory"], "memory.oom_control")), "oom_kill")

    def cpu_seconds(self) -> float:
        text = _read(os.path.join(self.paths["cpuacct"], "cpuacct.usage")).strip()
        return int(text) / 1e9 if text.isdigit() else 0.0

    def peak_memory(self) -> int:
        text = _read(os.path.join(self.paths["memory"], "memory.max_usage_in_bytes")).strip()
        return int(text) if text.isdigit() else 0


class CgroupV2(RunCgroup):
    """One directory of the unified hierarchy."""

    @property
    def main_path(self) -> str:
        return self.paths["unified"]

    def limit(self, memory: int, processes: int) -> None:
        base = self.paths["unified"]
        _write(os.path.join(base, "memory.max"), str(memory))
        if os.path.exists(os.path.join(base, "memory.swap.max")):
            _write(os.path.join(base, "memory.swap.max"), "0")
        # An out-of-memory kill takes the whole run, not one process of it.
        if os.path.exists(os.path.join(base, "memory.oom.group")):
            _write(os.path.join(base, "memory.oom.group"), "1")
        _write(os.path.join(base, "pids.max"), str(processes))

    def kill(self) -> int:
        count = len(self.pids())
        kill_file = os.path.join(self.main_path, "cgroup.kill")
        if count and os.path.exists(kill_file):
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
        text = _read(os.path.join(self.main_path, "memory.peak")).strip()
        return int(text) if text.isdigit() else 0
