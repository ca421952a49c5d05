"""
The time limits of a run: allowances spent only while they run (L{Budget}), and the
clocks of one run (L{RunTime}: program time, engine wait, session).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from gameproto.processor.limits import Limit, RunLimits


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
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._resumed_at is not None

    def used(self) -> float:
        if self._resumed_at is None:
            return self._used
        return self._used + self._clock.seconds() - self._resumed_at

    def resume(self) -> None:
        if self._resumed_at is not None or self._stopped:
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
        """No more spending, for good (L{resume} does nothing since): the timer goes."""
        self.pause()
        self._stopped = True
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


class RunTime:
    """
    The clocks of one run, each calling C{on_limit} with its L{Limit} when it is over:

      - program time (L{Limit.TIME}): spent while the program runs, not while it waits
        for an engine call;
      - engine wait (L{Limit.ENGINE_WAIT}): spent while it waits for engine calls (a
        client that never answers cannot hold a run slot until the session limit);
      - the session (L{Limit.SESSION}): from the launcher's start to the run's end,
        whatever happens meanwhile.

    Once the program is being stopped, or has exited, it is L{halt}ed: the first two
    clocks stop for good; the session goes on until the run L{end}s.
    """

    def __init__(self, clock: IReactorTime, limits: RunLimits, on_limit: Callable[[Limit], None]) -> None:
        self._clock = clock
        self._session_time = limits.session_time
        self._on_limit = on_limit
        self._program = Budget(clock, limits.program_time, partial(on_limit, Limit.TIME))
        self._engine_wait = Budget(clock, limits.engine_wait, partial(on_limit, Limit.ENGINE_WAIT))
        self._session: IDelayedCall | None = None

    def program_time(self) -> float:
        """Seconds of program time used so far (engine calls excluded)."""
        return self._program.used()

    def start_session(self) -> None:
        self._session = self._clock.callLater(self._session_time, self._session_over)

    def program_runs(self) -> None:
        """The program runs (again): it started, or its engine call was answered."""
        self._engine_wait.pause()
        self._program.resume()

    def engine_call(self) -> None:
        """The program waits for an engine call."""
        self._program.pause()
        self._engine_wait.resume()

    def halt(self) -> None:
        """The program will not run again (it is being stopped, or it exited)."""
        self._program.stop()
        self._engine_wait.stop()

    def end(self) -> None:
        """The run is over: no clock is left."""
        self.halt()
        if self._session is not None and self._session.active():
            self._session.cancel()
        self._session = None

    def _session_over(self) -> None:
        self._session = None
        self._on_limit(Limit.SESSION)
