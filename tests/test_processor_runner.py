"""
Tests for L{gameproto.processor.runner} and L{gameproto.processor.sandbox}.

- Unit tests drive L{Run} with a fake C{spawnProcess} on a L{MemoryReactorClock} (as
  twisted/runner/test/test_procmon.py does): timing, limits, engine calls, results.
- Integration tests run real programs through the launcher with the real reactor, as root
  with a uid of their own (a range apart from the server's default, so a server or another
  test run on the same machine is never touched), and check the process table afterwards.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer

from gameproto.processor.languages import PYTHON
from gameproto.processor.runner import (
    CodeTooLarge,
    EngineCallError,
    LanguageUnavailable,
    Processor,
    Run,
    RunLimiter,
    RunResult,
    ServerBusy,
    SpawnError,
    default_max_runs,
)
from gameproto.processor.sandbox import (
    LAUNCHER_CHILD_FDS,
    Limit,
    RunLimits,
    Sandbox,
    SandboxConfig,
    UidPool,
    parse_uid_range,
    prepare_run_base,
    start_sandbox,
)
from tests.support import require_tool, running_in_ci

reactor: Any = _global_reactor

# ---------------------------------------------------------------------------
# fakes


@implementer(IProcessTransport)
class FakeLauncher:
    """A fake launcher process: records what the run writes, closes and signals."""

    pid = 4242

    def __init__(self, proto: Run, args: list[str], env: dict[str, str], path: str,
                 childFDs: dict[int, str]) -> None:
        self.proto = proto
        self.args = args
        self.env = env
        self.path = path
        self.childFDs = childFDs
        self.written: dict[int, bytes] = {}
        self.closed: list[int] = []
        self.signals: list[str] = []
        self.exited = False

    def writeToChild(self, childFD: int, data: bytes) -> None:
        self.written[childFD] = self.written.get(childFD, b"") + data

    def closeChildFD(self, childFD: int) -> None:
        self.closed.append(childFD)

    def signalProcess(self, signalID: str | int) -> None:
        if self.exited:
            raise ProcessExitedAlready()
        self.signals.append(str(signalID))

    # the rest of IProcessTransport, unused by Run
    def closeStdin(self) -> None:
        self.closeChildFD(0)

    def closeStdout(self) -> None:
        self.closeChildFD(1)

    def closeStderr(self) -> None:
        self.closeChildFD(2)

    def loseConnection(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.writeToChild(0, data)

    def writeSequence(self, data: Any) -> None:
        self.writeToChild(0, b"".join(data))

    def getHost(self) -> Any:
        return None

    def getPeer(self) -> Any:
        return None

    def replies(self) -> list[Any]:
        return [json.loads(line) for line in self.written.get(4, b"").splitlines()]

    # what the launcher would do

    def status(self, **event: Any) -> None:
        self.proto.childDataReceived(5, json.dumps(event).encode() + b"\n")

    def started(self) -> None:
        self.status(event="started", pid=777)

    def exit(self, exit_code: int | None = 0, signal_number: int | None = None,
             reason: str = "exit", cpu: float = 0.01) -> None:
        self.status(event="exit", exit_code=exit_code, signal=signal_number,
                    cpu_seconds=cpu, reason=reason, max_tasks=1, swept=True)
        self.ended()

    def ended(self) -> None:
        self.exited = True
        for fd in (1, 2, 3, 4, 5):
            self.proto.childConnectionLost(fd)
        self.proto.processEnded(Failure(ProcessDone(0)))


@implementer(IReactorProcess)
class FakeProcessReactor(MemoryReactorClock):
    """A L{MemoryReactorClock} whose C{spawnProcess} builds a L{FakeLauncher}."""

    def __init__(self) -> None:
        super().__init__()
        self.launchers: list[FakeLauncher] = []
        self.spawn_error: Exception | None = None

    def spawnProcess(self, processProtocol: Any, executable: Any, args: Any = (),
                     env: Any = None, path: Any = None, uid: Any = None, gid: Any = None,
                     usePTY: Any = False, childFDs: Any = None) -> FakeLauncher:
        if self.spawn_error is not None:
            raise self.spawn_error
        launcher = FakeLauncher(processProtocol, list(args), env, path, childFDs)
        self.launchers.append(launcher)
        processProtocol.makeConnection(launcher)
        return launcher


@attrs.define
class RecordingSandbox(Sandbox):
    """A sandbox whose server-side sweep is recorded instead of killing anything."""

    swept: list[int | None] = attrs.field(factory=list)

    def sweep(self, uid: int | None) -> bool:
        self.swept.append(uid)
        return True


def fake_sandbox(**limits: Any) -> RecordingSandbox:
    config = SandboxConfig(run_base="/nonexistent/runs", uids=range(70000, 70008), privileged=True)
    return RecordingSandbox(config=config, limits=RunLimits(**limits))


def remember(into: list[Deferred[Any]], d: Deferred[Any]) -> Deferred[Any]:
    into.append(d)
    return d


class Recorder:
    """Collects a run's output lines and engine calls."""

    def __init__(self, engine: Callable[[int, Any], Any] | None = None) -> None:
        self.lines: list[tuple[str, str]] = []
        self.calls: list[tuple[int, Any]] = []
        self._engine = engine or (lambda call_id, command: {"ok": call_id})

    def output(self, stream: str, text: str) -> None:
        self.lines.append((stream, text))

    def engine(self, call_id: int, command: Any) -> Any:
        self.calls.append((call_id, command))
        return self._engine(call_id, command)


class RunUnitTestCase(SynchronousTestCase):
    def start(self, code: str = "print(1)\n", user: str = "alice",
              engine: Callable[[int, Any], Any] | None = None, **limits: Any
              ) -> tuple[Run, FakeLauncher, Recorder]:
        self.reactor = FakeProcessReactor()
        self.sandbox = fake_sandbox(**limits)
        self.processor = Processor(self.reactor, self.reactor, self.sandbox, max_runs=2)
        self.recorder = Recorder(engine)
        run = self.processor.start_run(user, "python", code, self.recorder.output, self.recorder.engine)
        return run, self.reactor.launchers[-1], self.recorder

    def result(self, run: Run) -> RunResult:
        result: RunResult = self.successResultOf(run.ended)
        # Every timer of the run is gone once it ended.
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        return result


# ---------------------------------------------------------------------------
# unit tests


