"""
Where the processor's runs get their cgroups, found once at start-up.

Each run gets a cgroup of its own (the launcher creates it, see
C{launcher/run_cgroup.py}) under C{gameproto-runs} in the server's own cgroup: with
cgroup v2 one directory of the unified hierarchy, which needs the memory, pids and cpu
controllers delegated to the server's cgroup (systemd: C{Delegate=yes} with
C{DelegateSubgroup=}, see docs/processor.md); with cgroup v1, as where only v1
controllers are mounted, one directory in each of the memory, pids and cpuacct
hierarchies.

L{find_cgroups} proves it can work by creating (and removing) a cgroup with a memory
limit; when it cannot, L{CgroupUnavailable} says why, and the server runs the processor
only with C{--processor-allow-weak-sandbox}.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Mapping

import attrs

#: The directory of the runs' cgroups, in the server's own cgroup.
RUNS_DIRECTORY = "gameproto-runs"
#: The v1 controllers a run needs: memory (all of it, tmpfs included), pids, CPU time.
V1_CONTROLLERS = ("memory", "pids", "cpuacct")
#: The v2 controllers a run needs.
V2_CONTROLLERS = ("memory", "pids", "cpu")


class CgroupUnavailable(Exception):
    """No cgroup can be made for runs; the text says why."""


@attrs.frozen
class Cgroups:
    """
    Where runs' cgroups go.

    @ivar version: 1 or 2.
    @ivar bases: the C{gameproto-runs} directory by hierarchy (v1: C{memory}, C{pids},
        C{cpuacct}; v2: C{unified}).
    @ivar homes: the server's own cgroup by hierarchy, where its launchers start (and
        return to, after their run).
    """

    version: int
    bases: Mapping[str, str]
    homes: Mapping[str, str]

    def launcher_spec(self) -> dict[str, object]:
        """What a launcher needs to enter a cgroup before its run is known."""
        return {"version": self.version, "bases": dict(self.bases), "homes": dict(self.homes)}

    def spec(self, name: str) -> dict[str, object]:
        """The launcher's C{cgroup} request field for a run called C{name}."""
        paths = {hierarchy: os.path.join(base, name) for hierarchy, base in self.bases.items()}
        return {"version": self.version, "paths": paths}

    def describe(self) -> str:
        return f"cgroup v{self.version} in " + ", ".join(self.bases.values())

    def remove_leftovers(self, prefix: str) -> int:
        """
        Kill the processes of, and remove, every run cgroup whose name starts with
        C{prefix} (a previous server's, for a run uid this server now holds).  Returns how
        many cgroups were removed.
        """
        return self._remove(prefix, lambda name: False)

    def remove_abandoned_launchers(self) -> int:
        """
        Remove the cgroups of launchers that died while they waited for a run
        (C{launcher-<pid>} of a pid that is gone); how many.
        """

        def waiting(name: str) -> bool:
            # A launcher waiting for its run, this server's or another's.
            pid = name.partition("-")[2]
            return pid.isdigit() and os.path.exists(f"/proc/{pid}")

        return self._remove("launcher-", waiting)

    def _remove(self, prefix: str, spare: Callable[[str], bool]) -> int:
        """Empty (SIGKILL) and remove the cgroups named C{prefix}... but those to C{spare}."""
        removed = 0
        for base in self.bases.values():
            try:
                names = [name for name in os.listdir(base) if name.startswith(prefix)]
            except FileNotFoundError:
                continue
            for name in names:
                if spare(name):
                    continue
                path = os.path.join(base, name)
                for _ in range(100):
                    if _kill_members(path) == 0:
                        break
                try:
                    os.rmdir(path)
                    removed += 1
                except OSError:
                    pass
        return removed


def _kill_members(path: str) -> int:
    try:
        with open(os.path.join(path, "cgroup.procs")) as procs:
            pids = [int(pid) for pid in procs.read().split()]
    except OSError:
        return 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


@attrs.frozen
class _Mount:
    path: str
    root: str
    fstype: str
    controllers: frozenset[str]


def _mounts(mountinfo: str) -> list[_Mount]:
    """The cgroup and cgroup2 mounts of /proc/self/mountinfo."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        fstype = fields[dash + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        options = set(fields[dash + 3].split(",")) if len(fields) > dash + 3 else set()
        found.append(_Mount(fields[4], fields[3], fstype, frozenset(options)))
    return found


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """The process's cgroup by controller (v1) and under C{""} (v2), from /proc/self/cgroup."""
    paths = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _inside(mount: _Mount, path: str) -> str:
    """The directory of cgroup C{path} under C{mount} (whose root may not be /)."""
    relative = os.path.relpath(path, mount.root) if mount.root != "/" else path.lstrip("/")
    if relative.startswith(".."):
        relative = ""  # the cgroup is outside what this mount shows: use its root
    return os.path.normpath(os.path.join(mount.path, relative))


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)


