"""
Helpers of the processor's tests: a fake launcher process on a fake reactor (for the unit
tests of runs and services), and for real programs a block of run uids for this test
process alone, the host's isolated sandbox, real runs through the real launcher, and the
programs several test modules run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from gameproto.client import arena as arena_client
from gameproto.client.processor import ProcessorClient
from gameproto.processor.isolation import Isolation, IsolationUnavailable, find_isolation
from gameproto.processor.runner import Processor, Run, RunResult
from gameproto.processor.sandbox import RunLimits, Sandbox, SandboxConfig, prepare_run_base
from tests.support import require_tool, running_in_ci, within

reactor: Any = _global_reactor


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
        # The launcher's end of the control socket, as a real child would inherit it.
        self.control = socket.socket(fileno=os.dup(childFDs[7])) if 7 in childFDs else None

    def lock_received(self) -> bool:
        """Whether the server sent this launcher a descriptor (the run uid's lock)."""
        assert self.control is not None
        self.control.setblocking(False)
        try:
            _, ancillary, _, _ = self.control.recvmsg(1, socket.CMSG_SPACE(4))
        except BlockingIOError:
            return False
        for _, _, data in ancillary:
            os.close(int.from_bytes(data[:4], sys.byteorder))
        return bool(ancillary)

    def close(self) -> None:
        if self.control is not None:
            self.control.close()

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


def require_root() -> None:
    """
    Skip a test that needs root (a uid per run, namespaces, cgroups) when not root; under
    CI=true, fail instead: CI runs the suite as root, and these are the sandbox's tests.
    """
    if os.geteuid() != 0:
        message = "the sandbox tests need root (a uid per run, namespaces, cgroups)"
        if running_in_ci():
            raise AssertionError(message)
        raise SkipTest(message)


_isolation: Isolation | None = None


def host_isolation() -> Isolation:
    """This host's isolated sandbox (found once); its absence fails under CI=true."""
    global _isolation
    if _isolation is None:
        require_root()
        try:
            _isolation = find_isolation(RunLimits().memory)
        except IsolationUnavailable as error:
            message = f"the isolated sandbox is not available here: {error}"
            if running_in_ci():
                raise AssertionError(message) from None
            raise SkipTest(message) from None
    return _isolation


def run_cgroups(name: str) -> list[str]:
    """The cgroup directories of the run called C{name} that still exist."""
    spec = host_isolation().cgroups.spec(name)
    paths: dict[str, str] = spec["paths"]  # type: ignore[assignment]
    return [path for path in paths.values() if os.path.exists(path)]


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
        for start in range(62000, 65000, _UID_BLOCK):
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


def describe_processes(pids: list[int]) -> list[str]:
    """Each of C{pids} as its name, state, parent (and the parent's name) and uids."""
    described = []
    for pid in pids:
        fields = {}
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    name, _, value = line.partition(":")
                    fields[name] = value.strip()
        except OSError:
            continue  # gone in the meantime
        try:
            with open(f"/proc/{fields.get('PPid')}/comm") as comm:
                parent = comm.read().strip()
        except OSError:
            parent = "?"
        described.append(
            f"{pid} {fields.get('Name')} state {fields.get('State')} parent {fields.get('PPid')} "
            f"({parent}) uids {fields.get('Uid')} nspid {fields.get('NSpid')}"
        )
    return described


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

    #: Run in the isolated sandbox (bubblewrap, cgroups, seccomp), as the server does by
    #: default; the weak sandbox's tests set this to False.
    isolated = True

    def setUp(self) -> None:
        require_root()
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
        return Sandbox(
            config=config,
            limits=RunLimits(**limits),
            isolation=host_isolation() if self.isolated else None,
        )

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
            self.assertEqual(describe_processes(processes_of_uid(real.run.uid)), [])
        if self.isolated:
            # The run's cgroup is gone from every hierarchy.
            self.assertEqual(run_cgroups(real.run.name), [])
        else:
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


DAEMONIZING_PROGRAM = (
    "import os, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        print('ready')\n"
    "    time.sleep(3600)\n"
    "time.sleep(3600)\n"
)




# ---------------------------------------------------------------------------
# A program playing in an arena (the arena engine), end to end

#: Registers in its arena, waits for the start, turns to 90 degrees and moves, then
#: shoots; prints each reply's type and figures.
ARENA_PROGRAM = (
    "from gameproto_sdk import send\n"
    "ack = send({'type': 'RegisterPlayerCommand'})\n"
    "data = ack['data']\n"
    "print('registered', ack['type'], data['id'], data['x'], data['y'], flush=True)\n"
    "for _ in range(10):\n"
    "    note = send({'type': 'WaitNotification', 'timeout_ms': 5000})\n"
    "    if note and note['type'] == 'StartGameOrder':\n"
    "        break\n"
    "moved = send({'type': 'MovePlayerCommand', 'data': [{'rotate': 90}, {'move': 'forward'}]})\n"
    "print('moved', moved['type'], moved['data']['x'], moved['data']['y'],\n"
    "      moved['data']['y'] - data['y'])\n"
    "shot = send({'type': 'PlayerShootCommand'})\n"
    "print('shot', shot['type'], data['shooting']['tokens'] - shot['data']['shooting']['tokens'])\n"
)



async def play_arena_program(
    testcase: TestCase, socket: ProcessorClient, arena_id: str,
    controller: Callable[[], Awaitable[arena_client.ArenaClient]],
) -> None:
    """
    Run L{ARENA_PROGRAM} on C{socket} in C{arena_id}; once it has registered, a controller
    (connected by C{controller}) starts the game.  Check that the program got the arena's
    replies, that nothing of the arena was relayed to the processor client, and that the
    controller's snapshots (queued since its StartGameAck, one per tick) show the player
    where the program moved it, then its shot flying the way it faces.
    """
    controllers: list[arena_client.ArenaClient] = []
    controller_started: Deferred[Any] = Deferred()

    async def start_game() -> None:
        connected = await controller()
        controllers.append(connected)
        controller_started.callback(await connected.start_game())

    def on_output(stream: str, text: str) -> None:
        if text.startswith("registered RegisterPlayerAck "):
            Deferred.fromCoroutine(start_game()).addErrback(controller_started.errback)

    socket.on_output = on_output
    outcome = await socket.run("python", ARENA_PROGRAM, engine="arena", arena=arena_id)
    testcase.assertEqual((await controller_started)["type"], "StartGameAck")
    testcase.assertEqual(outcome.errors(), [])
    registered, moved, shot = (line.split() for line in outcome.stdout)
    testcase.assertEqual(registered[:2], ["registered", "RegisterPlayerAck"])
    testcase.assertEqual((moved[:2], moved[4]), (["moved", "MovePlayerAck"], "2.0"))
    testcase.assertEqual(shot, ["shot", "PlayerShotAck", "6"])  # the default shot cost
    testcase.assertEqual(outcome.commands, [])
    testcase.assertEqual(outcome.end["exit_code"], 0)

    player_id = registered[2]
    position = {"x": float(moved[2]), "y": float(moved[3])}

    def players(snapshot: dict[str, Any]) -> dict[str, Any]:
        return {p["id"]: p for p in snapshot["data"]["arena_snapshot"]["players_snapshots"]}

    def shows_move(message: dict[str, Any]) -> bool:
        if message.get("type") != "GameSnapshotNotification":
            return False
        player = players(message).get(player_id)
        return player is not None and player["coordinates"] == position

    [watching] = controllers
    snapshot = await watching.wait_for(shows_move, timeout=10)
    testcase.assertEqual(players(snapshot)[player_id]["rotation"], 90)
    snapshot = await watching.wait_for(
        lambda m: shows_move(m) and bool(m["data"]["arena_snapshot"]["shots_snapshots"]),
        timeout=10,
    )
    [flying] = snapshot["data"]["arena_snapshot"]["shots_snapshots"]
    testcase.assertEqual(flying["rotation"], 90)
    testcase.assertGreater(flying["coordinates"]["y"], position["y"])
    testcase.assertEqual(flying["coordinates"]["x"], position["x"])
