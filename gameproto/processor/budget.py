"""
Time allowances of a run that are spent only while they run (L{Budget}).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Budget:
    """
    A time allowance that is spent only while it runs (L{resume} .. L{pause}); once it is
    spent, C{on_spent} is called, once.  The program time of a run is one (paused during
    engine calls), the time it may spend blocked in engine calls another.

    A program may make tens of thousands of engine calls a second, each pausing one budget
    and resuming the other, so neither touches the reactor's timers then: the one timer of
    a budget is set for the earliest moment it could be spent and, when it fires early
    (the budget was paused meanwhile), looks again.
    """

    def __init__(self, clock: IReactorTime, allowance: float, on_spent: Callable[[], None]) -> None:
        self._clock = clock
        self._allowance = allowance
        self._on_spent = on_spent
        self._used = 0.0
        self._resumed_at: float | None = None
        self._timer: IDelayedCall | None = None

    @property
    def running(self) -> bool:
        return self._resumed_at is not None

    def used(self) -> float:
        if self._resumed_at is None:
            return self._used
        return self._used + self._clock.seconds() - self._resumed_at

    def resume(self) -> None:
        if self._resumed_at is not None:
            return
        self._resumed_at = self._clock.seconds()
        if self._timer is None:
            self._timer = self._clock.callLater(self._allowance - self._used, self._check)
        # Otherwise the timer set before the pause fires no later than the budget can now
        # be spent (pausing only moves that moment later).

    def pause(self) -> None:
        if self._resumed_at is not None:
            self._used += self._clock.seconds() - self._resumed_at
            self._resumed_at = None

    def stop(self) -> None:
        """No more spending (the run ended): the timer goes."""
        self.pause()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._resumed_at is None:
            return  # paused: resume() sets the timer again
        remaining = self._allowance - self.used()
        if remaining > 0:
            self._timer = self._clock.callLater(remaining, self._check)
            return
        self._used, self._resumed_at = self._allowance, None
        self._on_spent()
