"""
The processor end to end: a real C{twistd -n gameproto} process (its own run directory and,
as root, this test process's own block of run uids), the Python client of
L{gameproto.client.processor}, and real programs in each of the four languages.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from gameproto.client import arena as arena_client
from gameproto.client import processor as client
from tests.processor_node import ProcessorEndToEndTestCase
from tests.processor_support import (
    HELLO,
    RUNTIME_ERROR,
    RUNTIME_ERROR_LINES,
    SYNTAX_ERROR,
    SYNTAX_ERROR_LINE,
    THOUSAND_CALLS,
    interpreter,
    play_arena_program,
    processes_of_uid,
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

#: Says it waits, then blocks in one engine call until the client answers it.
WAIT_FOR_CLIENT = (
    "from gameproto_sdk import send\n"
    "print('waiting', flush=True)\n"
    "print('answered', send({'wait': True})['go'])\n"
)


def alive(pid: int) -> bool:
    """Whether C{pid} is a live process (a zombie is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


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
        plus a 2 s margin, then the process table is checked for every run uid (the pids
        the program prints are those of its own PID namespace).
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
        self.assertEqual(len(set(pids)), 3)
        running = [pid for uid in run_uids() for pid in processes_of_uid(uid) if alive(pid)]
        self.assertGreaterEqual(len(running), 3)
        ended = self.when_logged("of ann ended:")
        socket.dropConnection(abort=True)
        await ended.addTimeout(KILL_DEADLINE + MARGIN, reactor)
        self.assertEqual([pid for pid in running if alive(pid)], [])
        self.assertEqual([uid for uid in run_uids() if processes_of_uid(uid)], [])
        outcome = await finished
        self.assertIsNone(outcome.end)

    async def test_arena_engine(self) -> None:
        """
        An engine "arena" program registers in the default arena, waits for the
        controller's start, moves and shoots: it gets the arena's replies, the controller's
        snapshots show the program's player at its moved coordinates and then its shot, and
        nothing of the arena is relayed to the processor client.
        """

        async def controller() -> arena_client.ArenaClient:
            socket = await arena_client.connect(
                reactor, self.node.ws_url(""), "default", role="control", token=self.token,
            )
            self.sockets.append(socket)
            return socket

        await play_arena_program(self, await self.connect(), "default", controller)


class LimitsEndToEndTests(ProcessorEndToEndTestCase):
    """A server that runs at most two programs at once."""

    node_options = ("--processor-max-runs", "2")

    def setUp(self) -> Deferred[None]:
        interpreter("python")
        return super().setUp()

    async def waiting_run(self, token: str, answer: Deferred[Any]) -> tuple[
            client.ProcessorClient, Deferred[client.RunOutcome]]:
        """
        A run of L{WAIT_FOR_CLIENT} by C{token}'s user, once it says it waits: its only
        engine call is answered with C{answer}'s result, when C{answer} fires.
        """
        waiting: Deferred[None] = Deferred()

        def on_command(command: Any) -> Deferred[Any]:
            reply: Deferred[Any] = Deferred()

            def give(value: Any) -> Any:
                reply.callback(value)
                return value  # unchanged for the other runs waiting on it

            answer.addCallback(give)
            return reply

        def on_output(stream: str, text: str) -> None:
            if text == "waiting":
                waiting.callback(None)

        socket = await self.connect(token, on_command=on_command,
                                    on_output=on_output)
        outcome = Deferred.fromCoroutine(socket.run("python", WAIT_FOR_CLIENT))
        await waiting.addTimeout(10, reactor)
        return socket, outcome

    async def test_busy(self) -> None:
        """
        Two runs going on, a third user's code gets SERVER_ERROR "server busy" and close
        4029 (its context was accepted); the two runs finish normally with their end; then
        the third user's program runs.
        """
        answer: Deferred[Any] = Deferred()
        bob, carol = await self.sign_up("bob"), await self.sign_up("carol")
        _, ann_outcome = await self.waiting_run(self.token, answer)
        _, bob_outcome = await self.waiting_run(bob, answer)
        refused = await (await self.connect(carol)).run("python", HELLO["python"])
        self.assertEqual([m["type"] for m in refused.messages], ["ready", "ready", "error"])
        [error] = refused.errors()
        self.assertBusy(error, "server busy")
        self.assertEqual(refused.close_code, 4029)

        self.assertFalse(ann_outcome.called or bob_outcome.called)
        answer.callback({"go": "yes"})
        for outcome in (await ann_outcome, await bob_outcome):
            self.assertEqual(outcome.errors(), [])
            self.assertEqual(outcome.stdout, ["waiting", "answered yes"])
            self.assertEqual([c["message"] for c in outcome.commands], [{"wait": True}])
            self.assertEqual(outcome.end["exit_code"], 0)
            self.assertEqual(outcome.close_code, 1000)

        outcome = await (await self.connect(carol)).run("python", HELLO["python"])
        self.assertEqual((outcome.stdout, outcome.end["exit_code"]), (["hello, world"], 0))

    async def test_one_run_per_user(self) -> None:
        """A user's second program while the first runs: "server busy (one run per user)"."""
        answer: Deferred[Any] = Deferred()
        _, first = await self.waiting_run(self.token, answer)
        refused = await (await self.connect()).run("python", HELLO["python"])
        [error] = refused.errors()
        self.assertBusy(error, "server busy (one run per user)")
        self.assertEqual(refused.close_code, 4029)
        answer.callback({"go": 1})
        self.assertEqual((await first).stdout, ["waiting", "answered 1"])


class RefusalEndToEndTests(ProcessorEndToEndTestCase):
    def setUp(self) -> Deferred[None]:
        interpreter("python")
        return super().setUp()

    async def test_code_too_large(self) -> None:
        """
        Code over 256 KiB, one frame well under the endpoint's message limit: SERVER_ERROR
        "code too large (max 256 KiB)" and no run; code of exactly 256 KiB runs.
        """
        socket = await self.connect()
        refused = await socket.run("python", "#" * (256 * 1024 + 1))
        self.assertEqual([(m["code"], m["message"]) for m in refused.errors()],
                         [("SERVER_ERROR", "code too large (max 256 KiB)")])
        self.assertNotIn("started", [m["type"] for m in refused.messages])
        self.assertEqual(refused.close_code, 1000)  # closed by the client, not the server
        code = "print('ok')\n" + "#" * (256 * 1024 - 12)
        self.assertEqual(len(code.encode()), 256 * 1024)
        outcome = await (await self.connect()).run("python", code)
        self.assertEqual((outcome.stdout, outcome.end["exit_code"]), (["ok"], 0))

    async def test_unauthenticated(self) -> None:
        """Without a token: SERVER_ERROR "unauthenticated" instead of ready, then close 4001."""
        outcome = await (await self.connect(None)).run("python", HELLO["python"])
        self.assertEqual([(m["type"], m["code"], m["message"]) for m in outcome.messages],
                         [("error", "SERVER_ERROR", "unauthenticated")])
        self.assertEqual(outcome.close_code, 4001)
