"""
The processor's WebSocket endpoint in memory: a Site on a Clock with the processor
resource mounted, the frames of gameproto.testing's WebSocketClient, and a fake processor whose runs the tests
start, feed and end by hand.  No process, no network, no global reactor.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import txaio
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import web, wire
from gameproto.arena.config import ArenaConfig, SpawnPoint
from gameproto.arena.service import ArenaService
from gameproto.processor.protocol import processor_resource
from gameproto.processor.admission import LanguageUnavailable, RunLimiter, ServerBusy
from gameproto.processor.runner import SpawnError
from gameproto.processor.limits import Limit, RunLimits
from gameproto.processor.service import ProcessorService
from gameproto.testing import BINARY, CLOSE, TEXT, WebSocketClient
from tests.processor_fakes import FakeRun, FakeRuns

START = 1_800_000_000.0
GOOD = "Token good"
#: The users of the tests, by their Authorization header.
USERS = {GOOD: "Ann", "Token bob": "Bob", "Token carol": "Carol"}
LANGUAGES = ("python", "javascript", "ruby", "php")


def authenticate(request: Any, cookies_allowed: bool) -> Deferred[Any]:
    """The user of L{USERS} named by the header C{Authorization}, nobody otherwise."""
    username = USERS.get(request.headers.get("authorization"))
    return succeed(None if username is None else SimpleNamespace(username=username))


# ---------------------------------------------------------------------------
# base


class ProcessorTestCase(SynchronousTestCase):
    anonymous = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.patch(txaio.config, "loop", self.clock)
        self.runs = FakeRuns()
        self.arenas = ArenaService(self.clock, default_config=ArenaConfig(
            spawn_points=(SpawnPoint(100, 100, 0), SpawnPoint(300, 100, 0))))
        self.arenas.startService()
        self.addCleanup(self.arenas.stopService)
        context = wire.WireContext(
            clock=self.clock,
            connections=wire.Connections(wire.ServerLimits(), self.clock),
            origins=wire.OriginPolicy(),
            authenticate=authenticate,
        )
        root = web.Tree()
        resource = processor_resource(
            self.runs,
            wire.EndpointLimits(max_message_size=wire.MiB, messages_per_second=None),
            context,
            arenas=self.arenas,
            anonymous=self.anonymous,
        )
        web.mount(root, "/ws/processor", resource)
        self.site = web.make_site(root, self.clock)

    def connect(self, token: str | None = GOOD) -> WebSocketClient:
        headers = {"Authorization": token} if token else {}
        ws = WebSocketClient(self.site, "/ws/processor/", headers)
        self.assertIn(b"101", ws.handshake)
        return ws

    def received(self, ws: WebSocketClient) -> tuple[list[Any], list[tuple[int, str]]]:
        """The JSON messages and the closes the server sent since the last call."""
        frames = ws.frames()
        messages = [wire.decode(p) for op, p in frames if op == TEXT]
        closes = [(int.from_bytes(p[:2], 'big'), p[2:].decode()) for op, p in frames if op == CLOSE]
        return messages, closes

    def messages(self, ws: WebSocketClient) -> list[Any]:
        messages, closes = self.received(ws)
        self.assertEqual(closes, [])
        return messages

    def time(self) -> str:
        return str(int(self.clock.seconds() * 1000))

    def error(self, message: str, code: str = "SERVER_ERROR", **fields: Any) -> dict[str, Any]:
        return {"type": "error", "code": code, "message": message, **fields, "time": self.time()}

    def ready(self, ws: WebSocketClient, language: str = "python", **context: Any) -> None:
        """Through the context: the server now waits for the code."""
        self.assertEqual(self.messages(ws), [
            {"type": "ready", "message": "send context", "time": self.time()}])
        ws.send_json({"type": "context", "language": language, **context})
        self.assertEqual(self.messages(ws), [
            {"type": "ready", "message": "send code", "time": self.time()}])

    def running(self, ws: WebSocketClient, code: str = "print(1)\n", **context: Any) -> FakeRun:
        """Through the start of the run."""
        self.ready(ws, **context)
        ws.send(code.encode())
        run = self.runs.run
        run.started.callback(None)
        self.assertEqual(self.messages(ws), [{"type": "started", "message": "", "time": self.time()}])
        return run


# ---------------------------------------------------------------------------
# the lifecycle


class LifecycleTests(ProcessorTestCase):
    def test_whole_run(self) -> None:
        """
        ready "send context", context, ready "send code", the raw code, started, output
        lines, end with exit code, signal and duration, then close 1000; every message has
        type, message and time (epoch ms as a string).
        """
        self.clock.advance(1.5)
        ws = self.connect()
        self.ready(ws, "ruby")
        code = 'puts "hello"\nputs "{not json"\n'
        ws.send(code.encode())
        run = self.runs.run
        self.assertEqual((run.user, run.language, run.code), ("ann", "ruby", code))
        self.assertEqual(self.messages(ws), [])
        run.started.callback(None)
        run.on_output("stdout", "hello")
        run.on_output("stderr", "warning")
        run.end(0)
        messages, closes = self.received(ws)
        now = self.time()
        self.assertEqual(messages, [
            {"type": "started", "message": "", "time": now},
            {"type": "output", "message": "hello", "stream": "stdout", "time": now},
            {"type": "output", "message": "warning", "stream": "stderr", "time": now},
            {"type": "end", "message": "exited with code 0", "exit_code": 0, "signal": None,
             "duration_ms": 42, "time": now},
        ])
        self.assertEqual(closes, [(1000, "run ended")])

    def test_interpreter_error_then_end(self) -> None:
        """A failed program: INTERPRETER_ERROR with the runner's message, then end, then 1000."""
        ws = self.connect()
        run = self.running(ws)
        run.end(None, "SIGKILL", interpreter_error="time limit exceeded (10 s)", limit=Limit.TIME)
        messages, closes = self.received(ws)
        self.assertEqual(messages, [
            self.error("time limit exceeded (10 s)", "INTERPRETER_ERROR"),
            {"type": "end", "message": "killed by SIGKILL", "exit_code": None,
             "signal": "SIGKILL", "duration_ms": 42, "time": self.time()},
        ])
        self.assertEqual(closes, [(1000, "run ended")])

    def test_output_before_started(self) -> None:
        """Lines read before the launcher reports the start follow the started message."""
        ws = self.connect()
        self.ready(ws)
        ws.send(b"print(1)")
        run = self.runs.run
        run.on_output("stdout", "early")
        self.assertEqual(self.messages(ws), [])
        run.started.callback(None)
        self.assertEqual([m["type"] for m in self.messages(ws)], ["started", "output"])

    def test_code_that_looks_like_json(self) -> None:
        """While code is awaited, any text that is not a typed JSON object is the code."""
        for code in ("[1, 2]", '{"no": "type"}', "42", "x = {"):
            ws = self.connect()
            self.ready(ws)
            ws.send(code.encode())
            self.assertEqual(self.runs.run.code, code)
            self.runs.run.stop()

    def test_stop(self) -> None:
        """A stop message stops the run; its end follows as usual."""
        ws = self.connect()
        run = self.running(ws)
        ws.send_json({"type": "stop"})
        self.assertEqual(run.stops, 1)
        run.end(None, "SIGTERM", stopped=True)
        messages, closes = self.received(ws)
        self.assertEqual([m["type"] for m in messages], ["end"])
        self.assertEqual(closes, [(1000, "run ended")])

    def test_stop_while_starting(self) -> None:
        """A stop between the code and the start reaches the run too."""
        ws = self.connect()
        self.ready(ws)
        ws.send(b"print(1)")
        ws.send_json({"type": "stop"})
        self.assertEqual(self.runs.run.stops, 1)
        self.assertEqual(self.messages(ws), [])

    def test_disconnect_mid_run(self) -> None:
        """A client gone mid-run stops the run; what the run says afterwards goes nowhere."""
        ws = self.connect()
        run = self.running(ws)
        ws.transport.loseConnection()
        ws.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(run.stops, 1)
        run.on_output("stdout", "late")
        run.end(None, "SIGTERM", stopped=True)
        self.assertEqual(self.received(ws), ([], []))

    def test_disconnect_while_starting(self) -> None:
        """A client gone before the start stops the run; its start is then ignored."""
        ws = self.connect()
        self.ready(ws)
        ws.send(b"print(1)")
        ws.protocol.connectionLost(Failure(ConnectionDone()))
        run = self.runs.run
        self.assertEqual(run.stops, 1)
        run.started.callback(None)
        run.end(None, "SIGTERM", stopped=True)
        self.assertEqual(self.received(ws), ([], []))


