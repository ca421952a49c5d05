"""
What the launcher (and the server's sweeps) read from C{/proc}: the processes of a uid,
the tasks of a process tree.  Standard library only: the launcher imports it by its plain
name (it runs as C{python -I -S <this directory>}), the server as
C{gameproto.processor.launcher.procfs}.
"""

from __future__ import annotations

import os
from collections.abc import Iterator


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


def live_processes_by_uid(uids: set[int], exclude: int = -1,
                          zombies: bool = False) -> dict[int, list[int]]:
    """
    L{live_processes_of} for several uids in one pass over /proc; with C{zombies}, the
    unreaped dead ones too.
    """
    wanted = {str(uid): uid for uid in uids}
    found: dict[int, list[int]] = {}
    for pid in _pids():
        if pid == exclude:
            continue
        fields = _status_fields(pid)
        if fields is None or (not zombies and fields.get("State", "").startswith(("Z", "X"))):
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


def task_count(pids: list[int], zombies: bool = False) -> int:
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
