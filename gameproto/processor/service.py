"""
The processor as a C{twisted.application} service: it runs the sandbox's start-up checks
(L{gameproto.processor.sandbox.start_sandbox}), owns the L{Processor}, and stops every run
when the server stops.

The server starts its children before it listens, so the languages are known before the
first client connects.  A sandbox that cannot start (the isolated sandbox's parts missing
without C{--processor-allow-weak-sandbox}, a run directory owned by someone else) does not
keep the rest of the server down: the reason is logged, shown in C{/healthz}'s details
(L{ProcessorService.status}), and every run is refused with "processor unavailable".
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto.processor.admission import LanguageUnavailable, RunRefused
from gameproto.processor.runner import Processor, Run
from gameproto.processor.sandbox import RunLimits, Sandbox, SandboxConfig, SandboxError, start_sandbox

UNAVAILABLE = "processor unavailable"


class ProcessorService(Service):
    """
    @ivar processor: the L{Processor}, once the sandbox is checked (None before, or if it
        could not start).
    @ivar ready: fires once start-up is over, whatever its outcome.
    """

    _log = Logger()
    name = "processor"

    def __init__(
        self,
        reactor: IReactorProcess,
        clock: IReactorTime,
        config: SandboxConfig,
        limits: RunLimits,
        max_runs: int | None = None,
        start: Callable[..., Deferred[Sandbox]] = start_sandbox,
        runs_per_minute: int = 30,
        metrics: Any = None,
    ) -> None:
        self.reactor = reactor
        self.metrics = metrics  # gameproto.metrics, where runs are counted
        self.clock = clock
        self.config = config
        self.limits = limits
        self.max_runs = max_runs
        self.runs_per_minute = runs_per_minute
        self.processor: Processor | None = None
        self.status: dict[str, Any] = {"state": "starting"}
        self.ready: Deferred[None] = Deferred()
        self._start = start

    # -- service --------------------------------------------------------------------

    def startService(self) -> Deferred[None]:  # type: ignore[override]
        super().startService()
        if self._start is start_sandbox and not IReactorProcess.providedBy(self.reactor):
            # A server on a test Clock: no process can be spawned, so no language is on.
            self._log.warn("processor unavailable: the reactor cannot spawn processes")
            self.status = {"state": "off", "reason": "the reactor cannot spawn processes"}
            return self._announce_ready()
        try:
            d = self._start(self.reactor, self.clock, self.config, self.limits)
        except Exception:
            self._failed(Failure())
            return self._announce_ready()
        d.addCallbacks(self._sandbox_ready, self._failed)
        return d.addCallback(lambda _: self._announce_ready())

    def _sandbox_ready(self, sandbox: Sandbox) -> None:
        # Launchers started ahead: a run then waits for its program only.  Two, so that
        # runs in quick succession find one ready while the next one starts.
        self.processor = Processor(
            self.reactor, self.clock, sandbox, self.max_runs, self.runs_per_minute, spares=2,
            metrics=self.metrics,
        )
        self.status = {
            "state": "on",
            "sandbox": "isolated" if sandbox.isolation is not None else "weak",
            "isolation": (
                sandbox.isolation.describe() if sandbox.isolation is not None else sandbox.weakness
            ),
            "languages": sorted(sandbox.languages),
            "disabled": dict(sandbox.disabled),
        }
        self._log.info(
            "processor ready: {languages} on, at most {max_runs} runs at once",
            languages=", ".join(sorted(sandbox.languages)) or "no language",
            max_runs=self.processor.limiter.max_runs,
        )

    def _failed(self, failure: Failure) -> None:
        self.status = {"state": "off", "reason": str(failure.value)}
        if failure.check(SandboxError):
            self._log.error("processor unavailable: {reason}", reason=str(failure.value))
        else:
            self._log.failure("processor unavailable: the sandbox could not start", failure)

    def _announce_ready(self) -> Deferred[None]:
        if not self.ready.called:
            self.ready.callback(None)
        return succeed(None)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        if self.processor is None:
            return succeed(None)
        if self.processor.runs:
            self._log.info("stopping {count} processor run(s)", count=len(self.processor.runs))
        return self.processor.stop_all()

    # -- what the protocol needs (gameproto.processor.protocol.Runs) -----------------

    @property
    def engine_call_timeout(self) -> float:
        return self.limits.engine_call_timeout

    def language_refusal(self, language: str) -> str | None:
        if self.processor is None:
            return UNAVAILABLE
        sandbox = self.processor.sandbox
        if language in sandbox.languages:
            return None
        if language in sandbox.disabled:
            return f"language {language} is not available"
        return f"unknown language: {language}"

    def start_run(
        self,
        user: str,
        language: str,
        code: str,
        on_output: Callable[[str, str], None],
        on_engine: Callable[[int, Any], Any],
        output_before_calls: bool = True,
    ) -> Run:
        if self.processor is None:
            raise LanguageUnavailable(UNAVAILABLE)
        if not self.running:
            raise RunRefused("server shutting down")
        return self.processor.start_run(
            user, language, code, on_output, on_engine, output_before_calls
        )