class SpawnTests(RunUnitTestCase):
    def test_launcher_invocation(self) -> None:
        """
        The launcher runs with the server's Python in isolated mode, an explicit minimal
        environment (nothing of os.environ), from /, with fds 0-5 as pipes.
        """
        os.environ["GP_TEST_SECRET"] = "leak"
        self.addCleanup(os.environ.pop, "GP_TEST_SECRET")
        run, launcher, _ = self.start()
        self.assertEqual(launcher.args[:3], [sys.executable, "-I", "-S"])
        self.assertTrue(launcher.args[3].endswith("gameproto/processor/launcher.py"))
        self.assertEqual(set(launcher.env), {"PATH", "LANG"})
        self.assertEqual(launcher.path, "/")
        self.assertEqual(launcher.childFDs, dict(LAUNCHER_CHILD_FDS))

    def test_request(self) -> None:
        """The request (JSON line, then the code) goes on fd 0, which is then closed."""
        run, launcher, _ = self.start(code="print('hi')\n")
        line, _, code = launcher.written[0].partition(b"\n")
        request = json.loads(line)
        self.assertEqual(code, b"print('hi')\n")
        self.assertEqual(launcher.closed, [0])
        self.assertEqual(request["uid"], run.uid)
        self.assertIn(run.uid, range(70000, 70008))
        self.assertEqual(request["run_dir"], run.run_dir)
        self.assertTrue(run.run_dir.startswith("/nonexistent/runs/"))
        self.assertEqual(request["argv"], ["/usr/bin/python3", "-u", "-E", "-s", run.run_dir + "/main.py"])
        self.assertEqual(request["env"], PYTHON.environment(run.run_dir))
        self.assertEqual(
            (request["cpu_time"], request["memory"], request["processes"], request["file_size"]),
            (5, 256 << 20, 64, 1 << 20),
        )
        self.assertEqual(request["parent_pid"], os.getpid())

    def test_started(self) -> None:
        """started fires when the launcher reports the program running."""
        run, launcher, _ = self.start()
        self.assertNoResult(run.started)
        launcher.started()
        self.successResultOf(run.started)
        self.assertEqual(run.pid, 777)

    def test_launcher_error(self) -> None:
        """
        A launcher that cannot start the program: started fails with SpawnError, ended
        fires with spawn_error, and the user's slot and uid are free again.
        """
        run, launcher, _ = self.start()
        launcher.status(event="error", message="cannot start /usr/bin/python3: ENOENT")
        launcher.ended()
        self.failureResultOf(run.started, SpawnError)
        result = self.result(run)
        self.assertEqual(result.spawn_error, "cannot start /usr/bin/python3: ENOENT")
        self.assertIsNone(result.interpreter_error)
        self.assertEqual(self.processor.limiter.running, 0)
        self.assertEqual(len(self.sandbox.uid_pool or ()), 8)

    def test_launcher_dies_silently(self) -> None:
        """A launcher that ends without a word is a spawn failure too."""
        run, launcher, _ = self.start()
        launcher.proto.processEnded(Failure(ProcessTerminated(1)))
        failure = self.failureResultOf(run.started, SpawnError)
        self.assertIn("without starting", str(failure.value))
        self.assertIsNotNone(self.result(run).spawn_error)

    def test_spawn_process_raises(self) -> None:
        """spawnProcess itself failing ends the run at once, slot freed."""
        self.reactor = FakeProcessReactor()
        self.reactor.spawn_error = OSError("no fork for you")
        processor = Processor(self.reactor, self.reactor, fake_sandbox(), max_runs=2)
        run = processor.start_run("alice", "python", "", lambda s, t: None, lambda i, c: None)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.failureResultOf(run.started, SpawnError)
        self.assertIn("no fork for you", self.successResultOf(run.ended).spawn_error or "")
        self.assertEqual(processor.limiter.running, 0)
        self.assertEqual(processor.runs, set())


class OutputTests(RunUnitTestCase):
    def test_lines(self) -> None:
        """Output arrives as lines per stream, whatever the chunks; CRLF is a newline."""
        run, launcher, recorder = self.start()
        launcher.started()
        run.childDataReceived(1, b"hel")
        run.childDataReceived(1, b"lo\nwor")
        run.childDataReceived(2, b"oops\r\n")
        run.childDataReceived(1, b"ld\n\n")
        self.assertEqual(
            recorder.lines,
            [("stdout", "hello"), ("stderr", "oops"), ("stdout", "world"), ("stdout", "")],
        )

    def test_partial_line_flushed_at_end(self) -> None:
        """A last line without newline is delivered when the stream closes."""
        run, launcher, recorder = self.start()
        launcher.started()
        run.childDataReceived(1, b"no newline")
        launcher.exit(0)
        self.assertEqual(recorder.lines, [("stdout", "no newline")])

    def test_invalid_utf8_replaced(self) -> None:
        """Bytes that are not UTF-8 arrive as U+FFFD, never as an exception."""
        run, launcher, recorder = self.start()
        launcher.started()
        run.childDataReceived(1, b"caf\xe9\n")
        self.assertEqual(recorder.lines, [("stdout", "caf\ufffd")])

    def test_long_line_cut(self) -> None:
        """A line longer than output_line comes in pieces, never splitting a character."""
        run, launcher, recorder = self.start(output_line=10)
        launcher.started()
        run.childDataReceived(1, "abcdefghi\u00e9xyz".encode() + b"0123456789" * 2 + b"\n")
        pieces = [text for _, text in recorder.lines]
        self.assertEqual("".join(pieces), "abcdefghi\u00e9xyz" + "0123456789" * 2)
        self.assertTrue(all(len(p.encode()) <= 10 for p in pieces))
        self.assertNotIn("\ufffd", "".join(pieces))

    def test_stderr_paths_relative(self) -> None:
        """Paths in the run directory printed on stderr are shown relative to it."""
        run, launcher, recorder = self.start()
        launcher.started()
        run.childDataReceived(2, f'  File "{run.run_dir}/main.py", line 3\n'.encode())
        self.assertEqual(recorder.lines, [("stderr", '  File "main.py", line 3')])

    def test_output_limit(self) -> None:
        """
        Output over the limit is cut at the limit, the launcher is told to stop, and the
        error message starts with "output limit exceeded".
        """
        run, launcher, recorder = self.start(output=20)
        launcher.started()
        run.childDataReceived(1, b"0123456789\n")
        self.assertEqual(launcher.signals, [])
        run.childDataReceived(2, b"abcdefghijklmnop\n")
        self.assertEqual(launcher.signals, ["TERM"])
        run.childDataReceived(1, b"more\n")
        self.assertEqual(recorder.lines, [("stdout", "0123456789"), ("stderr", "abcdefghi")])
        launcher.exit(None, signal.SIGTERM)
        result = self.result(run)
        self.assertEqual(result.limit, Limit.OUTPUT)
        self.assertEqual(result.signal, "SIGTERM")
        self.assertTrue((result.interpreter_error or "").startswith("output limit exceeded"))


