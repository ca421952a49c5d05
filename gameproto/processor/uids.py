"""
Run uids, claimed across every process of the host.

A run uid is the run's identity towards the kernel (its processes, its RLIMIT_NPROC count,
whom its C{kill(-1)} reaches): two runs must never share one, even when two servers run on
one host with the same uid range.  Each uid has a lock file in L{LOCK_DIRECTORY}; a
server holds the C{flock} of a uid for as long as a run of it lives, and hands the same
open file to the run's launcher, so the claim outlives the server until the launcher has
killed the run's last process.  A uid whose lock nobody holds is free: whatever of it is
still alive is a leftover of a dead server, which the server claiming it sweeps.
"""

from __future__ import annotations

import fcntl
import os
from collections import deque

#: Host-wide: every server on the host claims its run uids here, whatever its options.
LOCK_DIRECTORY = "/run/gameproto/uids"


class UidPool:
    """
    The run uids of one server, handed out least recently used first (a uid just released
    is the last one reused), each claimed with its host-wide lock while in use.
    """

    def __init__(self, uids: range, lock_directory: str = LOCK_DIRECTORY) -> None:
        self._free: deque[int] = deque(uids)
        self._all = frozenset(uids)
        self._locks: dict[int, int] = {}
        self._directory = lock_directory

    def __len__(self) -> int:
        return len(self._free)

    def __contains__(self, uid: object) -> bool:
        return uid in self._all

    @property
    def uids(self) -> frozenset[int]:
        return self._all

    def acquire(self) -> int | None:
        """A free uid, claimed; None when every uid is in use here or elsewhere."""
        for _ in range(len(self._free)):
            uid = self._free.popleft()
            if self._claim(uid):
                return uid
            self._free.append(uid)  # another server's run holds it
        return None

    def release(self, uid: int) -> None:
        if uid not in self._all:
            raise ValueError(f"uid {uid} is not a run uid")
        if uid in self._free or uid not in self._locks:
            raise ValueError(f"uid {uid} released twice")
        os.close(self._locks.pop(uid))
        self._free.append(uid)

    def lock_fd(self, uid: int) -> int:
        """The claimed lock of C{uid}, for the launcher to hold too."""
        return self._locks[uid]

    def claim_each_free(self) -> list[int]:
        """
        Claim, one at a time, every uid no other process holds, and return them (claimed:
        release each with L{release} after sweeping it).  The start-up sweep uses this, so
        it never touches another server's live runs.
        """
        claimed = []
        for _ in range(len(self._free)):
            uid = self._free.popleft()
            if self._claim(uid):
                claimed.append(uid)
            else:
                self._free.append(uid)
        return claimed

    def _claim(self, uid: int) -> bool:
        os.makedirs(self._directory, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self._directory, f"{uid}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._locks[uid] = fd
        return True
