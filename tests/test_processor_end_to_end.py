"""
The processor end to end: a real C{twistd -n gameproto} process (its own run directory and,
as root, this test process's own block of run uids), the Python client of
L{gameproto.client.processor}, and real programs in each of the four languages.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from gameproto.client import arena as arena_client
from gameproto.client import processor as client
from tests.nodes import Node, http_json, stop_on_cleanup
from tests.test_processor_runner import (
    HELLO,
    RUNTIME_ERROR,
    RUNTIME_ERROR_LINES,
    SYNTAX_ERROR,
    SYNTAX_ERROR_LINE,
    THOUSAND_CALLS,
    interpreter,
    run_uids,
)

#: The run's processes must be gone this long after the client leaves (DESIGN.md: the
#: launcher's kill grace plus its sweep), waited for with a 2 s margin.
KILL_DEADLINE = 1.0
MARGIN = 2.0

#: Three processes (one in a session of its own), each printing its pid, then sleeping.
THREE_SLEEPERS = (
    "import os, time\n"
    # One write per line: print() writes its parts separately, and three processes
    # sharing one stdout would interleave them.
    "def say_pid():\n"
    "    os.write(1, f'pid {os.getpid()}\\n'.encode())\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        say_pid()\n"
    "        time.sleep(3600)\n"
    "    say_pid()\n"
    "    time.sleep(3600)\n"
    "say_pid()\n"
    "time.sleep(3600)\n"
)

#: Registers in the default arena, waits for the start, turns to 90 degrees and moves.
ARENA_PROGRAM = (
    "from gameproto_sdk import send\n"
    "ack = send({'type': 'RegisterPlayerCommand'})\n"
    "print('registered', ack['type'], flush=True)\n"
    "for _ in range(10):\n"
    "    note = send({'type': 'WaitNotification', 'timeout_ms': 5000})\n"
    "    if note and note['type'] == 'StartGameOrder':\n"
    "        break\n"
    "moved = send({'type': 'MovePlayerCommand', 'data': [{'rotate': 90}, {'move': 'forward'}]})\n"
    "print('moved', moved['type'], moved['data']['y'] - ack['data']['y'])\n"
)


def alive(pid: int) -> bool:
    """Whether C{pid} is a live process (a zombie is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class ProcessorEndToEndTestCase(TestCase):
    timeout = 120

    def setUp(self) -> Deferred[None]:
        base = tempfile.mkdtemp(prefix="gameproto-e2e-runs-", dir="/tmp")
        self.addCleanup(shutil.rmtree, base, True)
        uids = run_uids()
        self.node = stop_on_cleanup(self, Node(
            "--store", "memory:",
            "--processor-dir", base,
            "--processor-uids", f"{uids[0]}-{uids[-1]}",
        ))
        self.sockets: list[Any] = []
        self.addCleanup(self._close_sockets)
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        await self.node.start()
        status, _ = await http_json("POST", self.node.url("/api/users/sign_up/"),
                                    {"username": "ann", "password": "password1"})
        self.assertEqual(status, 201)
        status, body = await http_json("POST", self.node.url("/api/token/"),
                                       {"username": "ann", "password": "password1"})
        self.assertEqual(status, 200)
        self.token = str(body["token"])

    def _close_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    async def connect(self, **options: Any) -> client.ProcessorClient:
        socket = await client.connect(reactor, self.node.ws_url(""), self.token, **options)
        self.sockets.append(socket)
        return socket

    async def run_code(self, language: str, code: str, **options: Any) -> client.RunOutcome:
        socket = await self.connect(**options)
        return await socket.run(language, code)

    def when_logged(self, text: str) -> Deferred[None]:
        """Fires when the server's log shows C{text} after now."""
        seen: Deferred[None] = Deferred()
        protocol = self.node.process.proto
        original = protocol.outReceived
        offset = len(self.node.output)

        def watch(data: bytes) -> None:
            original(data)
            if not seen.called and text.encode() in self.node.output[offset:]:
                seen.callback(None)

        protocol.outReceived = protocol.errReceived = watch
        return seen


class LanguageMixin:
    """The same end-to-end checks in each language."""

    language: str

    def setUp(self: Any) -> Deferred[None]:
        interpreter(self.language)  # skips (fails under CI) without the interpreter
        return ProcessorEndToEndTestCase.setUp(self)

    async def test_hello_world(self: Any) -> None:
        """Hello world: ready, ready, started, its output line, end with exit code 0, close 1000."""
        outcome = await self.run_code(self.language, HELLO[self.language])
        self.assertEqual([m["type"] for m in outcome.messages],
                         ["ready", "ready", "started", "output", "end"])
        self.assertEqual(outcome.output, [("stdout", "hello, world")])
        end = outcome.end
        self.assertEqual((end["message"], end["exit_code"], end["signal"]),
                         ("exited with code 0", 0, None))
        self.assertIsInstance(end["duration_ms"], int)
        for message in outcome.messages:
            self.assertIsInstance(message["time"], str)
            self.assertIsInstance(message["message"], str)
        self.assertEqual(outcome.close_code, 1000)

    async def test_syntax_error(self: Any) -> None:
        """A syntax error: INTERPRETER_ERROR naming main.<ext> and line 3, then end, close 1000."""
        outcome = await self.run_code(self.language, SYNTAX_ERROR[self.language])
        [error] = outcome.errors()
        self.assertEqual(error["code"], "INTERPRETER_ERROR")
        self.assertIn(SYNTAX_ERROR_LINE[self.language], error["message"])
        self.assertNotIn("/tmp/", error["message"])
        self.assertNotEqual(outcome.end["exit_code"], 0)
        self.assertEqual(outcome.messages[-1]["type"], "end")
        self.assertEqual(outcome.close_code, 1000)

    async def test_runtime_error(self: Any) -> None:
        """A runtime error: the output before it, INTERPRETER_ERROR with the user's lines."""
        outcome = await self.run_code(self.language, RUNTIME_ERROR[self.language])
        self.assertEqual(outcome.stdout, ["before"])
        [error] = outcome.errors("INTERPRETER_ERROR")
        for text in RUNTIME_ERROR_LINES[self.language]:
            self.assertIn(text, error["message"])
        self.assertNotIn("gameproto_sdk", error["message"])
        self.assertNotEqual(outcome.end["exit_code"], 0)

    async def test_thousand_engine_calls(self: Any) -> None:
        """1,000 engine calls relayed through the client, each reply arriving in order."""
        answered: list[Any] = []

        def on_command(command: Any) -> Any:
            answered.append(command)
            return {"n": command["n"], "id": len(answered)}

        outcome = await self.run_code(
            self.language, THOUSAND_CALLS[self.language], on_command=on_command
        )
        self.assertEqual(outcome.errors(), [])
        self.assertEqual(outcome.stdout, ["done 1000"])
        self.assertEqual([c["id"] for c in outcome.commands], list(range(1, 1001)))
        self.assertEqual(answered, [{"n": i} for i in range(1000)])
        self.assertEqual(outcome.end["exit_code"], 0)


class PythonEndToEndTests(LanguageMixin, ProcessorEndToEndTestCase):
    language = "python"


class JavaScriptEndToEndTests(LanguageMixin, ProcessorEndToEndTestCase):
    language = "javascript"


class RubyEndToEndTests(LanguageMixin, ProcessorEndToEndTestCase):
    language = "ruby"


class PHPEndToEndTests(LanguageMixin, ProcessorEndToEndTestCase):
    language = "php"


class RunEndToEndTests(ProcessorEndToEndTestCase):
    def setUp(self) -> Deferred[None]:
        interpreter("python")
        return super().setUp()

    async def test_close_mid_run_kills(self) -> None:
        """
        Closing the WebSocket mid-run kills every process of the run, one that called setsid
        included, within 1 s: the server's "ended" log line is waited for with that deadline
        plus a 2 s margin, then the process table is checked.
        """
        pids: list[int] = []
        three: Deferred[None] = Deferred()

        def on_output(stream: str, text: str) -> None:
            if stream == "stdout" and text.startswith("pid "):
                pids.append(int(text.split()[1]))
                if len(pids) == 3:
                    three.callback(None)

        socket = await self.connect(on_output=on_output)
        finished = Deferred.fromCoroutine(socket.run("python", THREE_SLEEPERS))
        await three.addTimeout(10, reactor)
        self.assertEqual([pid for pid in pids if alive(pid)], pids)
        ended = self.when_logged("of ann ended:")
        socket.dropConnection(abort=True)
        await ended.addTimeout(KILL_DEADLINE + MARGIN, reactor)
        self.assertEqual([pid for pid in pids if alive(pid)], [])
        outcome = await finished
        self.assertIsNone(outcome.end)

    async def test_arena_engine(self) -> None:
        """
        An engine "arena" program registers in the default arena, waits for the
        controller's start, then moves: it gets the arena's replies; nothing of the arena is
        relayed to the processor client.
        """
        controller_started: Deferred[Any] = Deferred()

        async def start_game() -> None:
            controller = await arena_client.connect(
                reactor, self.node.ws_url(""), "default", role="control", token=self.token,
                ignore={"GameSnapshotNotification"},
            )
            self.sockets.append(controller)
            controller_started.callback(await controller.start_game())

        def on_output(stream: str, text: str) -> None:
            if text == "registered RegisterPlayerAck":
                Deferred.fromCoroutine(start_game()).addErrback(controller_started.errback)

        socket = await self.connect(on_output=on_output)
        outcome = await socket.run("python", ARENA_PROGRAM, engine="arena", arena="default")
        self.assertEqual((await controller_started)["type"], "StartGameAck")
        self.assertEqual(outcome.errors(), [])
        self.assertEqual(outcome.stdout, ["registered RegisterPlayerAck", "moved MovePlayerAck 2.0"])
        self.assertEqual(outcome.commands, [])
        self.assertEqual(outcome.end["exit_code"], 0)