class EngineTests(RunUnitTestCase):
    def request(self, run: Run, *commands: Any) -> None:
        run.childDataReceived(3, b"".join(json.dumps(c).encode() + b"\n" for c in commands))

    def test_calls_answered_in_order(self) -> None:
        """Each request gets an id from 1 and its reply, in order, on fd 4."""
        run, launcher, recorder = self.start(engine=lambda i, c: {"echo": c, "id": i})
        launcher.started()
        for n in range(3):
            self.request(run, {"n": n})
        self.assertEqual(recorder.calls, [(1, {"n": 0}), (2, {"n": 1}), (3, {"n": 2})])
        self.assertEqual(launcher.replies(), [{"echo": {"n": n}, "id": n + 1} for n in range(3)])
        self.assertEqual(run.engine_calls, 3)

    def test_requests_waiting_one_at_a_time(self) -> None:
        """Requests written at once are relayed one at a time: the next after the reply."""
        pending: list[Deferred[Any]] = []
        run, launcher, recorder = self.start(engine=lambda i, c: remember(pending, Deferred()))
        launcher.started()
        self.request(run, "a", "b")
        self.assertEqual(recorder.calls, [(1, "a")])
        pending[0].callback("A")
        self.assertEqual(recorder.calls, [(1, "a"), (2, "b")])
        pending[1].callback("B")
        self.assertEqual(launcher.replies(), ["A", "B"])

    def test_requests_before_start_wait(self) -> None:
        """A request read before the started status is relayed once the program runs."""
        run, launcher, recorder = self.start()
        self.request(run, 1)
        self.assertEqual(recorder.calls, [])
        launcher.started()
        self.assertEqual(recorder.calls, [(1, 1)])

    def test_engine_error(self) -> None:
        """EngineCallError from the handler answers {"error": message}; the run goes on."""
        def engine(call_id: int, command: Any) -> Any:
            raise EngineCallError("unknown command")

        run, launcher, _ = self.start(engine=engine)
        launcher.started()
        self.request(run, {"type": "Nope"})
        self.assertEqual(launcher.replies(), [{"error": "unknown command"}])
        self.assertEqual(launcher.signals, [])

    def test_handler_bug(self) -> None:
        """Any other exception answers a generic error and is logged."""
        run, launcher, _ = self.start(engine=lambda i, c: 1 / 0)
        launcher.started()
        self.request(run, 1)
        self.assertEqual(launcher.replies(), [{"error": "engine failure"}])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_invalid_json(self) -> None:
        """A line that is not JSON is answered with an error, without reaching the engine."""
        run, launcher, recorder = self.start()
        launcher.started()
        run.childDataReceived(3, b"{nope\n")
        self.assertEqual(recorder.calls, [])
        self.assertEqual(launcher.replies(), [{"error": "invalid JSON in engine request"}])

    def test_unencodable_reply(self) -> None:
        """A reply orjson cannot encode (an integer past 64 bits) is answered with an error."""
        run, launcher, _ = self.start(engine=lambda i, c: {"x": 2**70})
        launcher.started()
        self.request(run, 1)
        self.assertEqual(launcher.replies(), [{"error": "engine reply is not valid JSON"}])

    def test_timeout(self) -> None:
        """
        A call unanswered for 10 s gets {"error": "engine call timed out"}, its Deferred
        is cancelled (so a relaying protocol forgets the id), and the run goes on.
        """
        cancelled: list[int] = []

        def engine(call_id: int, command: Any) -> Deferred[Any]:
            return Deferred(lambda d: cancelled.append(call_id))

        run, launcher, recorder = self.start(engine=engine)
        launcher.started()
        self.request(run, "slow")
        self.reactor.advance(9.5)
        self.assertEqual(launcher.replies(), [])
        self.reactor.advance(0.5)
        self.assertEqual(launcher.replies(), [{"error": "engine call timed out"}])
        self.assertEqual(cancelled, [1])
        self.assertEqual(launcher.signals, [])
        self.request(run, "next")
        self.assertEqual(recorder.calls[-1], (2, "next"))

    def test_channel_flood(self) -> None:
        """A request line over the engine channel limit stops the run."""
        run, launcher, recorder = self.start(engine_channel=100)
        launcher.started()
        run.childDataReceived(3, b'"' + b"x" * 200)
        self.assertEqual(launcher.signals, ["TERM"])
        launcher.exit(None, signal.SIGTERM)
        result = self.result(run)
        self.assertEqual(result.limit, Limit.ENGINE_CHANNEL)
        self.assertTrue((result.interpreter_error or "").startswith("engine request limit exceeded (100 B)"))

    def test_output_drained_before_call(self) -> None:
        """
        Output the program wrote before a call is read from its pipe before the call is
        relayed, even when the reactor serviced fd 3 first.
        """
        run, launcher, recorder = self.start(engine=lambda i, c: recorder.lines.append(("call", str(c))))
        waiting = [b"printed before\n"]

        class Reader:
            def doRead(self) -> None:
                if waiting:
                    run.childDataReceived(1, waiting.pop())

        launcher.pipes = {1: Reader()}  # type: ignore[attr-defined]
        launcher.started()
        self.request(run, 1)
        self.assertEqual(recorder.lines[:2], [("stdout", "printed before"), ("call", "1")])

    def test_pending_call_cancelled_at_end(self) -> None:
        """A call still waiting when the program ends is cancelled; nothing is written."""
        cancelled: list[int] = []
        run, launcher, _ = self.start(engine=lambda i, c: Deferred(lambda d: cancelled.append(i)))
        launcher.started()
        self.request(run, 1)
        launcher.exit(1)
        self.assertEqual(cancelled, [1])
        self.assertEqual(launcher.replies(), [])
        self.result(run)


class TimeTests(RunUnitTestCase):
    def test_program_time_limit(self) -> None:
        """After program_time seconds the launcher is TERMed; the message says why."""
        run, launcher, _ = self.start(program_time=10)
        launcher.started()
        self.reactor.advance(9.5)
        self.assertEqual(launcher.signals, [])
        self.reactor.advance(0.5)
        self.assertEqual(launcher.signals, ["TERM"])
        launcher.exit(None, signal.SIGTERM)
        result = self.result(run)
        self.assertEqual(result.limit, Limit.TIME)
        self.assertFalse(result.stopped)
        self.assertEqual(result.interpreter_error, "time limit exceeded (10 s)")

    def test_program_time_starts_with_program(self) -> None:
        """The launcher's own set-up is not program time."""
        run, launcher, _ = self.start(program_time=10)
        self.reactor.advance(3)
        launcher.started()
        self.reactor.advance(9.5)
        self.assertEqual(launcher.signals, [])
        self.assertEqual(run.program_time(), 9.5)

    def test_engine_time_excluded(self) -> None:
        """Time blocked in an engine call is not program time."""
        calls: list[Deferred[Any]] = []
        run, launcher, _ = self.start(
            program_time=10, engine_call_timeout=100,
            engine=lambda i, c: remember(calls, Deferred()),
        )
        launcher.started()
        self.reactor.advance(4)
        run.childDataReceived(3, b"1\n")
        self.reactor.advance(50)
        self.assertEqual(launcher.signals, [])
        calls[0].callback("done")
        self.assertEqual(run.program_time(), 4)
        self.reactor.advance(5.5)
        self.assertEqual(launcher.signals, [])
        self.reactor.advance(0.5)
        self.assertEqual(launcher.signals, ["TERM"])

    def test_session_limit(self) -> None:
        """The session limit counts engine calls too."""
        run, launcher, _ = self.start(
            program_time=10, session_time=30, engine_call_timeout=100,
            engine=lambda i, c: Deferred(),
        )
        launcher.started()
        run.childDataReceived(3, b"1\n")
        self.reactor.advance(29.5)
        self.assertEqual(launcher.signals, [])
        self.reactor.advance(0.5)
        self.assertEqual(launcher.signals, ["TERM"])
        launcher.exit(None, signal.SIGTERM)
        result = self.result(run)
        self.assertEqual(result.limit, Limit.SESSION)
        self.assertEqual(result.interpreter_error, "session limit exceeded (30 s)")

    def test_duration(self) -> None:
        """duration_ms runs from the program's start to the launcher's exit report."""
        run, launcher, _ = self.start()
        self.reactor.advance(1)
        launcher.started()
        self.reactor.advance(2.5)
        launcher.exit(0)
        result = self.result(run)
        self.assertEqual(result.duration_ms, 2500)
        self.assertEqual((result.exit_code, result.signal, result.end_message), (0, None, "exited with code 0"))
        self.assertIsNone(result.interpreter_error)


