"""
Tests for L{gameproto.processor.runner} and L{gameproto.processor.sandbox}.

- Unit tests drive L{Run} with a fake C{spawnProcess} on a L{MemoryReactorClock} (as
  twisted/runner/test/test_procmon.py does): timing, limits, engine calls, results.
- Real programs through the real launcher: tests/test_processor_integration.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gameproto.processor.languages import PYTHON
from gameproto.processor.launchers import LAUNCHER_CHILD_FDS
from gameproto.processor.admission import (
    CodeTooLarge,
    LanguageUnavailable,
    RunLimiter,
    ServerBusy,
    default_max_runs,
)
from gameproto.processor.runner import EngineCallError, Processor, Run, RunResult, SpawnError
from gameproto.processor.limits import Limit, RunLimits
from gameproto.processor.sandbox import Sandbox, SandboxConfig, parse_uid_range
from gameproto.processor.uids import UidPool

from tests.processor_support import FakeLauncher, FakeProcessReactor

# ---------------------------------------------------------------------------
# fakes


@attrs.define
class RecordingSandbox(Sandbox):
    """A sandbox whose server-side sweep is recorded instead of killing anything."""

    swept: list[int | None] = attrs.field(factory=list)

    def sweep(self, uid: int | None) -> bool:
        self.swept.append(uid)
        return True


#: The unit tests' run uid locks: a fresh directory per sandbox, so that no two fake
#: sandboxes (nor a real server on this host) contend for one uid.
_UID_LOCKS = tempfile.TemporaryDirectory(prefix="gameproto-test-uid-locks-")


def fake_sandbox(**limits: Any) -> RecordingSandbox:
    config = SandboxConfig(
        run_base="/nonexistent/runs",
        uids=range(70000, 70008),
        privileged=True,
        uid_locks=tempfile.mkdtemp(dir=_UID_LOCKS.name),
    )
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
        self.addCleanup(lambda: [launcher.close() for launcher in self.reactor.launchers])
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
        self.assertTrue(launcher.args[3].endswith("gameproto/processor/launcher"))
        self.assertEqual(set(launcher.env), {"PATH", "LANG"})
        self.assertEqual(launcher.path, "/")
        # fds 0-5 as pipes, and the control socket (for the uid's lock) as fd 7
        self.assertEqual(set(launcher.childFDs), {0, 1, 2, 3, 4, 5, 7})
        self.assertEqual({fd: launcher.childFDs[fd] for fd in range(6)}, dict(LAUNCHER_CHILD_FDS))

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


class SpareLauncherTests(SynchronousTestCase):
    """One launcher started ahead of its run: the run takes it, the next one starts."""

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.addCleanup(lambda: [launcher.close() for launcher in self.reactor.launchers])
        self.processor = Processor(self.reactor, self.reactor, fake_sandbox(), max_runs=2, spares=1)

    def start(self, user: str = "alice") -> Run:
        return self.processor.start_run(user, "python", "print(1)\n", print, print)

    def test_run_takes_the_spare(self) -> None:
        """
        The spare is started with the processor and waits (nothing written); a run sends
        it the request and the uid's lock, and a new spare starts.
        """
        [spare] = self.reactor.launchers
        self.assertEqual((spare.written, spare.closed), ({}, []))
        run = self.start()
        self.assertEqual(len(self.reactor.launchers), 2)
        self.assertIs(run.transport, spare)
        self.assertEqual(json.loads(spare.written[0].partition(b"\n")[0])["uid"], run.uid)
        self.assertEqual(spare.closed, [0])
        self.assertTrue(spare.lock_received())
        spare.started()
        self.successResultOf(run.started)
        self.assertEqual(self.reactor.launchers[1].written, {})

    def test_dead_spare_is_skipped(self) -> None:
        """A spare that died before its run is not used; the run gets a fresh launcher."""
        [spare] = self.reactor.launchers
        spare.ended()
        run = self.start()
        self.assertIsNot(run.transport, spare)
        self.assertIn(0, run.transport.written)

    def test_stop_all_ends_the_spare(self) -> None:
        """
        At shutdown the waiting spare's request pipe is closed; the shutdown is over once
        the spare has exited.
        """
        [spare] = self.reactor.launchers
        stopped = self.processor.stop_all()
        self.assertEqual(spare.closed, [0])
        self.assertNoResult(stopped)
        spare.ended()
        self.successResultOf(stopped)
        self.assertEqual(len(self.reactor.launchers), 1)


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

    def test_engine_wait_limit(self) -> None:
        """
        Time blocked in engine calls is counted across calls against the engine wait
        limit (a client that never answers cannot hold a run slot until the session
        limit); program time in between is not.
        """
        calls: list[Deferred[Any]] = []
        run, launcher, _ = self.start(
            program_time=100, engine_wait=30, engine_call_timeout=25,
            engine=lambda i, c: remember(calls, Deferred()),
        )
        launcher.started()
        run.childDataReceived(3, b"1\n")
        self.reactor.advance(20)
        calls[0].callback("answered")
        self.reactor.advance(50)  # program time: not engine wait
        run.childDataReceived(3, b"2\n")
        self.reactor.advance(9.5)
        self.assertEqual(launcher.signals, [])
        self.reactor.advance(0.5)
        self.assertEqual(launcher.signals, ["TERM"])
        launcher.exit(None, signal.SIGTERM)
        result = self.result(run)
        self.assertEqual(result.limit, Limit.ENGINE_WAIT)
        self.assertEqual(result.interpreter_error, "engine wait limit exceeded (30 s)")

    def test_memory_and_cpu_of_the_whole_run(self) -> None:
        """The launcher's cgroup verdicts (memory, cpu) are the run's limits."""
        for reason, limit, text in (
            ("memory", Limit.MEMORY, "memory limit exceeded"),
            ("cpu", Limit.CPU, "CPU time limit exceeded (5 s)"),
        ):
            run, launcher, _ = self.start()
            launcher.started()
            launcher.exit(None, signal.SIGKILL, reason=reason)
            result = self.result(run)
            self.assertEqual((result.limit, result.interpreter_error), (limit, text))

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

    def test_stop_before_start(self) -> None:
        """
        A run stopped before its program started: TERM once; the program's start is still
        reported (started fires), but no call is relayed and no program time is spent.
        """
        run, launcher, recorder = self.start(program_time=10)
        run.childDataReceived(3, b"1\n")
        run.stop()
        self.assertEqual(launcher.signals, ["TERM"])
        launcher.started()
        self.successResultOf(run.started)
        self.reactor.advance(20)
        self.assertEqual((recorder.calls, run.program_time(), launcher.signals), ([], 0, ["TERM"]))
        launcher.exit(None, signal.SIGTERM, reason="stop")
        result = self.result(run)
        self.assertTrue(result.stopped)
        self.assertIsNone(result.limit)

    def test_stopped_by_a_started_callback(self) -> None:
        """
        A run stopped from its started callback relays none of the calls read before its
        start.
        """
        run, launcher, recorder = self.start()
        run.childDataReceived(3, b"1\n")
        run.started.addCallback(lambda _: run.stop())
        launcher.started()
        self.assertEqual((recorder.calls, launcher.signals), ([], ["TERM"]))

    def test_after_the_exit_report(self) -> None:
        """
        Once the launcher reported the program's exit, a limit reached changes nothing;
        a stop still TERMs the launcher, once.
        """
        run, launcher, _ = self.start(session_time=30)
        launcher.started()
        launcher.status(event="exit", exit_code=0, signal=None, cpu_seconds=0.01,
                        reason="exit", max_tasks=1, swept=True)
        self.reactor.advance(30)
        self.assertEqual(launcher.signals, [])
        run.stop()
        run.stop()
        self.assertEqual(launcher.signals, ["TERM"])
        launcher.ended()
        result = self.result(run)
        self.assertEqual((result.limit, result.exit_code, result.stopped), (None, 0, True))

    def test_launcher_dies_without_its_report(self) -> None:
        """
        A launcher that ends after the program's start without its exit report swept
        nothing: the server kills what is left of the run uid before the uid is reused.
        """
        run, launcher, _ = self.start()
        launcher.started()
        uid = run.uid
        launcher.ended()
        self.result(run)
        self.assertEqual(self.sandbox.swept, [uid])

    def test_swept_by_the_launcher(self) -> None:
        """A launcher that reported its sweep done leaves the server nothing to kill."""
        run, launcher, _ = self.start()
        launcher.started()
        launcher.exit(exit_code=0)
        self.result(run)
        self.assertEqual(self.sandbox.swept, [])

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
    def pool(self, uids: range) -> UidPool:
        """A pool whose host-wide locks live in a directory of this test's own."""
        return UidPool(uids, self.mktemp())

    def test_limiter(self) -> None:
        """At most max_runs at once, one per user, each with its own uid."""
        pool = self.pool(range(100, 103))
        limiter = RunLimiter(2, pool, Clock())
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

    def test_retry_after(self) -> None:
        """
        A refusal says when to try again: a user's own run, or the first of the running
        runs, must be over its worst case (here 75 s) after it started.
        """
        clock = Clock()
        limiter = RunLimiter(2, None, clock, worst_case=75)
        limiter.acquire("alice")
        clock.advance(20)
        limiter.acquire("bob")
        clock.advance(5)
        self.assertEqual(self.assertRaises(ServerBusy, limiter.acquire, "alice").retry_after, 50)
        self.assertEqual(self.assertRaises(ServerBusy, limiter.acquire, "carol").retry_after, 50)
        self.assertEqual(self.assertRaises(ServerBusy, limiter.acquire, "bob").retry_after, 70)

    def test_runs_per_minute(self) -> None:
        """
        A user may start at most runs_per_minute runs in any 60 s; the refusal says when
        the oldest of them leaves the window.  Other users are not affected.
        """
        clock = Clock()
        limiter = RunLimiter(8, None, clock, runs_per_minute=3)
        for _ in range(3):
            limiter.acquire("alice").release()
            clock.advance(10)
        refused = self.assertRaises(ServerBusy, limiter.acquire, "alice")
        self.assertEqual(str(refused), "server busy (3 runs per minute per user)")
        self.assertEqual(refused.retry_after, 30)  # the first started at 0, it is now 30
        limiter.acquire("bob").release()
        clock.advance(30)
        limiter.acquire("alice").release()
        self.assertRaises(ServerBusy, limiter.acquire, "alice")

    def test_uid_pool(self) -> None:
        """The pool hands out each uid once and refuses double or foreign releases."""
        pool = self.pool(range(5, 7))
        self.assertEqual([pool.acquire(), pool.acquire(), pool.acquire()], [5, 6, None])
        pool.release(5)
        self.assertRaises(ValueError, pool.release, 5)
        self.assertRaises(ValueError, pool.release, 99)

    def test_uid_claimed_across_pools(self) -> None:
        """
        Two pools over one lock directory (two servers on one host) never hand out the
        same uid; a uid comes back once its holder lets go of the lock; the start-up
        sweep claims only the uids nobody holds.
        """
        directory = self.mktemp()
        first, second = UidPool(range(5, 8), directory), UidPool(range(5, 8), directory)
        self.assertEqual([first.acquire(), first.acquire()], [5, 6])
        self.assertEqual([second.acquire(), second.acquire()], [7, None])
        self.assertEqual(second.claim_each_free(), [])
        first.release(5)
        self.assertEqual(second.claim_each_free(), [5])

    def test_launcher_keeps_the_claim(self) -> None:
        """A uid stays claimed while any process (the launcher) holds the lock's fd."""
        directory = self.mktemp()
        pool = UidPool(range(5, 6), directory)
        uid = pool.acquire()
        inherited = os.dup(pool.lock_fd(5))  # what spawnProcess hands the launcher
        pool.release(5)
        other = UidPool(range(5, 6), directory)
        self.assertEqual((uid, other.acquire()), (5, None))
        os.close(inherited)
        self.assertEqual(other.acquire(), 5)

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
                "engine wait limit exceeded (60 s)",
            ],
        )
        self.assertEqual(RunLimits(program_time=2.5).message(Limit.TIME), "time limit exceeded (2.5 s)")
        self.assertRaises(ValueError, RunLimits, cpu_time=0)
