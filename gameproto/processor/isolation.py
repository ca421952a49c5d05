"""
The isolated sandbox, seen from the server: what it needs on the host (root, bubblewrap,
cgroups, libseccomp), found once at start-up by L{find_isolation}, and each run's
bubblewrap command line (L{Isolation.command}).

A run sees a filesystem made for it (bubblewrap, as Flatpak and the public code judges'
playgrounds use it):

  - C{/usr} read-only (the interpreter and its libraries), with C{/bin}, C{/lib},
    C{/lib64}, C{/sbin} as links into it, and C{/usr/local} hidden under an empty tmpfs
    unless the interpreter itself lives there;
  - the language's own configuration where it has one (PHP's C{/etc/php}), read-only;
  - C{/box}, the run directory (a tmpfs holding the user's file and the SDK), and a
    private C{/tmp}, each of the run directory size;
  - C{/dev} with null, zero, random and urandom only (C{/dev/shm} is a link to C{/tmp});
  - its own C{/proc} (its own PID namespace: the program is PID 2).

Nothing else: no C{/etc/passwd}, no C{/run}, C{/var}, C{/home}, C{/opt}, C{/srv}, no host
socket file, not the server's code or store.  New user, PID, IPC, UTS, network, mount and
cgroup namespaces; C{/} and C{/dev} read-only once built; the seccomp filter last.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

import attrs

from gameproto.processor.cgroups import CgroupUnavailable, Cgroups, find_cgroups
from gameproto.processor.launcher.launch_request import CODE_FD, SDK_FD, SECCOMP_FD
from gameproto.processor.seccomp import SeccompUnavailable, compile_filter

#: The run directory inside the sandbox (isolate's name for it).
RUN_DIRECTORY = "/box"
#: Devices a program may open.
DEVICES = ("null", "zero", "random", "urandom")
#: Read-only configuration a language needs, bound when it exists on the host.
LANGUAGE_CONFIGURATION: Mapping[str, tuple[str, ...]] = {"php": ("/etc/php",)}


class IsolationUnavailable(Exception):
    """The host cannot give runs the isolated sandbox; the text says why."""


@attrs.frozen
class Isolation:
    """
    What the isolated sandbox needs, found on this host.

    @ivar bwrap: bubblewrap's path.
    @ivar cgroups: where runs' cgroups go.
    @ivar seccomp: the compiled seccomp filter.
    """

    bwrap: str
    cgroups: Cgroups
    seccomp: bytes

    def describe(self) -> str:
        return f"bubblewrap {self.bwrap}, {self.cgroups.describe()}, seccomp"

    def command(
        self,
        language: str,
        program: list[str],
        uid: int,
        file_name: str,
        sdk_file_name: str,
        dir_size: int,
    ) -> list[str]:
        """
        bubblewrap's argv running C{program} (the interpreter's argv, paths under
        L{RUN_DIRECTORY}) as C{uid}; the launcher provides the code, the SDK and the
        filter on the agreed descriptors.
        """
        interpreter = os.path.realpath(program[0])
        argv = [
            self.bwrap,
            "--unshare-all",  # user, PID, IPC, UTS, network, cgroup namespaces
            "--unshare-user",
            "--disable-userns",  # no namespace of its own inside
            "--die-with-parent",
            "--new-session",
            "--uid", str(uid),
            "--gid", str(uid),
            "--hostname", "gameproto",
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin",
            "--symlink", "usr/sbin", "/sbin",
            "--symlink", "usr/lib", "/lib",
        ]
        if os.path.isdir("/usr/lib64"):
            argv += ["--symlink", "usr/lib64", "/lib64"]
        if not interpreter.startswith("/usr/local/"):
            argv += ["--tmpfs", "/usr/local"]
        for path in LANGUAGE_CONFIGURATION.get(language, ()):
            if os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        argv += ["--proc", "/proc", "--tmpfs", "/dev"]
        for device in DEVICES:
            argv += ["--dev-bind", f"/dev/{device}", f"/dev/{device}"]
        argv += [
            "--symlink", "/proc/self/fd", "/dev/fd",
            "--symlink", "/proc/self/fd/0", "/dev/stdin",
            "--symlink", "/proc/self/fd/1", "/dev/stdout",
            "--symlink", "/proc/self/fd/2", "/dev/stderr",
            "--symlink", "/tmp", "/dev/shm",
            "--size", str(dir_size), "--perms", "1777", "--tmpfs", "/tmp",
            "--size", str(dir_size), "--perms", "0700", "--tmpfs", RUN_DIRECTORY,
            "--file", str(CODE_FD), f"{RUN_DIRECTORY}/{file_name}",
            "--file", str(SDK_FD), f"{RUN_DIRECTORY}/{sdk_file_name}",
            "--remount-ro", "/dev",
            "--remount-ro", "/",
            "--chdir", RUN_DIRECTORY,
            "--seccomp", str(SECCOMP_FD),
            "--",
            interpreter,
            *program[1:],
        ]
        return argv


def find_isolation(memory: int, bwrap: str | None = None) -> Isolation:
    """
    The isolated sandbox of this host, or L{IsolationUnavailable} naming everything that
    is missing.  C{memory} is the run's memory limit (the cgroup check sets it).
    """
    missing = []
    if os.geteuid() != 0:
        raise IsolationUnavailable("the server does not run as root")
    path = bwrap or shutil.which("bwrap")
    if path is None or not os.access(path, os.X_OK):
        missing.append("bubblewrap (bwrap) is not installed")
    cgroups = seccomp = None
    try:
        cgroups = find_cgroups(memory=memory)
    except CgroupUnavailable as error:
        missing.append(f"no cgroup can be made ({error})")
    try:
        seccomp = compile_filter()
    except SeccompUnavailable as error:
        missing.append(str(error))
    if missing or path is None or cgroups is None or seccomp is None:
        raise IsolationUnavailable("; ".join(missing))
    return Isolation(bwrap=path, cgroups=cgroups, seccomp=seccomp)