class StopTests(RunUnitTestCase):
    def test_stop(self) -> None:
        """stop() TERMs the launcher once; a stopped run is no interpreter error."""
        run, launcher, _ = self.start()
        launcher.started()
        run.stop()
        run.stop()
        self.assertEqual(launcher.signals, ["TERM"])
        launcher.exit(None, signal.SIGTERM, reason="stop")
        result = self.result(run)
        self.assertTrue(result.stopped)
        self.assertEqual(result.end_message, "killed by SIGTERM")
        self.assertIsNone(result.interpreter_error)
        self.assertIsNone(result.limit)

    def test_stop_after_end(self) -> None:
        """stop() after the end signals nothing."""
        run, launcher, _ = self.start()
        launcher.started()
        launcher.exit(0)
        run.stop()
        self.assertEqual(launcher.signals, [])

    def test_stop_all(self) -> None:
        """stop_all() (server shutdown) stops every run; it fires once all have ended."""
        run, first, _ = self.start()
        self.processor.start_run("bob", "python", "", lambda s, t: None, lambda i, c: None)
        second = self.reactor.launchers[-1]
        first.started()
        second.started()
        done = self.processor.stop_all()
        self.assertEqual((first.signals, second.signals), (["TERM"], ["TERM"]))
        first.exit(None, signal.SIGTERM, reason="stop")
        self.assertNoResult(done)
        second.exit(None, signal.SIGTERM, reason="stop")
        self.successResultOf(done)
        self.assertEqual(self.processor.runs, set())
        self.assertEqual(self.processor.limiter.running, 0)

    def test_hung_launcher(self) -> None:
        """
        A launcher still there launcher_timeout after the grace period: the server kills the
        run uid itself and ends the run (the user may run again) but keeps the uid out of
        the pool until the launcher is really gone.
        """
        run, launcher, _ = self.start(kill_grace=0.2, launcher_timeout=5)
        launcher.started()
        uid = run.uid
        run.stop()
        self.reactor.advance(5)
        self.assertNoResult(run.ended)
        self.reactor.advance(0.5)
        result = self.result(run)
        self.assertTrue(result.stopped)
        self.assertEqual(self.sandbox.swept, [uid])
        self.assertEqual(self.processor.limiter.running, 0)
        pool = self.sandbox.uid_pool
        assert pool is not None
        self.assertEqual(len(pool), 7)
        launcher.ended()
        self.assertEqual(self.sandbox.swept, [uid, uid])
        self.assertEqual(len(pool), 8)


class ResultTests(RunUnitTestCase):
    def ended(self, stderr: bytes = b"", **exit: Any) -> RunResult:
        run, launcher, _ = self.start()
        launcher.started()
        if stderr:
            run.childDataReceived(2, stderr)
        launcher.exit(**exit)
        return self.result(run)

    def test_runtime_error(self) -> None:
        """A non-zero exit: the message is the rewritten error output."""
        result = self.ended(b'Traceback (most recent call last):\nValueError: x\n', exit_code=1)
        self.assertEqual(result.interpreter_error, "Traceback (most recent call last):\nValueError: x")
        self.assertIsNone(result.limit)

    def test_signal_without_output(self) -> None:
        """A death by signal with nothing on stderr still has a message."""
        result = self.ended(exit_code=None, signal_number=signal.SIGSEGV)
        self.assertEqual(result.interpreter_error, "killed by SIGSEGV")

    def test_cpu_limit(self) -> None:
        """SIGXCPU (or SIGKILL at the hard limit) is the CPU limit."""
        result = self.ended(exit_code=None, signal_number=signal.SIGXCPU, cpu=5.0)
        self.assertEqual(result.limit, Limit.CPU)
        self.assertEqual(result.interpreter_error, "CPU time limit exceeded (5 s)")
        result = self.ended(exit_code=None, signal_number=signal.SIGKILL, cpu=6.0)
        self.assertEqual(result.limit, Limit.CPU)

    def test_memory_limit(self) -> None:
        """An out-of-memory text in the error output is the memory limit, named first."""
        result = self.ended(b"Traceback (most recent call last):\nMemoryError\n", exit_code=1)
        self.assertEqual(result.limit, Limit.MEMORY)
        self.assertEqual(
            result.interpreter_error,
            "memory limit exceeded\nTraceback (most recent call last):\nMemoryError",
        )

    def test_memory_error_caught(self) -> None:
        """A program that caught its MemoryError and exited 0 has no error at all."""
        result = self.ended(b"MemoryError\n", exit_code=0)
        self.assertIsNone(result.limit)
        self.assertIsNone(result.interpreter_error)

    def test_file_limit(self) -> None:
        """errno 27 in the error output (CPython ignores SIGXFSZ), or SIGXFSZ."""
        result = self.ended(b"OSError: [Errno 27] File too large\n", exit_code=1)
        self.assertEqual(result.limit, Limit.FILE)
        self.assertTrue((result.interpreter_error or "").startswith("file size limit exceeded (1 MiB)\n"))
        result = self.ended(exit_code=None, signal_number=signal.SIGXFSZ)
        self.assertEqual(result.limit, Limit.FILE)

    def test_process_limit(self) -> None:
        """The launcher saw the run at its process cap."""
        result = self.ended(exit_code=None, signal_number=signal.SIGTERM, reason="processes")
        self.assertEqual(result.limit, Limit.PROCESSES)
        self.assertEqual(result.interpreter_error, "process limit exceeded (64)")


