"""
The processor as its protocol sees it, driven by the test: L{FakeRuns} starts
L{FakeRun}s whose output, engine calls and end the test decides.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred

from gameproto.processor.admission import CodeTooLarge, RunLimiter, RunSlot
from gameproto.processor.limits import RunLimits
from gameproto.processor.runner import RunResult


class FakeRun:
    """A run the test drives: its Deferreds fire when the test says so."""

    def __init__(self, user: str, language: str, code: str,
                 on_output: Callable[[str, str], None], on_engine: Callable[[int, Any], Any]) -> None:
        self.user = user
        self.language = language
        self.code = code
        self.on_output = on_output
        self.on_engine = on_engine
        self.started: Deferred[None] = Deferred()
        self.ended: Deferred[RunResult] = Deferred()
        self.stops = 0
        self.calls = 0
        self.slot: RunSlot | None = None
        self.output_before_calls = True

    def stop(self) -> None:
        self.stops += 1

    def engine(self, command: Any) -> Deferred[Any]:
        """The program calls the engine (ids from 1, as the runner numbers them)."""
        self.calls += 1
        return self.on_engine(self.calls, command)

    def end(self, exit_code: int | None = 0, signal: str | None = None, **fields: Any) -> None:
        """The run is over: its slot is freed first, as the runner does."""
        if self.slot is not None:
            self.slot.release()
        self.ended.callback(RunResult(exit_code=exit_code, signal=signal, duration_ms=42, **fields))


@attrs.define
class FakeRuns:
    """
    The processor as the protocol sees it; records runs, refuses on demand.  Like the
    runner, it refuses code over the code limit, and admits runs through C{limiter} when
    a test sets one.
    """

    engine_call_timeout: float = 10.0
    disabled: dict[str, str] = attrs.Factory(dict)
    refusal: Exception | None = None
    runs: list[FakeRun] = attrs.Factory(list)
    limits: RunLimits = attrs.Factory(RunLimits)
    limiter: RunLimiter | None = None

    def language_refusal(self, language: str) -> str | None:
        if language in self.disabled:
            return f"language {language} is not available"
        return None

    def start_run(self, user: str, language: str, code: str,
                  on_output: Callable[[str, str], None],
                  on_engine: Callable[[int, Any], Any],
                  output_before_calls: bool = True) -> FakeRun:
        if self.refusal is not None:
            raise self.refusal
        if len(code.encode("utf-8")) > self.limits.code:
            raise CodeTooLarge(self.limits.code_too_large())
        slot = self.limiter.acquire(user) if self.limiter is not None else None
        run = FakeRun(user, language, code, on_output, on_engine)
        run.slot = slot
        run.output_before_calls = output_before_calls
        self.runs.append(run)
        return run

    @property
    def run(self) -> FakeRun:
        return self.runs[-1]
