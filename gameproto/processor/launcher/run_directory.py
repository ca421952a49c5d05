"""
The weak sandbox's run directory (L{RunDirectory}): made by the launcher on the host, with
the user's code and the SDK in it, in network and mount namespaces of the run's own when
asked.  (The isolated sandbox's run directory is bubblewrap's tmpfs.)  Standard library
only: the launcher imports it by its plain name (it runs as C{python -I -S <this
directory>}).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

import linux


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class RunDirectory:
    """C{path}, owned by the run uid C{uid} (None without root), and its removal."""

    def __init__(self, path: str, uid: int | None, gid: int | None) -> None:
        self.path = path
        self.uid = uid
        self.gid = gid
        self._base_fd = -1
        self._mounted = False

    def create(self, files: Mapping[str, bytes], namespaces: bool, size: int) -> None:
        """The directory with C{files}; with C{namespaces}, entered first (see below)."""
        os.umask(0o022)
        base, name = os.path.split(self.path)
        # Everything on the host goes through this fd: after unshare the host's base may be
        # hidden under the new /tmp, and the directory is removed through it at the end.
        self._base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        os.mkdir(name, 0o700, dir_fd=self._base_fd)  # fresh: fails if the name exists
        if self.uid is not None:
            os.chown(name, self.uid, self.gid, dir_fd=self._base_fd)  # type: ignore[arg-type]
        if namespaces:
            self._enter_namespaces(size)
        for file_name, data in files.items():
            self._write_file(file_name, data)

    def _enter_namespaces(self, size: int) -> None:
        """The weak sandbox's namespaces: network and mount, with tmpfs scratch space."""
        linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWNET)
        # Without this, mounts below would propagate back to the host.
        linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
        scratch = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        linux.mount("tmpfs", "/tmp", "tmpfs", scratch, f"size={size},mode=1777")
        for shared in ("/var/tmp", "/dev/shm"):
            if os.path.isdir(shared):
                linux.mount("/tmp", shared, None, linux.MS_BIND)
        owner = f"uid={self.uid},gid={self.gid}" if self.uid is not None else ""
        if os.path.commonpath([self.path, "/tmp"]) == "/tmp":
            # The run directory now lives in the new /tmp (one 16 MiB budget for both).
            os.makedirs(os.path.dirname(self.path), mode=0o711, exist_ok=True)
            os.mkdir(self.path, 0o700)
            if self.uid is not None:
                os.chown(self.path, self.uid, self.gid)  # type: ignore[arg-type]
        else:
            options = f"size={size},mode=0700,{owner}"
            linux.mount("tmpfs", self.path, "tmpfs", scratch, options)
            self._mounted = True
        # The run uid sees only its own processes (no server command lines).
        flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        linux.mount("proc", "/proc", "proc", flags, "hidepid=invisible")
        # Nothing of the host is writable any more: no file outlives the run.
        linux.mount("none", "/", None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)

    def _write_file(self, name: str, data: bytes) -> None:
        path = os.path.join(self.path, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o644)
        try:
            write_all(fd, data)
            if self.uid is not None:
                os.fchown(fd, self.uid, self.gid)  # type: ignore[arg-type]
        finally:
            os.close(fd)

    def remove(self) -> None:
        if self._base_fd < 0:
            return
        name = os.path.basename(self.path)
        if self._mounted:
            try:
                linux.umount(self.path)
            except OSError:
                pass
        try:
            # With namespaces the host's directory is empty (the files lived in a tmpfs
            # that disappears with the namespace); without, remove the files.
            shutil.rmtree(name, dir_fd=self._base_fd, onerror=_make_removable)
        except FileNotFoundError:
            pass
        except OSError:
            shutil.rmtree(name, dir_fd=self._base_fd, ignore_errors=True)


def _make_removable(function: Any, path: str, excinfo: Any) -> None:
    # The program may have left a directory without write permission: give it back and
    # retry (the launcher, or root, owns or can chmod it).
    try:
        parent = os.path.dirname(path) or "."
        os.chmod(parent, 0o700)
        function(path)
    except OSError:
        pass