class AdmissionTests(SynchronousTestCase):
    def test_limiter(self) -> None:
        """At most max_runs at once, one per user, each with its own uid."""
        pool = UidPool(range(100, 103))
        limiter = RunLimiter(2, pool)
        alice = limiter.acquire("alice")
        self.assertEqual(str(self.assertRaises(ServerBusy, limiter.acquire, "alice")),
                         "server busy (one run per user)")
        bob = limiter.acquire("bob")
        self.assertEqual(str(self.assertRaises(ServerBusy, limiter.acquire, "carol")), "server busy")
        self.assertNotEqual(alice.uid, bob.uid)
        alice.release()
        alice.release()
        carol = limiter.acquire("carol")
        self.assertEqual(carol.uid, 102)  # least recently used first
        self.assertEqual(limiter.running, 2)

    def test_uid_pool(self) -> None:
        """The pool hands out each uid once and refuses double or foreign releases."""
        pool = UidPool(range(5, 7))
        self.assertEqual([pool.acquire(), pool.acquire(), pool.acquire()], [5, 6, None])
        pool.release(5)
        self.assertRaises(ValueError, pool.release, 5)
        self.assertRaises(ValueError, pool.release, 99)

    def test_parse_uid_range(self) -> None:
        """--processor-uids FIRST-LAST is inclusive; uid 0 and junk are refused."""
        self.assertEqual(parse_uid_range("60000-60063"), range(60000, 60064))
        self.assertRaises(ValueError, parse_uid_range, "0-5")
        self.assertRaises(ValueError, parse_uid_range, "abc")

    def test_default_max_runs(self) -> None:
        """By default 2 x the usable cores run at once."""
        self.assertEqual(default_max_runs(), 2 * len(os.sched_getaffinity(0)))

    def test_refusals(self) -> None:
        """Unknown or disabled languages, code over 256 KiB, busy: refused before spawning."""
        fake = FakeProcessReactor()
        sandbox = fake_sandbox()
        sandbox.languages = {"python": PYTHON}
        sandbox.disabled = {"ruby": "/usr/bin/ruby is not installed"}
        processor = Processor(fake, fake, sandbox, max_runs=1)
        def start(language: str, code: str = "", user: str = "u") -> Run:
            return processor.start_run(user, language, code, lambda s, t: None, lambda i, c: None)

        self.assertEqual(str(self.assertRaises(LanguageUnavailable, start, "cobol")), "unknown language: cobol")
        self.assertEqual(str(self.assertRaises(LanguageUnavailable, start, "ruby")),
                         "language ruby is not available")
        self.assertEqual(str(self.assertRaises(CodeTooLarge, start, "python", "x" * (256 * 1024 + 1))),
                         "code too large (max 256 KiB)")
        start("python")
        self.assertRaises(ServerBusy, start, "python", "", "other")
        self.assertEqual(len(fake.launchers), 1)

    def test_limit_messages(self) -> None:
        """The texts of DESIGN.md, with the configured values."""
        limits = RunLimits()
        self.assertEqual(
            [limits.message(limit) for limit in Limit],
            [
                "time limit exceeded (10 s)",
                "CPU time limit exceeded (5 s)",
                "memory limit exceeded",
                "output limit exceeded",
                "file size limit exceeded (1 MiB)",
                "process limit exceeded (64)",
                "session limit exceeded (600 s)",
                "engine request limit exceeded (1 MiB)",
            ],
        )
        self.assertEqual(RunLimits(program_time=2.5).message(Limit.TIME), "time limit exceeded (2.5 s)")
        self.assertRaises(ValueError, RunLimits, cpu_time=0)


# ---------------------------------------------------------------------------
# integration: real programs through the launcher

SYSTEM_PYTHON = "/usr/bin/python3"
_UID_BLOCK = 16
_uid_block: range | None = None


