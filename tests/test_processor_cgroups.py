"""
Where runs' cgroups go (L{gameproto.processor.cgroups}) and what the launcher writes and
reads in them (C{launcher/run_cgroup.py}), on directory trees laid out like a cgroup v1 or
v2 mount.  The real hierarchies of this host are exercised by the runs of
tests/test_processor_integration.py and tests/test_processor_isolation.py.
"""

from __future__ import annotations

import os
import signal

from twisted.trial.unittest import SynchronousTestCase

from gameproto.processor.cgroups import CgroupUnavailable, find_cgroups
from gameproto.processor.launcher.run_cgroup import CgroupV1, CgroupV2, RunCgroup

MiB = 1024 * 1024


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        file.write(text)


def control_files(directory: str, *names: str) -> None:
    """A directory with the (empty) control files the kernel puts in a cgroup."""
    for name in names:
        write(os.path.join(directory, name), "")


def rmdir_like_cgroupfs(test: SynchronousTestCase) -> None:
    """rmdir of a cgroup takes its control files with it; of a plain directory, not."""
    real_rmdir = os.rmdir

    def cgroup_rmdir(path: str) -> None:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        real_rmdir(path)

    test.patch(os, "rmdir", cgroup_rmdir)


def read(path: str) -> str:
    with open(path) as file:
        return file.read()


class FindCgroupsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        rmdir_like_cgroupfs(self)
        self.mountinfo = os.path.join(self.root, "mountinfo")
        self.proc_cgroup = os.path.join(self.root, "cgroup")

    def mounts(self, *lines: str) -> None:
        write(self.mountinfo, "".join(line + "\n" for line in lines))

    def v1(self, controllers: tuple[str, ...] = ("memory", "pids", "cpuacct")) -> None:
        lines = [f"31 23 0:28 / {self.root}/fs rw - tmpfs tmpfs rw"]
        for n, controller in enumerate(controllers):
            os.makedirs(f"{self.root}/fs/{controller}/server")
            lines.append(f"{32 + n} 31 0:{29 + n} / {self.root}/fs/{controller} rw - cgroup cgroup rw,{controller}")
        self.mounts(*lines)
        write(self.proc_cgroup, "".join(f"{n}:{c}:/server\n" for n, c in enumerate(controllers)) + "0::/\n")

    def test_v1(self) -> None:
        """With the memory, pids and cpuacct hierarchies: v1, in the server's own cgroups."""
        self.v1()
        cgroups = find_cgroups(self.mountinfo, self.proc_cgroup, memory=64 * MiB)
        self.assertEqual(cgroups.version, 1)
        self.assertEqual(dict(cgroups.bases), {
            c: f"{self.root}/fs/{c}/server/gameproto-runs" for c in ("memory", "pids", "cpuacct")
        })
        spec = cgroups.spec("60001-ab")
        self.assertEqual(spec, {"version": 1, "paths": {
            c: f"{self.root}/fs/{c}/server/gameproto-runs/60001-ab" for c in ("memory", "pids", "cpuacct")
        }})
        # The probe cgroup was made and removed.
        self.assertEqual(os.listdir(cgroups.bases["memory"]), [])

    def test_v1_missing_controller(self) -> None:
        """No pids hierarchy: no cgroup can be made, and the reason says which."""
        self.v1(("memory", "cpuacct"))
        error = self.assertRaises(CgroupUnavailable, find_cgroups, self.mountinfo, self.proc_cgroup)
        self.assertIn("cgroup v1: no pids hierarchy is mounted", str(error))
        self.assertIn("cgroup v2: not mounted", str(error))

    def v2(self, available: str) -> str:
        unified = f"{self.root}/unified"
        write(f"{unified}/cgroup.controllers", available)
        own = f"{unified}/system.slice/gameproto.service"
        # What the kernel creates in every cgroup directory.
        for directory in (own, f"{own}/gameproto-runs"):
            write(f"{directory}/cgroup.subtree_control", "")
        self.mounts(f"41 23 0:38 / {unified} rw - cgroup2 cgroup2 rw")
        write(self.proc_cgroup, "0::/system.slice/gameproto.service\n")
        return own

    def test_v2(self) -> None:
        """The unified hierarchy with the controllers: v2, delegated to gameproto-runs."""
        own = self.v2("cpuset cpu io memory pids")
        cgroups = find_cgroups(self.mountinfo, self.proc_cgroup)
        self.assertEqual((cgroups.version, dict(cgroups.bases)),
                         (2, {"unified": f"{own}/gameproto-runs"}))
        for directory in (own, f"{own}/gameproto-runs"):
            self.assertEqual(read(f"{directory}/cgroup.subtree_control"), "+memory +pids +cpu")

    def test_v2_without_memory(self) -> None:
        """The unified hierarchy without the memory controller is no use."""
        self.v2("cpu io pids")
        error = self.assertRaises(CgroupUnavailable, find_cgroups, self.mountinfo, self.proc_cgroup)
        self.assertIn("cgroup v2: controllers memory are not enabled", str(error))


