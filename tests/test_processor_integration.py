"""
Real programs through the real launcher, with the real reactor, as root with a block of
run uids of this test process's own (apart from the server's default range, so a server or
another test run on the same machine is never touched): the four languages, programs that
try to escape a limit, the start-up checks, the weak sandbox, and the launcher run by a
server without root.  Each run's process table and cgroups are checked afterwards.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import shutil
import tempfile
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorProcess
from zope.interface import implementer

from gameproto.processor.languages import PYTHON
from gameproto.processor.limits import Limit
from gameproto.processor.sandbox import (
    RunLimits,
    Sandbox,
    SandboxConfig,
    prepare_run_base,
    start_sandbox,
)
from tests.processor_support import (
    SYSTEM_PYTHON,
    DAEMONIZING_PROGRAM,
    ENGINE_ERROR,
    HELLO,
    RUNTIME_ERROR,
    RUNTIME_ERROR_LINES,
    SYNTAX_ERROR,
    SYNTAX_ERROR_LINE,
    THOUSAND_CALLS,
    IntegrationTestCase,
    interpreter,
    processes_of_uid,
    reactor,
    run_uids,
    unprivileged_uid,
)
from tests.support import require_tool, within

#: Defines identity(**more): prints, as one JSON line, who and where the program is.
IDENTITY = (
    "import json, os\n"
    "def identity(**more):\n"
    "    print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),\n"
    "        'nice': os.getpriority(os.PRIO_PROCESS, 0),\n"
    "        'fds': sorted(int(f) for f in os.listdir('/proc/self/fd')),\n"
    "        'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),\n"
    "        'cwd': os.getcwd(), 'pid': os.getpid(), **more}))\n"
)


class IdentityMixin:
    """Runs an L{IDENTITY} program; checks what every sandbox gives a run."""

    async def identity(self: Any, code: str) -> dict[str, Any]:
        """
        The program's identity: its run uid with no groups, nice 19, fds 0-4 only (plus
        the one listing them).
        """
        real = self.start("python", code)
        result = await self.finish(real)
        self.assertEqual(result.exit_code, 0)
        seen: dict[str, Any] = json.loads(real.stdout()[0])
        self.assertEqual((seen["uid"], seen["gid"], seen["groups"]), (real.run.uid, real.run.uid, []))
        self.assertEqual(seen["nice"], 19)
        self.assertEqual([fd for fd in seen["fds"] if fd <= 4], [0, 1, 2, 3, 4])
        self.assertLessEqual(len(seen["fds"]), 6)
        seen["run_dir"] = real.run.run_dir
        return seen


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
class HostileProgramTests(IdentityMixin, IntegrationTestCase):
    """Programs that try to escape a limit: each ends with the limit's text, nothing left."""

    async def test_infinite_loop(self) -> None:
        """
        An infinite loop is stopped at the CPU limit: the run's cgroup has used it (the
        launcher TERMs the run), or the process has (SIGXCPU), whichever comes first.
        """
        result = await self.finish(self.start("python", "while True:\n    pass\n", cpu_time=1, program_time=30))
        self.assertEqual(result.limit, Limit.CPU)
        self.assertIn(result.signal, ("SIGTERM", "SIGXCPU"))
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
        The program runs as its run uid with no groups, nice 19, fds 0-4 only, PID 2 of
        its own PID namespace (bubblewrap's init is 1), in /box; an AF_INET socket is
        refused (EPERM) and nothing outside /box and /tmp is writable.
        """
        code = IDENTITY + (
            "import socket\n"
            "def refusal(action):\n"
            "    try:\n"
            "        action()\n"
            "        return 0\n"
            "    except OSError as e:\n"
            "        return e.errno\n"
            "identity(inet=refusal(lambda: socket.socket(socket.AF_INET)),\n"
            "         root_writable=refusal(lambda: open('/escape', 'w')))\n"
        )
        seen = await self.identity(code)
        self.assertEqual(seen["inet"], errno.EPERM)
        self.assertEqual(seen["root_writable"], errno.EROFS)
        self.assertEqual((seen["pids"], seen["pid"]), ([1, 2], 2))
        self.assertEqual(seen["cwd"], "/box")

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


class WeakSandboxTests(IdentityMixin, IntegrationTestCase):
    """
    The weak sandbox (--processor-allow-weak-sandbox, where bubblewrap or cgroups are
    missing): a uid per run, network and mount namespaces, rlimits, a task count.
    """

    isolated = False

    async def test_identity_and_namespaces(self) -> None:
        """
        The program runs as its run uid with no groups, nice 19, fds 0-4 only, no network,
        its own processes only in /proc, and nothing of the host writable.
        """
        code = IDENTITY + (
            "import socket\n"
            "s = socket.socket()\n"
            "net = s.connect_ex(('127.0.0.1', 22))\n"
            "try:\n"
            "    open('/run/lock/gameproto-escape', 'w')\n"  # world-writable on the host
            "    writable = 0\n"
            "except OSError as e:\n"
            "    writable = e.errno\n"
            "s.close()\n"
            "identity(net=net, host_writable=writable)\n"
        )
        seen = await self.identity(code)
        self.assertNotEqual(seen["net"], 0)
        if os.path.isdir("/run/lock"):
            self.assertEqual(seen["host_writable"], errno.EROFS)
        self.assertEqual(seen["pids"], [seen["pid"]])
        self.assertEqual(seen["cwd"], seen["run_dir"])

    async def test_infinite_loop(self) -> None:
        """Without a cgroup, RLIMIT_CPU stops an infinite loop: SIGXCPU."""
        result = await self.finish(self.start("python", "while True:\n    pass\n", cpu_time=1, program_time=30))
        self.assertEqual((result.limit, result.signal), (Limit.CPU, "SIGXCPU"))

    async def test_fork_bomb(self) -> None:
        """The launcher's task count ends a fork bomb at the process limit."""
        code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
        result = await self.finish(self.start("python", code))
        self.assertEqual(result.limit, Limit.PROCESSES)

    async def test_stop_mid_run(self) -> None:
        """stop() kills a setsid'd grandchild too (the run uid's kill(-1))."""
        real = self.start("python", DAEMONIZING_PROGRAM)
        await within(real.when_printed("ready"), 10)
        real.run.stop()
        result = await self.finish(real, deadline=1 + 2)
        self.assertTrue(result.stopped)


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
        self.assertIsNotNone(sandbox.isolation)
        self.assertIsNone(sandbox.weakness)

    async def test_without_bubblewrap(self) -> None:
        """
        Without bubblewrap the isolated sandbox cannot run: the start-up refuses, naming
        what is missing; with allow_weak, programs run in the weak sandbox, which says why.
        """
        from gameproto.processor.sandbox import SandboxError

        config = SandboxConfig(
            run_base=self.base + "/sub",
            uids=run_uids(),
            interpreters={"python": interpreter("python")},
            privileged=True,
            bwrap="/nonexistent/bwrap",
        )
        error = self.assertRaises(SandboxError, start_sandbox, reactor, reactor, config, RunLimits())
        self.assertIn("bubblewrap (bwrap) is not installed", str(error))
        self.assertIn("--processor-allow-weak-sandbox", str(error))
        weak = attrs.evolve(config, allow_weak=True)
        sandbox = await within(start_sandbox(reactor, reactor, weak, RunLimits(),
                                             {"python": PYTHON}), 20)
        self.assertIsNone(sandbox.isolation)
        self.assertEqual(sandbox.weakness, "bubblewrap (bwrap) is not installed")
        self.assertEqual(list(sandbox.languages), ["python"])

    async def test_leftovers_of_a_dead_server_are_killed(self) -> None:
        """
        A process of a run uid that no live server holds (a server died mid-run) is killed
        at start-up; one of a uid another process holds (a live server's run) is not.
        """
        from gameproto.processor.uids import UidPool

        setpriv = require_tool("setpriv")
        free_uid, held_uid = run_uids()[0], run_uids()[1]
        other_server = UidPool(range(held_uid, held_uid + 1))
        self.assertEqual(other_server.acquire(), held_uid)
        self.addCleanup(other_server.release, held_uid)
        sleepers = {}
        for uid in (free_uid, held_uid):
            sleepers[uid] = subprocess.Popen(
                [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep", "300"])
            self.addCleanup(sleepers[uid].wait)  # cleanups run last first: kill, then wait
            self.addCleanup(sleepers[uid].kill)
        config = SandboxConfig(
            run_base=self.base + "/sub",
            uids=run_uids(),
            interpreters={"python": interpreter("python")},
            privileged=True,
        )
        await within(start_sandbox(reactor, reactor, config, RunLimits(), {"python": PYTHON}), 20)
        self.assertEqual(sleepers[free_uid].wait(timeout=5), -signal.SIGKILL)
        self.assertIsNone(sleepers[held_uid].poll())

    def test_without_root(self) -> None:
        """A server that is not root gets no isolated sandbox, unless it allows the weak one."""
        from gameproto.processor.sandbox import SandboxError

        config = SandboxConfig(run_base=self.base + "/sub", privileged=False)
        error = self.assertRaises(SandboxError, start_sandbox, reactor, reactor, config, RunLimits())
        self.assertIn("the server does not run as root", str(error))

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
        shutil.copytree(sandbox.LAUNCHER_PATH, install / "launcher",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(languages.SDK_DIRECTORY, install / "sdk")
        for path in [install, install / "launcher", install / "sdk"]:
            os.chmod(path, 0o755)
        for path in [*(install / "launcher").iterdir(), *(install / "sdk").iterdir()]:
            os.chmod(path, 0o644)
        self.patch(sandbox, "LAUNCHER_PATH", install / "launcher")
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