def claim_test_uids() -> range:
    """
    A block of 16 uids for this test process alone, apart from the server's default pool
    (60000-60063): several test runs on one machine (CI jobs, developers) must never kill
    each other's programs.  The block is claimed with a lock held until the process exits.
    """
    global _uid_block
    if _uid_block is None:
        for start in range(61000, 65000, _UID_BLOCK):
            fd = os.open(f"/tmp/gameproto-test-uids-{start}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _uid_block = range(start, start + _UID_BLOCK)  # fd stays open: the lock holds
            break
        else:
            raise AssertionError("no free block of test uids")
    return _uid_block


def run_uids() -> range:
    """The run uid pool of the tests: all of the block but its last uid."""
    return claim_test_uids()[:-1]


def unprivileged_uid() -> int:
    """The uid the launcher-without-root tests run the launcher as."""
    return claim_test_uids()[-1]


def processes_of_uid(uid: int) -> list[int]:
    """Every process (zombies included) whose real, effective or saved uid is C{uid}."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("Uid:"):
                        if str(uid) in line.split()[1:4]:
                            found.append(int(entry))
                        break
        except OSError:
            continue
    return found


def within(d: Deferred[Any], seconds: float) -> Deferred[Any]:
    """C{d}, failing with TimeoutError if it has not fired in C{seconds}: a deadline."""
    return d.addTimeout(seconds, reactor)


def interpreter(language: str) -> str:
    """The interpreter of C{language}: skip (or fail under CI) when it is missing."""
    if language == "python":
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            message = f"{SYSTEM_PYTHON} is not installed"
            if running_in_ci():
                raise AssertionError(message)
            raise SkipTest(message)
        return SYSTEM_PYTHON
    return require_tool({"javascript": "node", "ruby": "ruby", "php": "php"}[language])


class RealRun:
    """The outcome of one real run."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.lines: list[tuple[str, str]] = []
        self.calls: list[tuple[int, Any]] = []
        self.seen: dict[str, Deferred[None]] = {}

    def stdout(self) -> list[str]:
        return [text for stream, text in self.lines if stream == "stdout"]

    def when_printed(self, text: str) -> Deferred[None]:
        """Fires when the program prints C{text} on stdout."""
        return self.seen.setdefault(text, Deferred())

    def output(self, stream: str, text: str) -> None:
        self.lines.append((stream, text))
        waiting = self.seen.get(text)
        if stream == "stdout" and waiting is not None and not waiting.called:
            waiting.callback(None)


class IntegrationTestCase(TestCase):
    """Real programs through the real launcher, as root."""

    timeout = 30

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the sandbox tests need root (a uid per run, namespaces)")
        base = tempfile.mkdtemp(prefix="gameproto-test-runs-", dir="/tmp")
        self.addCleanup(shutil.rmtree, base, True)
        self.base = prepare_run_base(base)

    def sandbox(self, language: str, **limits: Any) -> Sandbox:
        config = SandboxConfig(
            run_base=self.base,
            uids=run_uids(),
            interpreters={language: interpreter(language)},
            privileged=True,
        )
        return Sandbox(config=config, limits=RunLimits(**limits))

    def start(self, language: str, code: str, engine: Callable[[int, Any], Any] | None = None,
              sandbox: Sandbox | None = None, spawner: IReactorProcess | None = None,
              **limits: Any) -> RealRun:
        sandbox = sandbox or self.sandbox(language, **limits)
        processor = Processor(spawner or reactor, reactor, sandbox)
        holder: list[RealRun] = []

        def on_engine(call_id: int, command: Any) -> Any:
            holder[0].calls.append((call_id, command))
            return engine(call_id, command) if engine else {"ok": call_id}

        run = processor.start_run("tester", language, code, lambda s, t: holder[0].output(s, t), on_engine)
        holder.append(RealRun(run))
        run.started.addErrback(lambda f: None)  # a spawn failure shows in the result
        return holder[0]

    async def finish(self, real: RealRun, deadline: float = 20) -> RunResult:
        """The result; and then nothing of the run's uid may be left in the process table."""
        result: RunResult = await within(real.run.ended, deadline)
        self.assertIsNone(result.spawn_error)
        if real.run.uid is not None:
            self.assertEqual(processes_of_uid(real.run.uid), [])
        self.assertFalse(os.path.exists(real.run.run_dir))
        return result


HELLO = {
    "python": 'print("hello, world")\n',
    "javascript": 'console.log("hello, world");\n',
    "ruby": 'puts "hello, world"\n',
    "php": 'echo "hello, world\\n";\n',
}
# Line 3 is the error in each program.
SYNTAX_ERROR = {
    "python": 'x = 1\ny = 2\nprint("a"\n',
    "javascript": "const x = 1;\nconst y = 2;\nfoo(;\n",
    "ruby": "x = 1\ny = 2\nputs(]\n",
    "php": "$x = 1;\n$y = 2;\nfoo(;\n",
}
SYNTAX_ERROR_LINE = {
    "python": '  File "main.py", line 3',
    "javascript": "main.js:3",
    "ruby": "main.rb:3: syntax error",
    "php": "in main.php on line 3",
}
RUNTIME_ERROR = {
    "python": 'def f():\n    return 1 / 0\nprint("before")\nf()\n',
    "javascript": 'function f() {\n  return null.x;\n}\nconsole.log("before");\nf();\n',
    "ruby": 'def f\n  raise "boom"\nend\nputs "before"\nf\n',
    "php": 'function f() {\n  throw new Exception("boom");\n}\necho "before\\n";\nf();\n',
}
RUNTIME_ERROR_LINES = {
    "python": ['  File "main.py", line 4, in <module>', '  File "main.py", line 2, in f'],
    "javascript": ["main.js:2", "(main.js:2:", "(main.js:5:"],
    "ruby": ["main.rb:2:in `f': boom (RuntimeError)", "from main.rb:5:in `<main>'"],
    "php": ["Uncaught Exception: boom in main.php:2", "#0 main.php(5): f()"],
}
THOUSAND_CALLS = {
    "python": (
        "from gameproto_sdk import send\n"
        "for i in range(1000):\n"
        "    reply = send({'n': i})\n"
        "    assert reply == {'n': i, 'id': i + 1}, reply\n"
        "print('done', i + 1)\n"
    ),
    "javascript": (
        "const { send } = require('gameproto_sdk');\n"
        "let i = 0;\n"
        "for (; i < 1000; i++) {\n"
        "  const reply = send({ n: i });\n"
        "  if (reply.n !== i || reply.id !== i + 1) throw new Error('bad reply ' + JSON.stringify(reply));\n"
        "}\n"
        "console.log('done', i);\n"
    ),
    "ruby": (
        "require 'gameproto_sdk'\n"
        "1000.times do |i|\n"
        "  reply = GameprotoSDK.send({ 'n' => i })\n"
        "  raise \"bad reply #{reply}\" unless reply == { 'n' => i, 'id' => i + 1 }\n"
        "end\n"
        "puts 'done 1000'\n"
    ),
    "php": (
        "for ($i = 0; $i < 1000; $i++) {\n"
        "  $reply = \\gameproto_sdk\\send(['n' => $i]);\n"
        "  if ($reply !== ['n' => $i, 'id' => $i + 1]) throw new Exception('bad reply');\n"
        "}\n"
        "echo \"done $i\\n\";\n"
    ),
}
ENGINE_ERROR = {
    "python": "from gameproto_sdk import send, EngineError\ntry:\n    send(1)\nexcept EngineError as e:\n    print('caught', e)\n",
    "javascript": "const { send, EngineError } = require('gameproto_sdk');\ntry { send(1); } catch (e) { console.log('caught', e instanceof EngineError, e.message); }\n",
    "ruby": "require 'gameproto_sdk'\nbegin\n  GameprotoSDK.send(1)\nrescue GameprotoSDK::EngineError => e\n  puts \"caught #{e.message}\"\nend\n",
    "php": "try { \\gameproto_sdk\\send(1); } catch (\\gameproto_sdk\\EngineError $e) { echo 'caught ', $e->getMessage(), \"\\n\"; }\n",
}


class LanguageIntegrationMixin:
    """The same checks for each language."""

    language: str

    async def test_hello_world(self: Any) -> None:
        """Hello world prints its line and exits with 0, no error."""
        real = self.start(self.language, HELLO[self.language])
        result = await self.finish(real)
        self.assertEqual(real.stdout(), ["hello, world"])
        self.assertEqual((result.exit_code, result.signal, result.interpreter_error), (0, None, None))
        self.assertEqual(result.end_message, "exited with code 0")

    async def test_syntax_error(self: Any) -> None:
        """A syntax error: non-zero exit, message naming the user's file and line 3."""
        result = await self.finish(self.start(self.language, SYNTAX_ERROR[self.language]))
        self.assertNotEqual(result.exit_code, 0)
        self.assertIn(SYNTAX_ERROR_LINE[self.language], result.interpreter_error or "")
        self.assertNotIn(self.base, result.interpreter_error or "")

    async def test_runtime_error(self: Any) -> None:
        """A runtime error: output before it streamed, message with the user's lines."""
        real = self.start(self.language, RUNTIME_ERROR[self.language])
        result = await self.finish(real)
        self.assertEqual(real.stdout(), ["before"])
        self.assertNotEqual(result.exit_code, 0)
        for text in RUNTIME_ERROR_LINES[self.language]:
            self.assertIn(text, result.interpreter_error or "")
        self.assertNotIn(self.base, result.interpreter_error or "")
        self.assertNotIn("gameproto_sdk", result.interpreter_error or "")

    async def test_thousand_engine_calls(self: Any) -> None:
        """1,000 engine calls, each answered in order (ids 1..1000)."""
        real = self.start(self.language, THOUSAND_CALLS[self.language],
                          engine=lambda i, c: {"n": c["n"], "id": i})
        result = await self.finish(real)
        self.assertEqual(result.interpreter_error, None)
        self.assertEqual(real.stdout(), ["done 1000"])
        self.assertEqual(real.calls, [(i + 1, {"n": i}) for i in range(1000)])
        self.assertEqual(result.engine_calls, 1000)

    async def test_engine_error(self: Any) -> None:
        """An {"error": ...} reply raises the SDK's EngineError, which the program may catch."""
        real = self.start(self.language, ENGINE_ERROR[self.language],
                          engine=lambda i, c: {"error": "no such command"})
        result = await self.finish(real)
        self.assertEqual(result.exit_code, 0)
        self.assertIn("no such command", " ".join(real.stdout()))
        self.assertIn("caught", " ".join(real.stdout()))


class PythonIntegrationTests(LanguageIntegrationMixin, IntegrationTestCase):
    language = "python"

    async def test_server_installed_under_tmp(self) -> None:
        """
        The SDK is found when the server itself lives under /tmp (a CI checkout),
        although each run gets a fresh /tmp of its own.
        """
        import shutil
        import tempfile
        from pathlib import Path

        from gameproto.processor import languages

        installed = tempfile.mkdtemp(prefix="gameproto-installed-", dir="/tmp")
        self.addCleanup(shutil.rmtree, installed, True)
        shutil.copy(languages.SDK_DIRECTORY / "gameproto_sdk.py", installed)
        self.patch(languages, "SDK_DIRECTORY", Path(installed))
        real = self.start("python", "from gameproto_sdk import send\nprint('sdk', callable(send))\n")
        result = await self.finish(real)
        self.assertEqual((result.exit_code, result.interpreter_error), (0, None))
        self.assertEqual(real.stdout(), ["sdk True"])


class JavaScriptIntegrationTests(LanguageIntegrationMixin, IntegrationTestCase):
    language = "javascript"


class RubyIntegrationTests(LanguageIntegrationMixin, IntegrationTestCase):
    language = "ruby"


class PHPIntegrationTests(LanguageIntegrationMixin, IntegrationTestCase):
    language = "php"


#: Starts a child that calls setsid and a grandchild; the grandchild says "ready" once all
#: three exist, and every one of them sleeps for an hour.
DAEMONIZING_PROGRAM = (
    "import os, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        print('ready')\n"
    "    time.sleep(3600)\n"
    "time.sleep(3600)\n"
)


class HostileProgramTests(IntegrationTestCase):
    """Programs that try to escape a limit: each ends with the limit's text, nothing left."""

    async def test_infinite_loop(self) -> None:
        """An infinite loop is killed at the CPU limit (SIGXCPU)."""
        result = await self.finish(self.start("python", "while True:\n    pass\n", cpu_time=1, program_time=30))
        self.assertEqual(result.limit, Limit.CPU)
        self.assertEqual(result.signal, "SIGXCPU")
        self.assertTrue((result.interpreter_error or "").startswith("CPU time limit exceeded (1 s)"))

    async def test_sleep_forever(self) -> None:
        """A program sleeping forever is stopped at the program time limit."""
        real = self.start("python", "import time\nprint('sleeping')\ntime.sleep(3600)\n", program_time=1.5)
        result = await self.finish(real)
        self.assertEqual(real.stdout(), ["sleeping"])
        self.assertEqual(result.limit, Limit.TIME)
        self.assertEqual(result.signal, "SIGTERM")
        self.assertTrue((result.interpreter_error or "").startswith("time limit exceeded (1.5 s)"))
        self.assertGreaterEqual(result.duration_ms, 1500)

    async def test_fork_bomb(self) -> None:
        """A fork bomb (children calling setsid included) ends at the process limit."""
        code = (
            "import os\n"
            "while True:\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            os.setsid()\n"
            "    except OSError:\n"
            "        pass\n"
        )
        result = await self.finish(self.start("python", code))
        self.assertEqual(result.limit, Limit.PROCESSES)
        self.assertTrue((result.interpreter_error or "").startswith("process limit exceeded (64)"))

    async def test_allocate_2_gib(self) -> None:
        """Allocating 2 GiB fails at the memory limit."""
        result = await self.finish(self.start("python", "data = bytearray(2 * 1024 ** 3)\n"))
        self.assertEqual(result.limit, Limit.MEMORY)
        self.assertEqual(result.exit_code, 1)
        error = result.interpreter_error or ""
        self.assertTrue(error.startswith("memory limit exceeded\n"))
        self.assertIn('File "main.py", line 1', error)
        self.assertIn("MemoryError", error)

    async def test_print_forever(self) -> None:
        """Printing forever stops at the output limit; no more than the limit is delivered."""
        real = self.start("python", "while True:\n    print('spam' * 20)\n", output=64 * 1024)
        result = await self.finish(real)
        self.assertEqual(result.limit, Limit.OUTPUT)
        self.assertTrue((result.interpreter_error or "").startswith("output limit exceeded"))
        delivered = sum(len(text) + 1 for _, text in real.lines)
        self.assertLessEqual(delivered, 64 * 1024 + 1)

    async def test_write_100_mib_file(self) -> None:
        """Writing a 100 MiB file fails at the file size limit (errno 27 in CPython)."""
        code = "with open('big', 'wb') as f:\n    f.write(b'x' * (100 * 1024 * 1024))\n"
        result = await self.finish(self.start("python", code))
        self.assertEqual(result.limit, Limit.FILE)
        error = result.interpreter_error or ""
        self.assertTrue(error.startswith("file size limit exceeded (1 MiB)\n"))
        self.assertIn("File too large", error)

    async def test_environment(self) -> None:
        """The program sees only the minimal environment, none of the server's."""
        os.environ["GP_SERVER_SECRET"] = "redis://:hunter2@localhost"
        self.addCleanup(os.environ.pop, "GP_SERVER_SECRET")
        real = self.start("python", "import json, os\nprint(json.dumps(dict(os.environ)))\n")
        result = await self.finish(real)
        self.assertEqual(result.exit_code, 0)
        env = json.loads(real.stdout()[0])
        self.assertEqual(env, PYTHON.environment(real.run.run_dir))

    async def test_identity_and_isolation(self) -> None:
        """
        The program runs as its run uid with no groups, nice 19, fds 0-4 only, no network,
        its own processes only in /proc, and nothing of the host writable.
        """
        code = (
            "import json, os, socket\n"
            "s = socket.socket()\n"
            "net = s.connect_ex(('127.0.0.1', 22))\n"
            "try:\n"
            "    open('/run/lock/gameproto-escape', 'w')\n"  # world-writable on the host
            "    writable = 0\n"
            "except OSError as e:\n"
            "    writable = e.errno\n"
            "s.close()\n"
            "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),\n"
            "    'nice': os.getpriority(os.PRIO_PROCESS, 0), 'fds': sorted(int(f) for f in os.listdir('/proc/self/fd')),\n"
            "    'net': net, 'host_writable': writable, 'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),\n"
            "    'cwd': os.getcwd(), 'pid': os.getpid()}))\n"
        )
        real = self.start("python", code)
        result = await self.finish(real)
        self.assertEqual(result.exit_code, 0)
        seen = json.loads(real.stdout()[0])
        self.assertEqual((seen["uid"], seen["gid"], seen["groups"]), (real.run.uid, real.run.uid, []))
        self.assertEqual(seen["nice"], 19)
        # 0-4, plus the fd listdir itself holds open
        self.assertEqual([fd for fd in seen["fds"] if fd <= 4], [0, 1, 2, 3, 4])
        self.assertLessEqual(len(seen["fds"]), 6)
        self.assertNotEqual(seen["net"], 0)
        if os.path.isdir("/run/lock"):
            self.assertEqual(seen["host_writable"], errno.EROFS)
        self.assertEqual(seen["pids"], [seen["pid"]])
        self.assertEqual(seen["cwd"], real.run.run_dir)

    async def test_stop_mid_run(self) -> None:
        """
        stop() kills the program and everything it started (a setsid'd grandchild too)
        within 1 s: waited for with that timer plus a 2 s margin.
        """
        code = DAEMONIZING_PROGRAM
        real = self.start("python", code)
        await within(real.when_printed("ready"), 10)
        self.assertGreaterEqual(len(processes_of_uid(real.run.uid or 0)), 3)
        real.run.stop()
        result = await self.finish(real, deadline=1 + 2)
        self.assertTrue(result.stopped)
        self.assertIsNone(result.interpreter_error)
        self.assertEqual(result.end_message, "killed by SIGTERM")

    async def test_javascript_infinite_loop(self) -> None:
        """node spinning forever is killed at the CPU limit."""
        result = await self.finish(self.start("javascript", "for (;;) {}\n", cpu_time=1, program_time=30))
        self.assertEqual(result.limit, Limit.CPU)

    async def test_javascript_heap(self) -> None:
        """node runs under RLIMIT_DATA and reports its own heap exhaustion."""
        code = "const a = [];\nfor (;;) a.push(new Array(100000).fill(1.5));\n"
        result = await self.finish(self.start("javascript", code))
        self.assertEqual(result.limit, Limit.MEMORY)
        self.assertIn("heap out of memory", result.interpreter_error or "")

    async def test_ruby_fork_bomb(self) -> None:
        """A Ruby fork bomb ends at the process limit."""
        result = await self.finish(self.start("ruby", "loop { fork rescue nil }\n"))
        self.assertEqual(result.limit, Limit.PROCESSES)

    async def test_php_memory(self) -> None:
        """PHP reports its memory_limit (below RLIMIT_DATA) itself."""
        result = await self.finish(self.start("php", "$a = str_repeat('x', 1024 * 1024 * 1024);\n"))
        self.assertEqual(result.limit, Limit.MEMORY)
        self.assertIn("Allowed memory size", result.interpreter_error or "")

    async def test_ruby_sleep_forever(self) -> None:
        """A Ruby program sleeping forever ends at the program time limit."""
        result = await self.finish(self.start("ruby", "sleep\n", program_time=1))
        self.assertEqual(result.limit, Limit.TIME)


class SandboxStartupTests(IntegrationTestCase):
    async def test_start_sandbox(self) -> None:
        """
        The start-up check runs each language's probe through the launcher as a run uid:
        the installed ones are on, a missing interpreter is off with its reason.
        """
        for language in ("python", "javascript", "ruby", "php"):
            interpreter(language)
        config = SandboxConfig(
            run_base=self.base + "/sub",
            uids=run_uids(),
            interpreters={"python": SYSTEM_PYTHON, "ruby": "/nonexistent/ruby"},
            privileged=True,
        )
        sandbox = await within(start_sandbox(reactor, reactor, config, RunLimits()), 20)
        self.assertEqual(sorted(sandbox.languages), ["javascript", "php", "python"])
        self.assertEqual(sandbox.disabled, {"ruby": "/nonexistent/ruby is not installed"})
        self.assertEqual(os.stat(self.base + "/sub").st_mode & 0o777, 0o711)
        self.assertEqual(len(sandbox.uid_pool or ()), len(run_uids()))

    def test_run_base_checked(self) -> None:
        """A run base owned by someone else is refused."""
        other = os.path.join(self.base, "other")
        os.mkdir(other)
        os.chown(other, 12345, 12345)
        from gameproto.processor.sandbox import SandboxError
        self.assertRaises(SandboxError, prepare_run_base, other)


@implementer(IReactorProcess)
class SpawnAs:
    """
    Spawns the launcher as an unprivileged uid: the server-without-root case.  Through
    util-linux's setpriv, which execs (the launcher keeps the pid the server spawned) and
    needs no passwd entry, unlike spawnProcess(uid=...).
    """

    def __init__(self, uid: int) -> None:
        self.uid = uid

    def spawnProcess(self, processProtocol: Any, executable: Any, args: Any = (), env: Any = None,
                     path: Any = None, uid: Any = None, gid: Any = None, usePTY: Any = False,
                     childFDs: Any = None) -> Any:
        setpriv = require_tool("setpriv")
        argv = [setpriv, f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--", *args]
        return reactor.spawnProcess(processProtocol, setpriv, argv, env=env, path=path, childFDs=childFDs)


class UnprivilegedLauncherTests(IntegrationTestCase):
    """
    The launcher run by a non-root server (reduced protection: the program keeps the
    server's uid; no namespaces): it still runs, limits and cleans up the program.
    """

    def readable_install(self) -> None:
        """
        The launcher and SDKs where the unprivileged uid can read them.  A real
        non-root server owns its installation; this test's checkout may be root's
        (a CI clone under a 0700 temporary directory).
        """
        from pathlib import Path

        from gameproto.processor import languages, sandbox

        install = Path(tempfile.mkdtemp(prefix="gameproto-install-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, install, True)
        shutil.copy(sandbox.LAUNCHER_PATH, install / "launcher.py")
        shutil.copytree(languages.SDK_DIRECTORY, install / "sdk")
        for path in [install, install / "sdk"]:
            os.chmod(path, 0o755)
        for path in [install / "launcher.py", *(install / "sdk").iterdir()]:
            os.chmod(path, 0o644)
        self.patch(sandbox, "LAUNCHER_PATH", install / "launcher.py")
        self.patch(languages, "SDK_DIRECTORY", install / "sdk")

    def unprivileged(self, **limits: Any) -> tuple[Sandbox, SpawnAs]:
        self.readable_install()
        base = os.path.join(self.base, "unprivileged")
        os.mkdir(base, 0o711)
        os.chown(base, unprivileged_uid(), unprivileged_uid())
        config = SandboxConfig(
            run_base=base,
            interpreters={"python": interpreter("python")},
            privileged=False,
            launcher_python=SYSTEM_PYTHON,  # root's pyenv is unreadable to other uids
        )
        return Sandbox(config=config, limits=RunLimits(**limits)), SpawnAs(unprivileged_uid())

    async def test_runs_as_server_uid(self) -> None:
        """Without root the program runs with the launcher's (the server's) uid."""
        sandbox, spawner = self.unprivileged()
        real = self.start("python", "import os\nprint(os.getuid())\n", sandbox=sandbox, spawner=spawner)
        result = await self.finish(real)
        self.assertEqual((result.exit_code, real.stdout()), (0, [str(unprivileged_uid())]))
        self.assertEqual(processes_of_uid(unprivileged_uid()), [])

    async def test_stop_kills_descendants(self) -> None:
        """Without a uid to sweep, the launcher kills its descendants, setsid'd ones too."""
        sandbox, spawner = self.unprivileged()
        code = DAEMONIZING_PROGRAM
        real = self.start("python", code, sandbox=sandbox, spawner=spawner)
        await within(real.when_printed("ready"), 10)
        real.run.stop()
        result = await self.finish(real, deadline=1 + 2)
        self.assertTrue(result.stopped)
        self.assertEqual(processes_of_uid(unprivileged_uid()), [])

    async def test_fork_bomb(self) -> None:
        """Without root, RLIMIT_NPROC is the uid's count plus 64 and the cap still ends the run."""
        sandbox, spawner = self.unprivileged()
        code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
        result = await self.finish(self.start("python", code, sandbox=sandbox, spawner=spawner))
        self.assertEqual(result.limit, Limit.PROCESSES)
        self.assertEqual(processes_of_uid(unprivileged_uid()), [])