class LeftoverTests(SynchronousTestCase):
    def test_abandoned_launchers_and_leftovers(self) -> None:
        """
        At start-up, the cgroup of a launcher whose process is gone is removed, a live
        launcher's is spared; a run uid's leftovers are removed by their prefix.
        """
        from gameproto.processor.cgroups import Cgroups

        base = os.path.abspath(self.mktemp())
        dead = f"launcher-{2**22 + 1}"  # above the kernel's pid_max default: no such process
        for name in (dead, f"launcher-{os.getpid()}", "62000-ab", "62001-cd"):
            control_files(os.path.join(base, name), "cgroup.procs")
        rmdir_like_cgroupfs(self)
        cgroups = Cgroups(version=1, bases={"pids": base}, homes={"pids": base})
        self.assertEqual(cgroups.remove_abandoned_launchers(), 1)
        self.assertEqual(cgroups.remove_leftovers("62000-"), 1)
        self.assertEqual(sorted(os.listdir(base)), ["62001-cd", f"launcher-{os.getpid()}"])


class RunCgroupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)

    def test_v1_limits_and_readings(self) -> None:
        """v1: memory and memory+swap at the limit (no swap), pids.max; the counters read."""
        paths = {c: f"{self.root}/{c}/run" for c in ("memory", "pids", "cpuacct")}
        cgroup = RunCgroup.of({"version": 1, "paths": paths})
        self.assertIsInstance(cgroup, CgroupV1)
        control_files(paths["memory"], "memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        control_files(paths["pids"], "pids.max")
        cgroup.limit(256 * MiB, 64)
        self.assertEqual(read(f"{paths['memory']}/memory.limit_in_bytes"), str(256 * MiB))
        self.assertEqual(read(f"{paths['memory']}/memory.memsw.limit_in_bytes"), str(256 * MiB))
        self.assertEqual(read(f"{paths['pids']}/pids.max"), "64")
        write(f"{paths['memory']}/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
        write(f"{paths['cpuacct']}/cpuacct.usage", "1500000000\n")
        write(f"{paths['pids']}/pids.events", "max 3\n")
        write(f"{paths['pids']}/pids.current", "7\n")
        write(f"{paths['memory']}/memory.max_usage_in_bytes", "1048576\n")
        self.assertEqual(
            (cgroup.oom_kills(), cgroup.cpu_seconds(), cgroup.refused_forks(), cgroup.tasks(),
             cgroup.peak_memory()),
            (2, 1.5, 3, 7, MiB),
        )

    def test_v2_limits_and_readings(self) -> None:
        """v2: memory.max, no swap, the whole run killed on out-of-memory, pids.max."""
        path = f"{self.root}/run"
        cgroup = RunCgroup.of({"version": 2, "paths": {"unified": path}})
        self.assertIsInstance(cgroup, CgroupV2)
        control_files(path, "memory.max", "memory.swap.max", "memory.oom.group", "pids.max")
        cgroup.limit(128 * MiB, 32)
        self.assertEqual(
            [read(f"{path}/{name}") for name in ("memory.max", "memory.swap.max", "memory.oom.group", "pids.max")],
            [str(128 * MiB), "0", "1", "32"],
        )
        write(f"{path}/memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
        write(f"{path}/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\n")
        write(f"{path}/pids.events", "max 0\n")
        self.assertEqual((cgroup.oom_kills(), cgroup.cpu_seconds(), cgroup.refused_forks()), (1, 2.5, 0))

    def test_create_is_fresh_and_undone(self) -> None:
        """An existing directory is an error, and what create() made is removed again."""
        paths = {"memory": f"{self.root}/memory/run", "pids": f"{self.root}/pids/run"}
        os.makedirs(f"{self.root}/memory")
        os.makedirs(paths["pids"])
        cgroup = RunCgroup.of({"version": 1, "paths": paths})
        self.assertRaises(FileExistsError, cgroup.create, MiB, 4)
        self.assertFalse(os.path.exists(paths["memory"]))

    def test_signal_members(self) -> None:
        """signal() reaches each process listed in cgroup.procs (here: none alive)."""
        paths = {"pids": f"{self.root}/pids/run"}
        write(f"{paths['pids']}/cgroup.procs", "")
        cgroup = RunCgroup.of({"version": 1, "paths": paths})
        self.assertEqual((cgroup.pids(), cgroup.signal(signal.SIGKILL)), ([], 0))
