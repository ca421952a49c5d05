"""
Admission of runs: at most C{max_runs} at once, one per user, a run uid from the pool for
each, and at most C{runs_per_minute} runs a user may start in any 60 s; the refusals, each
saying when to try again.
"""

from __future__ import annotations

import os
from collections import deque

from twisted.internet.interfaces import IReactorTime

from gameproto.processor.uids import UidPool


def default_max_runs() -> int:
    """2 x the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 2 * max(1, cores)


class RunRefused(Exception):
    """A run that cannot start; C{message} is the SERVER_ERROR text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServerBusy(RunRefused):
    """
    All run slots are taken, this user already has a run, or this user started too many
    runs in the last minute (close 4029).

    @ivar retry_after: seconds after which a new try may be admitted.
    @ivar limit: which: C{"slots"}, C{"one run per user"} or C{"runs per minute"} (the
        metrics' label).
    """

    def __init__(self, message: str, retry_after: float, limit: str = "slots") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit


class LanguageUnavailable(RunRefused):
    """An unknown language, or one whose interpreter failed the start-up check."""


class CodeTooLarge(RunRefused):
    """The code is over the code limit."""


class RunSlot:
    """One admitted run: its user's turn, a share of the capacity, and its uid."""

    def __init__(self, limiter: RunLimiter, user: str, uid: int | None) -> None:
        self.user = user
        self.uid = uid
        self._limiter = limiter
        self._slot_held = True
        self._uid_held = uid is not None

    def release_slot(self) -> None:
        """Free the user's turn and the capacity (idempotent)."""
        if self._slot_held:
            self._slot_held = False
            self._limiter._release_slot(self)

    def release_uid(self) -> None:
        """Give the uid back to the pool (idempotent); only once nothing of it is left."""
        if self._uid_held:
            self._uid_held = False
            self._limiter._release_uid(self.uid)  # type: ignore[arg-type]

    def release(self) -> None:
        self.release_slot()
        self.release_uid()


class RunLimiter:
    """
    At most C{max_runs} runs at once, one per user, each with its own uid, and at most
    C{runs_per_minute} runs started by one user in any 60 s.

    A refusal says when to try again: the user's own run's end or the minute's oldest run
    leaving the window, or, when every slot is taken, the earliest time one of the running
    runs must have ended (C{worst_case}: each run's program time, engine wait and kill
    grace, within its session limit).
    """

    WINDOW = 60.0

    def __init__(
        self,
        max_runs: int,
        uid_pool: UidPool | None,
        clock: IReactorTime,
        runs_per_minute: int = 30,
        worst_case: float = 0.0,
    ) -> None:
        self.max_runs = max_runs
        self.runs_per_minute = runs_per_minute
        self._pool = uid_pool
        self._clock = clock
        self._worst_case = worst_case
        self._users: dict[str, float] = {}  # user -> when their run started
        self._recent: dict[str, deque[float]] = {}

    @property
    def running(self) -> int:
        return len(self._users)

    def is_running(self, user: str) -> bool:
        return user in self._users

    def acquire(self, user: str) -> RunSlot:
        now = self._clock.seconds()
        if user in self._users:
            raise ServerBusy("server busy (one run per user)", self._ends_by(self._users[user], now),
                             "one run per user")
        recent = self._recent_runs(user, now)
        if len(recent) >= self.runs_per_minute:
            retry = recent[0] + self.WINDOW - now
            raise ServerBusy(
                f"server busy ({self.runs_per_minute} runs per minute per user)", retry,
                "runs per minute",
            )
        if len(self._users) >= self.max_runs:
            raise ServerBusy("server busy", self._first_slot_free(now))
        uid = None
        if self._pool is not None:
            uid = self._pool.acquire()
            if uid is None:  # every uid is held by a launcher that has not finished
                raise ServerBusy("server busy", self._first_slot_free(now))
        self._users[user] = now
        recent.append(now)
        return RunSlot(self, user, uid)

    def _recent_runs(self, user: str, now: float) -> deque[float]:
        """C{user}'s starts within the window; other users' old starts are forgotten."""
        for name in list(self._recent):
            starts = self._recent[name]
            while starts and starts[0] <= now - self.WINDOW:
                starts.popleft()
            if not starts:
                del self._recent[name]
        return self._recent.setdefault(user, deque())

    def _ends_by(self, started: float, now: float) -> float:
        return max(1.0, started + self._worst_case - now)

    def _first_slot_free(self, now: float) -> float:
        if not self._users:
            return 1.0
        return min(self._ends_by(started, now) for started in self._users.values())

    def _release_slot(self, slot: RunSlot) -> None:
        self._users.pop(slot.user, None)

    def _release_uid(self, uid: int) -> None:
        if self._pool is not None:
            self._pool.release(uid)