# ---------------------------------------------------------------------------
# errors


class ErrorTests(ProcessorTestCase):
    def test_code_before_context(self) -> None:
        """Code before the context is a SERVER_ERROR; the context is still awaited."""
        ws = self.connect()
        self.messages(ws)
        ws.send(b"print('hello')")
        self.assertEqual(self.messages(ws), [self.error("invalid JSON")])
        self.assertEqual(self.runs.runs, [])
        ws.send_json({"type": "context", "language": "python"})
        self.assertEqual(self.messages(ws)[0]["message"], "send code")

    def test_context_twice(self) -> None:
        """A second context, valid or not, is "context already received"; the code still runs."""
        ws = self.connect()
        self.ready(ws)
        ws.send_json({"type": "context", "language": "php"})
        ws.send_json({"type": "context", "language": "cobol"})
        self.assertEqual(self.messages(ws), [self.error("context already received")] * 2)
        ws.send(b"print(1)")
        self.assertEqual(self.runs.run.language, "python")

    def test_bad_contexts(self) -> None:
        """Each bad context gets its SERVER_ERROR and the context is still awaited."""
        ws = self.connect()
        self.messages(ws)
        self.runs.disabled["php"] = "not installed"
        cases = [
            ({"type": "context", "language": "cobol"}, "unknown language: cobol"),
            ({"type": "context"}, "context: language must be one of python, javascript, ruby, php"),
            ({"type": "context", "language": 3}, "context: language must be one of python, javascript, ruby, php"),
            ({"type": "context", "language": "php"}, "language php is not available"),
            ({"type": "context", "language": "python", "engine": "remote"},
             'context: engine must be "client", "arena" or "match"'),
            ({"type": "context", "language": "python", "engine": "arena"},
             "context: the arena engine needs an arena id"),
            ({"type": "context", "language": "python", "engine": "arena", "arena": "nope"},
             "no such arena: nope"),
        ]
        for context, reason in cases:
            ws.send_json(context)
            self.assertEqual(self.messages(ws), [self.error(reason)], context)
        ws.send_json({"type": "context", "language": "javascript", "engine": "client"})
        self.assertEqual(self.messages(ws)[0]["message"], "send code")

    def test_unknown_language(self) -> None:
        """
        An unknown language is a SERVER_ERROR naming it (cut to 50 characters); no run, and
        the context is still awaited.
        """
        ws = self.connect()
        self.messages(ws)
        ws.send_json({"type": "context", "language": "brainfuck"})
        ws.send_json({"type": "context", "language": "x" * 80})
        self.assertEqual(self.messages(ws), [
            self.error("unknown language: brainfuck"),
            self.error("unknown language: " + "x" * 50),
        ])
        ws.send(b"print(1)")
        self.assertEqual(self.messages(ws), [self.error("invalid JSON")])
        self.assertEqual(self.runs.runs, [])
        ws.send_json({"type": "context", "language": "php"})
        self.assertEqual(self.messages(ws)[0]["message"], "send code")

    def test_invalid_json(self) -> None:
        """Invalid JSON while a run goes on: SERVER_ERROR, the connection and run go on."""
        ws = self.connect()
        run = self.running(ws)
        ws.send(b"{not json")
        ws.send(b"[1]")
        ws.send(b'{"type": 1}')
        self.assertEqual(self.messages(ws), [
            self.error("invalid JSON"),
            self.error("a frame must be one JSON object"),
            self.error("a message needs a string type"),
        ])
        self.assertEqual(run.stops, 0)
        self.assertFalse(ws.disconnected)

    def test_binary_frame(self) -> None:
        """A binary frame is a SERVER_ERROR in any state, even instead of the code."""
        ws = self.connect()
        self.ready(ws)
        ws.send(b"print(1)", BINARY)
        self.assertEqual(self.messages(ws), [self.error("binary frames are not accepted")])
        self.assertEqual(self.runs.runs, [])
        ws.send(b"print(1)")
        self.runs.run.started.callback(None)
        self.messages(ws)
        ws.send(b"\x00", BINARY)
        self.assertEqual(self.messages(ws), [self.error("binary frames are not accepted")])

    def test_out_of_order(self) -> None:
        """stop or result before a run, and unknown types: SERVER_ERROR, state kept."""
        ws = self.connect()
        self.messages(ws)
        ws.send_json({"type": "stop"})
        ws.send_json({"type": "result", "id": 1, "message": None})
        ws.send_json({"type": "launch"})
        self.assertEqual(self.messages(ws), [
            self.error("unexpected message now: stop"),
            self.error("unexpected message now: result"),
            self.error("unknown message type: launch"),
        ])
        self.ready_after_errors(ws)

    def ready_after_errors(self, ws: WebSocketClient) -> None:
        ws.send_json({"type": "context", "language": "python"})
        self.assertEqual(self.messages(ws)[0]["message"], "send code")

    def test_code_while_running(self) -> None:
        """Text that is not a message once the code is in: SERVER_ERROR, no second run."""
        ws = self.connect()
        self.running(ws)
        ws.send(b"print(2)")
        self.assertEqual(self.messages(ws), [self.error("invalid JSON")])
        self.assertEqual(len(self.runs.runs), 1)

    def test_code_too_large(self) -> None:
        """
        A code frame over 256 KiB is a SERVER_ERROR "code too large (max 256 KiB)" and
        starts nothing; the code is awaited again, and code of exactly 256 KiB runs.
        """
        ws = self.connect()
        self.ready(ws)
        ws.send(b"#" * (256 * 1024 + 1))
        self.assertEqual(self.messages(ws), [self.error("code too large (max 256 KiB)")])
        self.assertEqual(self.runs.runs, [])
        self.assertFalse(ws.disconnected)
        # The limit counts UTF-8 bytes, not characters: 2 bytes each here.
        ws.send(("é" * (128 * 1024) + "#").encode())
        self.assertEqual(self.messages(ws), [self.error("code too large (max 256 KiB)")])
        self.assertEqual(self.runs.runs, [])
        code = "print(1)\n" + "#" * (256 * 1024 - 9)
        ws.send(code.encode())
        self.assertEqual(self.runs.run.code, code)
        self.runs.run.started.callback(None)
        self.assertEqual([m["type"] for m in self.messages(ws)], ["started"])

    def test_language_turned_off(self) -> None:
        """A language refused when the code arrives is a SERVER_ERROR; the code is awaited again."""
        ws = self.connect()
        self.ready(ws)
        self.runs.refusal = LanguageUnavailable("language python is not available")
        ws.send(b"print(1)")
        self.assertEqual(self.messages(ws), [self.error("language python is not available")])
        self.assertFalse(ws.disconnected)

    def test_busy(self) -> None:
        """
        Server busy when the code arrives: SERVER_ERROR saying when to try again (whole
        seconds, rounded up, also as retry_after_ms), then close 4029.
        """
        ws = self.connect()
        self.ready(ws)
        self.runs.refusal = ServerBusy("server busy (one run per user)", 7.2)
        ws.send(b"print(1)")
        messages, closes = self.received(ws)
        self.assertEqual(messages, [self.error("server busy (one run per user); try again in 8 s",
                                               retry_after_ms=8000)])
        self.assertEqual(closes, [(4029, "server busy")])

    def test_more_runs_than_the_limit(self) -> None:
        """
        With two runs allowed at once, a third user's code gets SERVER_ERROR "server busy"
        and close 4029, after its context was accepted; the two runs see nothing of it and
        finish normally (output, end, close 1000); once they are over, a run is admitted.
        """
        self.runs.limiter = RunLimiter(2, None, self.clock, worst_case=75)
        ann, bob = self.connect(GOOD), self.connect("Token bob")
        ann_run, bob_run = self.running(ann), self.running(bob)
        self.clock.advance(10)
        carol = self.connect("Token carol")
        self.ready(carol)
        carol.send(b"print(3)")
        messages, closes = self.received(carol)
        # The running ones must be over 75 s after they started, 65 s from now.
        self.assertEqual(messages, [self.error("server busy; try again in 65 s", retry_after_ms=65000)])
        self.assertEqual(closes, [(4029, "server busy")])
        self.assertEqual(self.runs.runs, [ann_run, bob_run])
        for ws, run, name in ((ann, ann_run, "ann"), (bob, bob_run, "bob")):
            self.assertEqual(self.messages(ws), [])
            self.assertEqual((run.user, run.stops), (name, 0))
            run.on_output("stdout", f"still here {name}")
            run.end(0)
            messages, closes = self.received(ws)
            self.assertEqual(messages, [
                {"type": "output", "message": f"still here {name}", "stream": "stdout",
                 "time": self.time()},
                {"type": "end", "message": "exited with code 0", "exit_code": 0, "signal": None,
                 "duration_ms": 42, "time": self.time()},
            ])
            self.assertEqual(closes, [(1000, "run ended")])
        again = self.connect("Token carol")
        self.assertEqual(self.running(again).user, "carol")

    def test_second_run_of_a_user(self) -> None:
        """
        One run per user: the same user's second code is "server busy (one run per user)"
        even with free slots, and the first run goes on.
        """
        self.runs.limiter = RunLimiter(8, None, self.clock, worst_case=75)
        first = self.connect()
        run = self.running(first)
        second = self.connect()
        self.ready(second)
        second.send(b"print(2)")
        messages, closes = self.received(second)
        self.assertEqual(messages, [self.error("server busy (one run per user); try again in 75 s",
                                               retry_after_ms=75000)])
        self.assertEqual(closes, [(4029, "server busy")])
        self.assertEqual((self.runs.runs, run.stops), ([run], 0))
        run.end(0)
        self.assertEqual([m["type"] for m in self.messages_then_close(first)], ["end"])

    def messages_then_close(self, ws: WebSocketClient) -> list[Any]:
        """The messages the server sent, which must end with its close 1000."""
        messages, closes = self.received(ws)
        self.assertEqual(closes, [(1000, "run ended")])
        return messages

    def test_spawn_failure(self) -> None:
        """A run that cannot start: SERVER_ERROR, close 4011, and its end sends nothing."""
        ws = self.connect()
        self.ready(ws)
        ws.send(b"print(1)")
        run = self.runs.run
        run.started.errback(SpawnError("cannot spawn the launcher"))
        run.end(None, None, spawn_error="cannot spawn the launcher")
        messages, closes = self.received(ws)
        self.assertEqual(messages, [self.error("cannot start the program")])
        self.assertEqual(closes, [(4011, "cannot start the program")])

    def test_processor_bug(self) -> None:
        """An unexpected failure to start a run is logged: SERVER_ERROR and close 4011."""
        ws = self.connect()
        self.ready(ws)
        self.runs.refusal = RuntimeError("a bug")
        ws.send(b"print(1)")
        messages, closes = self.received(ws)
        self.assertEqual(messages, [self.error("cannot start the program")])
        self.assertEqual(closes, [(4011, "cannot start the program")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        ws.protocol.connectionLost(Failure(ConnectionDone()))

    def test_unauthenticated(self) -> None:
        """Without a valid token: SERVER_ERROR "unauthenticated" instead of ready, close 4001."""
        for token in (None, "Token bad"):
            ws = self.connect(token)
            messages, closes = self.received(ws)
            self.assertEqual(messages, [self.error("unauthenticated")])
            self.assertEqual(closes, [(4001, "unauthenticated")])
            ws.send_json({"type": "context", "language": "python"})
            self.assertEqual(self.received(ws), ([], []))


class AnonymousTests(ProcessorTestCase):
    anonymous = True

    def test_anonymous(self) -> None:
        """With --processor-anonymous anyone runs, one run per client address."""
        ws = self.connect(None)
        self.running(ws)
        self.assertEqual(self.runs.run.user, "anonymous@127.0.0.1")  # the fake connection's address

    def test_authenticated_still_named(self) -> None:
        """A token still names the user (case folded: one run per user whatever the case)."""
        ws = self.connect()
        self.running(ws)
        self.assertEqual(self.runs.run.user, "ann")


# ---------------------------------------------------------------------------
# the client engine


class ClientEngineTests(ProcessorTestCase):
    def test_command_and_result(self) -> None:
        """Each engine call is a command with its id; the result with that id is the reply."""
        ws = self.connect()
        run = self.running(ws)
        self.assertTrue(run.output_before_calls)  # the client sees both, in order
        reply = run.engine({"move": [1, 2]})
        self.assertEqual(self.messages(ws), [
            {"type": "command", "message": {"move": [1, 2]}, "id": 1, "time": self.time()}])
        self.assertNoResult(reply)
        ws.send_json({"type": "result", "id": 1, "message": {"ok": True}})
        self.assertEqual(self.successResultOf(reply), {"ok": True})
        self.assertEqual(self.messages(ws), [])

    def test_any_json_command(self) -> None:
        """A command's message is any JSON value, passed unchanged."""
        ws = self.connect()
        run = self.running(ws)
        for value in (None, 3, "go", [1, {"a": None}]):
            reply = run.engine(value)
            [command] = self.messages(ws)
            self.assertEqual(command["message"], value)
            ws.send_json({"type": "result", "id": command["id"], "message": value})
            self.assertEqual(self.successResultOf(reply), value)

    def test_wrong_id(self) -> None:
        """A result with a wrong id is a SERVER_ERROR and is ignored; the right one still works."""
        ws = self.connect()
        run = self.running(ws)
        reply = run.engine("ping")
        self.messages(ws)
        ws.send_json({"type": "result", "id": 7, "message": "pong"})
        ws.send_json({"type": "result", "id": "1", "message": "pong"})
        self.assertEqual(self.messages(ws), [
            self.error("no command with id 7 is waiting for a result"),
            self.error("result: id must be an integer"),
        ])
        self.assertNoResult(reply)
        ws.send_json({"type": "result", "id": 1, "message": "pong"})
        self.assertEqual(self.successResultOf(reply), "pong")
        ws.send_json({"type": "result", "id": 1, "message": "again"})
        self.assertEqual(self.messages(ws), [self.error("no command with id 1 is waiting for a result")])

    def test_late_result(self) -> None:
        """A call the runner gave up on (timeout) is forgotten: its late result is a wrong id."""
        ws = self.connect()
        run = self.running(ws)
        reply = run.engine("slow")
        self.messages(ws)
        reply.cancel()
        self.failureResultOf(reply)
        ws.send_json({"type": "result", "id": 1, "message": "too late"})
        self.assertEqual(self.messages(ws), [self.error("no command with id 1 is waiting for a result")])


# ---------------------------------------------------------------------------
# the arena engine


class ArenaEngineTests(ProcessorTestCase):
    def answer(self, reply: Any) -> Any:
        """An engine's reply: given at once, or by a Deferred that has fired."""
        return self.successResultOf(reply) if isinstance(reply, Deferred) else reply

    def arena_run(self) -> tuple[WebSocketClient, FakeRun]:
        ws = self.connect()
        run = self.running(ws, engine="arena", arena="default")
        self.assertFalse(run.output_before_calls)  # no one sees the arena engine's calls
        return ws, run

    def tick(self) -> None:
        self.clock.advance(0.02)

    def test_register_and_move(self) -> None:
        """
        The program is a player of the arena: its commands get the arena's replies, what
        else the arena says is kept as notifications, nothing is relayed to the client.
        """
        ws, run = self.arena_run()
        default = self.arenas.here("default")
        assert default is not None
        self.assertEqual(default.connections, 1)
        reply = run.engine({"type": "RegisterPlayerCommand"})
        self.assertNoResult(reply)
        self.tick()
        ack = self.answer(reply)
        self.assertEqual(ack["type"], "RegisterPlayerAck")
        self.assertEqual((ack["data"]["x"], ack["data"]["y"]), (100, 100))
        default.control(None, _start_game())  # as the controller would
        reply = run.engine({"type": "WaitNotification", "timeout_ms": 1000})
        self.assertEqual(self.answer(reply), {"type": "StartGameOrder", "data": {}})
        reply = run.engine({"type": "MovePlayerCommand", "data": [{"move": "forward"}]})
        for _ in range(2):
            self.tick()
        self.assertEqual(self.answer(reply),
                         {"type": "MovePlayerAck", "data": {
                             "x": 102.0, "y": 100.0, "rotation": 0,
                             "shooting": {"tokens": 40, "cost": 6}}})
        notifications = self.answer(run.engine({"type": "GetNotifications"}))
        self.assertTrue(notifications)
        self.assertEqual({n["type"] for n in notifications}, {"RadarScanNotification"})
        self.assertEqual(self.answer(run.engine({"type": "GetNotifications"})), [])
        self.assertEqual(self.messages(ws), [])
        run.end(0)
        self.assertEqual(default.connections, 0)

    def test_invalid_commands(self) -> None:
        """A malformed command gets the arena's InvalidCommandError, as a player socket would."""
        ws, run = self.arena_run()
        reply = self.answer(run.engine({"type": "Fly"}))
        self.assertEqual(reply, {"type": "InvalidCommandError",
                                 "data": {"reason": "unknown command type 'Fly'"}})
        reply = self.answer(run.engine({"type": "StartGameCommand"}))
        self.assertEqual(reply["data"]["reason"], "only the controller can start the game")
        bad = self.answer(run.engine({"type": "WaitNotification", "timeout_ms": 60000}))
        self.assertEqual(bad, {"error": "WaitNotification needs timeout_ms from 0 to 9000"})

    def test_wait_times_out(self) -> None:
        """WaitNotification with nothing to come answers null after its timeout."""
        self.arenas.here("default").stop()  # type: ignore[union-attr]
        ws, run = self.arena_run()
        reply = run.engine({"type": "WaitNotification", "timeout_ms": 500})
        self.clock.advance(0.499)
        self.assertNoResult(reply)
        self.clock.advance(0.001)
        self.assertIsNone(self.answer(reply))

    def test_notifications_bounded(self) -> None:
        """At most 256 notifications per call, oldest first; at most 1,024 are kept."""
        ws, run = self.arena_run()
        registered = run.engine({"type": "RegisterPlayerCommand"})
        self.tick()
        self.answer(registered)
        self.arenas.here("default").control(None, _start_game())  # type: ignore[union-attr]
        for _ in range(1024 + 10):
            self.tick()
        first = self.answer(run.engine({"type": "GetNotifications"}))
        self.assertEqual(len(first), 256)
        total = len(first)
        while batch := self.answer(run.engine({"type": "GetNotifications"})):
            total += len(batch)
        self.assertEqual(total, 1024)

    def test_arena_deleted_before_code(self) -> None:
        """An arena gone between the context and the code: SERVER_ERROR, code awaited again."""
        created = self.arenas.create("ann", ArenaConfig(), "mine")
        self.successResultOf(Deferred.fromCoroutine(created))
        ws = self.connect()
        self.ready(ws, engine="arena", arena="mine")
        self.successResultOf(Deferred.fromCoroutine(self.arenas.delete("mine", "ann")))
        ws.send(b"print(1)")
        self.assertEqual(self.messages(ws), [self.error("no such arena")])
        self.assertEqual(self.runs.runs, [])

    def test_arena_deleted_mid_run(self) -> None:
        """An arena deleted mid-run answers the program's calls with an error; the run goes on."""
        self.successResultOf(Deferred.fromCoroutine(self.arenas.create("ann", ArenaConfig(), "mine")))
        ws = self.connect()
        run = self.running(ws, engine="arena", arena="mine")
        pending = run.engine({"type": "WaitNotification", "timeout_ms": 5000})
        self.successResultOf(Deferred.fromCoroutine(self.arenas.delete("mine", "ann")))
        self.assertEqual(self.answer(pending), {"error": "arena closed: the arena was deleted"})
        self.assertEqual(self.answer(run.engine({"type": "GetNotifications"})),
                         {"error": "arena closed: the arena was deleted"})
        self.assertEqual(run.stops, 0)


def _start_game() -> Any:
    from gameproto.arena.commands import StartGameCommand

    return StartGameCommand()


# ---------------------------------------------------------------------------
# the service


class ServiceTests(SynchronousTestCase):
    def test_unavailable_on_a_clock(self) -> None:
        """A service on a reactor that cannot spawn processes starts, and refuses every run."""
        service = ProcessorService(Clock(), Clock(), config=None, limits=RunLimits())  # type: ignore[arg-type]
        self.successResultOf(service.startService())
        self.successResultOf(service.ready)
        self.assertEqual(service.language_refusal("python"), "processor unavailable")
        self.assertRaises(LanguageUnavailable, service.start_run, "ann", "python", "", print, print)
        self.successResultOf(service.stopService())

    def test_sandbox_failure(self) -> None:
        """A sandbox that cannot start is logged; the service starts and refuses runs."""
        from twisted.internet.testing import MemoryReactorClock

        def broken(*args: Any) -> Deferred[Any]:
            raise OSError("no such directory")

        reactor = MemoryReactorClock()
        service = ProcessorService(reactor, reactor, None, RunLimits(), start=broken)  # type: ignore[arg-type]
        self.successResultOf(service.startService())
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(service.language_refusal("ruby"), "processor unavailable")
        self.assertEqual(service.status, {"state": "off", "reason": "no such directory"})

    def test_no_isolated_sandbox(self) -> None:
        """
        The isolated sandbox missing (and the weak one not allowed): the processor is off,
        its status (shown in /healthz) says why, and nothing is logged as a crash.
        """
        from twisted.internet.testing import MemoryReactorClock

        from gameproto.processor.sandbox import SandboxError

        def refused(*args: Any) -> Deferred[Any]:
            raise SandboxError("the isolated sandbox cannot run here: no cgroup can be made")

        reactor = MemoryReactorClock()
        service = ProcessorService(reactor, reactor, None, RunLimits(), start=refused)  # type: ignore[arg-type]
        self.assertEqual(service.status, {"state": "starting"})
        self.successResultOf(service.startService())
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(service.status, {
            "state": "off", "reason": "the isolated sandbox cannot run here: no cgroup can be made"})
        self.assertEqual(service.language_refusal("python"), "processor unavailable")

    def test_languages(self) -> None:
        """
        Languages on, off (with the reason hidden from clients) and unknown; two launchers
        are started ahead of the first runs, and ended when the service stops.
        """
        from gameproto.processor.languages import LANGUAGES as ALL
        from gameproto.processor.sandbox import Sandbox, SandboxConfig
        from tests.processor_support import FakeProcessReactor

        reactor = FakeProcessReactor()
        sandbox = Sandbox(SandboxConfig(privileged=False), RunLimits(),
                          languages={"python": ALL["python"]}, disabled={"php": "php missing"})
        service = ProcessorService(reactor, reactor, sandbox.config, RunLimits(),
                                   start=lambda *a: succeed(sandbox))
        self.successResultOf(service.startService())
        self.assertEqual(service.status, {
            "state": "on", "sandbox": "weak", "isolation": None, "languages": ["python"],
            "disabled": {"php": "php missing"}})
        self.assertIsNone(service.language_refusal("python"))
        self.assertEqual(service.language_refusal("php"), "language php is not available")
        self.assertEqual(service.language_refusal("cobol"), "unknown language: cobol")
        spares = reactor.launchers
        for spare in spares:
            self.addCleanup(spare.close)
        self.assertEqual([spare.written for spare in spares], [{}, {}])
        service.stopService()
        self.assertEqual([spare.closed for spare in spares], [[0], [0]])
        self.assertRaises(Exception, service.start_run, "ann", "python", "", print, print)