def find_cgroups(
    mountinfo_path: str = "/proc/self/mountinfo",
    proc_cgroup_path: str = "/proc/self/cgroup",
    memory: int = 256 * 1024 * 1024,
) -> Cgroups:
    """
    The cgroups runs get, checked by making one with a memory limit of C{memory}.  cgroup
    v2 when the unified hierarchy has the controllers, otherwise v1.  Raises
    L{CgroupUnavailable}.
    """
    try:
        mounts = _mounts(_read(mountinfo_path))
        own = _own_paths(_read(proc_cgroup_path))
    except OSError as error:
        raise CgroupUnavailable(f"cannot read the process's cgroups: {error}") from None
    reasons = []
    for attempt in (_unified, _legacy):
        try:
            cgroups = attempt(mounts, own)
            _probe(cgroups, memory)
            return cgroups
        except CgroupUnavailable as error:
            reasons.append(str(error))
        except OSError as error:
            reasons.append(f"cannot create a cgroup: {error}")
    raise CgroupUnavailable("; ".join(reasons))


def _unified(mounts: list[_Mount], own: dict[str, str]) -> Cgroups:
    mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if mount is None or "" not in own:
        raise CgroupUnavailable("cgroup v2: not mounted")
    available = set(_read(os.path.join(mount.path, "cgroup.controllers")).split())
    if not set(V2_CONTROLLERS) <= available:
        missing = sorted(set(V2_CONTROLLERS) - available)
        raise CgroupUnavailable(f"cgroup v2: controllers {', '.join(missing)} are not enabled")
    # The server's own cgroup, or its parent where the server sits in a leaf of a
    # delegated subtree (systemd's DelegateSubgroup=): a cgroup with processes in it
    # cannot hand controllers to its children.
    candidates = [_inside(mount, own[""])]
    candidates.append(os.path.dirname(candidates[0]))
    errors = []
    for own_dir in candidates:
        runs = os.path.join(own_dir, RUNS_DIRECTORY)
        try:
            _enable(own_dir)
            os.makedirs(runs, exist_ok=True)
            _enable(runs)
            return Cgroups(version=2, bases={"unified": runs}, homes={"unified": candidates[0]})
        except OSError as error:
            errors.append(f"{own_dir}: {error.strerror}")
    raise CgroupUnavailable(
        "cgroup v2: controllers memory, pids and cpu cannot be delegated ("
        + "; ".join(errors) + ")"
    )


def _enable(directory: str) -> None:
    enabled = set(_read(os.path.join(directory, "cgroup.subtree_control")).split())
    wanted = [c for c in V2_CONTROLLERS if c not in enabled]
    if wanted:
        _write(os.path.join(directory, "cgroup.subtree_control"), " ".join(f"+{c}" for c in wanted))


def _legacy(mounts: list[_Mount], own: dict[str, str]) -> Cgroups:
    bases, homes = {}, {}
    for controller in V1_CONTROLLERS:
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.controllers), None)
        if mount is None:
            raise CgroupUnavailable(f"cgroup v1: no {controller} hierarchy is mounted")
        homes[controller] = _inside(mount, own.get(controller, "/"))
        runs = os.path.join(homes[controller], RUNS_DIRECTORY)
        try:
            os.makedirs(runs, exist_ok=True)
        except OSError as error:
            raise CgroupUnavailable(f"cgroup v1: cannot create {runs}: {error.strerror}") from None
        bases[controller] = runs
    return Cgroups(version=1, bases=bases, homes=homes)


def _probe(cgroups: Cgroups, memory: int) -> None:
    """Make a cgroup with the run's memory and pids limits, then remove it."""
    name = f"probe-{os.getpid()}"
    made = []
    try:
        for base in cgroups.bases.values():
            path = os.path.join(base, name)
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            made.append(path)
        memory_dir = cgroups.bases.get("memory", cgroups.bases.get("unified", ""))
        memory_file = "memory.limit_in_bytes" if cgroups.version == 1 else "memory.max"
        _write(os.path.join(memory_dir, name, memory_file), str(memory))
        pids_dir = cgroups.bases.get("pids", cgroups.bases.get("unified", ""))
        _write(os.path.join(pids_dir, name, "pids.max"), "64")
    finally:
        for path in made:
            try:
                os.rmdir(path)
            except OSError as error:
                if error.errno != errno.ENOENT:
                    raise
