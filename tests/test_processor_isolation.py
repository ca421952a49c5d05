"""
Hostile programs against a real root server (C{twistd -n gameproto}, the isolated sandbox,
this test process's own block of run uids), each in Python and in at least one other
language, through the Python processor client.

Every run must end with its documented outcome, and then: nothing of any run uid alive, no
run cgroup left in any hierarchy, no SysV IPC object of a run uid on the host, and
C{/healthz} answered throughout (polled while the programs run).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

from gameproto.client import processor as client
from tests.deploy_support import within_unit_capabilities
from tests.nodes import Node, http_json, stop_on_cleanup
from tests.processor_support import (
    host_isolation,
    interpreter,
    processes_of_uid,
    require_root,
    run_uids,
)
from tests.support import wait_for, within

#: The limits of this module's server, lower than the defaults so that a limit is reached
#: quickly; the texts name them.
CPU_LIMIT = 1
TIME_LIMIT = 6


def json_line(outcome: client.RunOutcome) -> Any:
    """The one JSON line a program printed."""
    [line] = [text for text in outcome.stdout if text.startswith(("{", "["))]
    return json.loads(line)


def interpreter_error(outcome: client.RunOutcome) -> str:
    [error] = outcome.errors("INTERPRETER_ERROR")
    return str(error["message"])


def ipc_objects_of(uids: set[int]) -> list[str]:
    """SysV shared memory segments, queues and semaphores on the host owned by C{uids}."""
    found = []
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as table:
                header, *rows = table.read().splitlines()
        except FileNotFoundError:
            continue
        columns = header.split()
        owners = [columns.index(name) for name in ("uid", "cuid")]
        for row in rows:
            fields = row.split()
            if any(int(fields[index]) in uids for index in owners):
                found.append(f"{kind}: {row}")
    return found


class HealthPoller:
    """
    Asks /healthz every 50 ms, one request at a time, and remembers each answer: its
    status, or why there was none within 5 s (a server whose reactor a run could stall).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[int | str] = []
        self._pending: Deferred[None] | None = None
        self._loop = LoopingCall(self._ask)

    def start(self) -> None:
        self._loop.start(0.05)

    def stop(self) -> Deferred[None]:
        """Stop asking; fires once the request in flight, if any, has its answer."""
        if self._loop.running:
            self._loop.stop()
        pending, done = self._pending, Deferred()
        if pending is None:
            done.callback(None)
        else:
            pending.addBoth(lambda _: done.callback(None))
        return done

    def _ask(self) -> None:
        if self._pending is not None:
            return

        def done(result: Any) -> None:
            self._pending = None
            self.answers.append(result[0] if isinstance(result, tuple) else f"failed: {result}")

        self._pending = within(Deferred.fromCoroutine(http_json("GET", self.url)), 5)
        self._pending.addBoth(done)

    def failures(self) -> list[int | str]:
        return [answer for answer in self.answers if answer != 200]


class IsolationTestCase(TestCase):
    timeout = 180
    #: Start the server with only the capabilities of deploy/systemd's unit.
    within_unit_capabilities = False

    def setUp(self) -> Deferred[None]:
        require_root()
        self.isolation = host_isolation()
        base = tempfile.mkdtemp(prefix="gameproto-isolation-runs-", dir="/tmp")
        self.addCleanup(shutil.rmtree, base, True)
        self.uids = run_uids()
        self.node = stop_on_cleanup(self, Node(
            "--store", "memory:",
            "--processor-dir", base,
            "--processor-uids", f"{self.uids[0]}-{self.uids[-1]}",
            "--processor-cpu-limit", str(CPU_LIMIT),
            "--processor-time-limit", str(TIME_LIMIT),
        ))
        if self.within_unit_capabilities:
            self.node.argv = [*within_unit_capabilities(), *self.node.argv]
        self.sockets: list[Any] = []
        self.addCleanup(self._close_sockets)
        self.users = 0
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        await self.node.start()
        status, health = await http_json("GET", self.node.url("/healthz"))
        self.assertEqual(health["details"]["processor"]["sandbox"], "isolated")
        self.health = HealthPoller(self.node.url("/healthz"))
        self.health.start()
        self.addCleanup(self._check_health)

    async def _check_health(self) -> None:
        await self.health.stop()
        self.assertGreater(len(self.health.answers), 0)
        self.assertEqual(self.health.failures(), [])

    def _close_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    async def token(self) -> str:
        """A new user's token (each run is another user's: one run per user at a time)."""
        self.users += 1
        name = f"user{self.users}"
        credentials = {"username": name, "password": "password1"}
        status, _ = await http_json("POST", self.node.url("/api/users/sign_up/"), credentials)
        self.assertEqual(status, 201)
        status, body = await http_json("POST", self.node.url("/api/token/"), credentials)
        self.assertEqual(status, 200)
        return str(body["token"])

    async def connect(self, **options: Any) -> client.ProcessorClient:
        socket = await client.connect(reactor, self.node.ws_url(""), await self.token(), **options)
        self.sockets.append(socket)
        return socket

    async def run_program(self, language: str, code: str) -> client.RunOutcome:
        """Run C{code}; once it ended, nothing of it may be left."""
        interpreter(language)
        socket = await self.connect()
        outcome = await socket.run(language, code)
        self.assertIsNotNone(outcome.end, outcome.messages)
        self.assert_nothing_left()
        return outcome

    def assert_nothing_left(self) -> None:
        uids = set(self.uids)
        self.assertEqual({uid: processes_of_uid(uid) for uid in uids if processes_of_uid(uid)}, {})
        self.assertEqual(self.run_cgroups(), [])
        self.assertEqual(ipc_objects_of(uids), [])

    def run_cgroups(self) -> list[str]:
        """The cgroups of this test's run uids still in any hierarchy."""
        left = []
        for base in self.isolation.cgroups.bases.values():
            for name in os.listdir(base) if os.path.isdir(base) else []:
                if name.split("-")[0].isdigit() and int(name.split("-")[0]) in self.uids:
                    left.append(os.path.join(base, name))
        return left

    def assertLimit(self, outcome: client.RunOutcome, text: str) -> None:
        self.assertTrue(interpreter_error(outcome).startswith(text), interpreter_error(outcome))


class HostVisibilityTests(IsolationTestCase):
    """Nothing of the machine is in a run's view."""

    async def test_host_unix_socket(self) -> None:
        """A world-writable Unix socket the host listens on under /run: not there."""
        path = f"/run/gameproto-test-{os.getpid()}-{id(self)}.sock"
        connections: list[Protocol] = []

        class Record(Protocol):
            def connectionMade(self) -> None:
                connections.append(self)

        port = reactor.listenUNIX(path, Factory.forProtocol(Record), mode=0o666)
        self.addCleanup(port.stopListening)
        python = (
            "import errno, socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            f"    s.connect({path!r})\n"
            "    print('connected')\n"
            "except OSError as e:\n"
            "    print('refused', errno.errorcode[e.errno])\n"
        )
        javascript = (
            "const net = require('net');\n"
            f"const c = net.connect({json.dumps(path)});\n"
            "c.on('connect', () => { console.log('connected'); c.destroy(); });\n"
            "c.on('error', (e) => console.log('refused', e.code));\n"
        )
        for language, code in (("python", python), ("javascript", javascript)):
            outcome = await self.run_program(language, code)
            self.assertEqual(outcome.stdout, ["refused ENOENT"], language)
        self.assertEqual(connections, [])

    async def test_etc_passwd(self) -> None:
        """/etc/passwd is not in the view."""
        python = (
            "try:\n"
            "    print(open('/etc/passwd').read()[:20])\n"
            "except FileNotFoundError:\n"
            "    print('absent')\n"
        )
        ruby = (
            "begin\n"
            "  puts File.read('/etc/passwd')[0, 20]\n"
            "rescue Errno::ENOENT\n"
            "  puts 'absent'\n"
            "end\n"
        )
        for language, code in (("python", python), ("ruby", ruby)):
            self.assertEqual((await self.run_program(language, code)).stdout, ["absent"], language)

    async def test_world_readable_file_under_opt(self) -> None:
        """A world-readable file under /opt (or the server's own code) is not there."""
        directory = tempfile.mkdtemp(prefix="gameproto-test-", dir="/opt")
        self.addCleanup(shutil.rmtree, directory, True)
        os.chmod(directory, 0o755)
        secret = os.path.join(directory, "secret")
        with open(secret, "w") as file:
            file.write("the host's secret\n")
        os.chmod(secret, 0o644)
        server_code = os.path.abspath(__file__)
        python = (
            "import os\n"
            f"for path in ({secret!r}, {server_code!r}):\n"
            "    print('present' if os.path.exists(path) else 'absent')\n"
        )
        php = (
            f"foreach ([{json.dumps(secret)}, {json.dumps(server_code)}] as $path) {{\n"
            "  echo (@file_get_contents($path) === false) ? \"absent\\n\" : \"present\\n\";\n"
            "}\n"
        )
        for language, code in (("python", python), ("php", php)):
            outcome = await self.run_program(language, code)
            self.assertEqual(outcome.stdout, ["absent", "absent"], language)

    async def test_proc_shows_the_run_only(self) -> None:
        """/proc lists the run's own processes: bubblewrap's init (1) and the program (2)."""
        python = "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        ruby = "require 'json'\nputs Dir.children('/proc').grep(/\\A\\d+\\z/).map(&:to_i).sort.to_json\n"
        for language, code in (("python", python), ("ruby", ruby)):
            self.assertEqual(json_line(await self.run_program(language, code)), [1, 2], language)


class MemoryTests(IsolationTestCase):
    """The memory limit counts the whole run: shared memory, children, tmpfs."""

    async def test_shared_mmap_of_1_gib(self) -> None:
        """Filling a 1 GiB shared mapping stops at the run's memory limit."""
        python = (
            "import mmap\n"
            "m = mmap.mmap(-1, 1 << 30)\n"
            "for i in range(0, 1 << 30, 16 << 20):\n"
            "    m[i:i + (16 << 20)] = b'x' * (16 << 20)\n"
            "print('filled 1 GiB')\n"
        )
        php = (
            "$id = shmop_open(0x6770, 'c', 0600, 1 << 30);\n"
            "$chunk = str_repeat('x', 16 << 20);\n"
            "for ($i = 0; $i < (1 << 30); $i += 16 << 20) { shmop_write($id, $chunk, $i); }\n"
            "echo \"filled 1 GiB\\n\";\n"
        )
        for language, code in (("python", python), ("php", php)):
            outcome = await self.run_program(language, code)
            self.assertEqual(outcome.stdout, [], language)
            self.assertLimit(outcome, "memory limit exceeded")

    async def test_eight_children_of_100_mib(self) -> None:
        """Eight processes of 100 MiB each, every one under RLIMIT_DATA: the run's limit."""
        python = (
            "import os, time\n"
            "for _ in range(8):\n"
            "    if os.fork() == 0:\n"
            "        data = b'x' * (100 << 20)\n"
            "        time.sleep(30)\n"
            "        os._exit(0)\n"
            "for _ in range(8):\n"
            "    os.wait()\n"
            "print('all eight lived')\n"
        )
        ruby = (
            "8.times { fork { data = 'x' * (100 << 20); sleep 30 } }\n"
            "Process.waitall\n"
            "puts 'all eight lived'\n"
        )
        for language, code in (("python", python), ("ruby", ruby)):
            outcome = await self.run_program(language, code)
            self.assertEqual(outcome.stdout, [], language)
            self.assertLimit(outcome, "memory limit exceeded")

    async def test_sysv_segment_does_not_outlive_the_run(self) -> None:
        """
        A 64 MiB SysV segment holding a secret dies with its run's IPC namespace: another
        run (another user's) asking for the same key finds nothing.
        """
        shm = (
            "import ctypes, ctypes.util, errno\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.shmat.restype = ctypes.c_void_p\n"
        )
        create = shm + (
            "ident = libc.shmget(0x6771, 64 << 20, 0o1000 | 0o666)\n"
            "address = libc.shmat(ident, None, 0)\n"
            "ctypes.memmove(address, b'secret of run one', 17)\n"
            "print('created', ident >= 0)\n"
        )
        read = shm + (
            "ident = libc.shmget(0x6771, 0, 0)\n"
            "print('found' if ident >= 0 else 'absent ' + errno.errorcode[ctypes.get_errno()])\n"
        )
        php_read = (
            "$id = @shmop_open(0x6771, 'a', 0, 0);\n"
            "echo $id === false ? \"absent\\n\" : \"found\\n\";\n"
        )
        self.assertEqual((await self.run_program("python", create)).stdout, ["created True"])
        self.assertEqual((await self.run_program("python", read)).stdout, ["absent ENOENT"])
        self.assertEqual((await self.run_program("php", php_read)).stdout, ["absent"])

    async def test_tmp_holds_16_mib(self) -> None:
        """Writing 20 MiB to /tmp in 1 MB files: no space left after 16 MiB."""
        python = (
            "import errno\n"
            "written = 0\n"
            "try:\n"
            "    for n in range(20):\n"
            "        with open(f'/tmp/f{n}', 'wb') as f:\n"
            "            f.write(b'x' * 1000000)\n"
            "        written += 1000000\n"
            "except OSError as e:\n"
            "    print(errno.errorcode[e.errno], written)\n"
        )
        javascript = (
            "const fs = require('fs');\n"
            "let written = 0;\n"
            "try {\n"
            "  for (let n = 0; n < 20; n++) { fs.writeFileSync('/tmp/f' + n, 'x'.repeat(1000000)); written += 1000000; }\n"
            "} catch (e) { console.log(e.code, written); }\n"
        )
        for language, code in (("python", python), ("javascript", javascript)):
            outcome = await self.run_program(language, code)
            [line] = outcome.stdout
            code_name, written = line.split()
            self.assertEqual(code_name, "ENOSPC", language)
            self.assertLessEqual(int(written), 16 << 20)
            self.assertGreater(int(written), (16 << 20) - 2000000)

    async def test_ordinary_memory_hog(self) -> None:
        """One big allocation: the interpreter's own out-of-memory error, named."""
        python = "data = bytearray(2 << 30)\n"
        javascript = "const a = [];\nfor (;;) a.push(new Array(100000).fill(1.5));\n"
        for language, code in (("python", python), ("javascript", javascript)):
            self.assertLimit(await self.run_program(language, code), "memory limit exceeded")


class KernelSurfaceTests(IsolationTestCase):
    """System calls a program does not need fail with EPERM, readably."""

    async def test_network_sockets(self) -> None:
        """AF_INET, AF_INET6, AF_PACKET and AF_NETLINK are refused; socketpair works."""
        python = (
            "import errno, json, socket\n"
            "def attempt(family, kind):\n"
            "    try:\n"
            "        socket.socket(family, kind).close()\n"
            "        return 'created'\n"
            "    except OSError as e:\n"
            "        return errno.errorcode[e.errno]\n"
            "print(json.dumps([attempt(socket.AF_INET, socket.SOCK_STREAM),\n"
            "    attempt(socket.AF_INET6, socket.SOCK_DGRAM), attempt(socket.AF_PACKET, socket.SOCK_RAW),\n"
            "    attempt(socket.AF_NETLINK, socket.SOCK_RAW), len(socket.socketpair())]))\n"
        )
        javascript = (
            "const net = require('net'), dgram = require('dgram');\n"
            "const results = [];\n"
            "function done(what) { results.push(what); if (results.length === 2) console.log(JSON.stringify(results.sort())); }\n"
            "net.connect({ host: '127.0.0.1', port: 22 }).on('error', (e) => done('tcp ' + e.code)).on('connect', () => done('tcp connected'));\n"
            "const u = dgram.createSocket('udp4');\n"
            "u.on('error', (e) => done('udp ' + e.code));\n"
            "u.bind(0, () => done('udp bound'));\n"
        )
        self.assertEqual(json_line(await self.run_program("python", python)),
                         ["EPERM", "EPERM", "EPERM", "EPERM", 2])
        self.assertEqual(json_line(await self.run_program("javascript", javascript)),
                         ["tcp EPERM", "udp EPERM"])

    async def test_ptrace_unshare_mount(self) -> None:
        """ptrace of a sibling, unshare and mount: each EPERM, the run goes on."""
        python = (
            "import ctypes, errno, json, os, time\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "def errno_of(result):\n"
            "    return errno.errorcode[ctypes.get_errno()] if result == -1 else 'allowed'\n"
            "sibling = os.fork()\n"
            "if sibling == 0:\n"
            "    time.sleep(30)\n"
            "    os._exit(0)\n"
            "libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]\n"
            "results = [errno_of(libc.ptrace(16, sibling, None, None)),\n"  # PTRACE_ATTACH
            "    errno_of(libc.unshare(0x00020000)),\n"  # CLONE_NEWNS
            "    errno_of(libc.unshare(0x10000000)),\n"  # CLONE_NEWUSER
            "    errno_of(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))]\n"
            "os.kill(sibling, 9)\n"
            "print(json.dumps(results))\n"
        )
        ruby = (
            "require 'fiddle'\n"
            "require 'json'\n"
            "libc = Fiddle.dlopen(nil)\n"
            "int = Fiddle::TYPE_INT\n"
            "ptrace = Fiddle::Function.new(libc['ptrace'], [Fiddle::TYPE_LONG, int, Fiddle::TYPE_VOIDP, Fiddle::TYPE_VOIDP], Fiddle::TYPE_LONG)\n"
            "unshare = Fiddle::Function.new(libc['unshare'], [int], int)\n"
            "mount = Fiddle::Function.new(libc['mount'], [Fiddle::TYPE_VOIDP] * 3 + [Fiddle::TYPE_LONG, Fiddle::TYPE_VOIDP], int)\n"
            "errno_of = ->(r) { r == -1 ? Errno.constants.find { |c| Errno.const_get(c).const_get(:Errno) == Fiddle.last_error rescue false }.to_s : 'allowed' }\n"
            "sibling = fork { sleep 30 }\n"
            "results = [errno_of.(ptrace.call(16, sibling, nil, nil)), errno_of.(unshare.call(0x00020000)),\n"
            "  errno_of.(unshare.call(0x10000000)), errno_of.(mount.call('none', '/tmp', 'tmpfs', 0, nil))]\n"
            "Process.kill(:KILL, sibling)\n"
            "puts results.to_json\n"
        )
        for language, code in (("python", python), ("ruby", ruby)):
            outcome = await self.run_program(language, code)
            self.assertEqual(json_line(outcome), ["EPERM"] * 4, language)
            self.assertEqual(outcome.end["exit_code"], 0)


class ProcessTests(IsolationTestCase):
    """Processes stay inside the run, and die with it."""

    async def test_kill_every_process(self) -> None:
        """
        kill -9 -1 reaches the run's own processes only (in its PID namespace: not
        itself, not bubblewrap's init): its child dies, it goes on, the server answers on.
        """
        python = (
            "import os, signal, time\n"
            "child = os.fork()\n"
            "if child == 0:\n"
            "    time.sleep(300)\n"
            "    os._exit(0)\n"
            "os.kill(-1, signal.SIGKILL)\n"
            "_, status = os.waitpid(child, 0)\n"
            "print('child', 'killed' if os.WTERMSIG(status) == signal.SIGKILL else 'alive')\n"
        )
        javascript = (
            "const { spawn } = require('child_process');\n"
            "const child = spawn('sleep', ['300']);\n"
            "child.on('spawn', () => process.kill(-1, 'SIGKILL'));\n"
            "child.on('exit', (code, signal) => console.log('child', signal === 'SIGKILL' ? 'killed' : 'alive'));\n"
        )
        for language, code in (("python", python), ("javascript", javascript)):
            outcome = await self.run_program(language, code)
            self.assertEqual(outcome.stdout, ["child killed"], language)
            self.assertEqual(outcome.end["exit_code"], 0)
        status, _ = await http_json("GET", self.node.url("/healthz"))
        self.assertEqual(status, 200)

    async def test_daemons_die_with_the_run(self) -> None:
        """A double-forked setsid daemon and Ruby's Process.daemon are gone when it ends."""
        python = (
            "import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(300)\n"
            "    os._exit(0)\n"
            "os.wait()\n"
            "print('daemon started')\n"
        )
        ruby = (
            "pid = fork { Process.daemon(true, true); sleep 300 }\n"
            "Process.wait(pid)\n"
            "puts 'daemon started'\n"
        )
        for language, code in (("python", python), ("ruby", ruby)):
            outcome = await self.run_program(language, code)
            self.assertEqual(outcome.stdout, ["daemon started"], language)
            self.assertEqual(outcome.end["exit_code"], 0)

    async def test_fork_bombs(self) -> None:
        """A fork bomb in each language stops at the process limit (64)."""
        bombs = {
            "python": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            "javascript": (
                "const { spawn } = require('child_process');\n"
                "for (;;) { try { spawn('sleep', ['300']); } catch (e) {} }\n"
            ),
            "ruby": "loop { fork { sleep 300 } rescue nil }\n",
            "php": "while (true) { pcntl_fork(); }\n",
        }
        for language, code in bombs.items():
            self.assertLimit(await self.run_program(language, code), "process limit exceeded (64)")

    async def test_cpu_of_the_whole_run(self) -> None:
        """
        Four spinning processes share one CPU budget (the run's cgroup), and a single
        spinner meets the CPU limit too.
        """
        python = (
            "import os\n"
            "for _ in range(3):\n"
            "    if os.fork() == 0:\n"
            "        break\n"
            "while True:\n"
            "    pass\n"
        )
        javascript = "for (;;) {}\n"
        for language, code in (("python", python), ("javascript", javascript)):
            self.assertLimit(await self.run_program(language, code), f"CPU time limit exceeded ({CPU_LIMIT} s)")

    async def test_wall_time(self) -> None:
        """A sleeping program is stopped at the program time limit."""
        python = "import time\ntime.sleep(3600)\n"
        ruby = "sleep\n"
        for language, code in (("python", python), ("ruby", ruby)):
            self.assertLimit(await self.run_program(language, code), f"time limit exceeded ({TIME_LIMIT} s)")

    async def test_file_size_and_output(self) -> None:
        """A 2 MiB file stops at the file limit; printing forever at the output limit."""
        self.assertLimit(
            await self.run_program("python", "open('big', 'wb').write(b'x' * (2 << 20))\n"),
            "file size limit exceeded (1 MiB)",
        )
        self.assertLimit(
            await self.run_program("ruby", "File.write('big', 'x' * (2 << 20))\n"),
            "file size limit exceeded (1 MiB)",
        )
        for language, code in (("python", "while True:\n    print('spam' * 20)\n"),
                               ("php", "while (true) { echo str_repeat('spam', 20), \"\\n\"; }\n")):
            self.assertLimit(await self.run_program(language, code), "output limit exceeded")

    async def test_engine_channel_limit(self) -> None:
        """A request line over the engine channel's limit ends the run with its text."""
        python = "import os\nos.write(3, b'x' * (2 << 20))\nos.read(4, 1)\n"
        javascript = "const fs = require('fs');\nfs.writeSync(3, 'x'.repeat(2 << 20));\nfs.readSync(4, Buffer.alloc(1));\n"
        for language, code in (("python", python), ("javascript", javascript)):
            self.assertLimit(await self.run_program(language, code), "engine request limit exceeded (1 MiB)")

    async def test_closed_websocket_leaves_nothing(self) -> None:
        """The client going away mid-run ends it; its daemon and cgroup go with it."""
        code = (
            "import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    time.sleep(300)\n"
            "print('running', flush=True)\n"
            "time.sleep(300)\n"
        )
        running: Deferred[None] = Deferred()
        socket = await self.connect(
            on_output=lambda stream, text: running.called or running.callback(None)
        )
        finished = Deferred.fromCoroutine(socket.run("python", code))
        await running.addTimeout(10, reactor)
        self.assertGreaterEqual(sum(len(processes_of_uid(uid)) for uid in self.uids), 2)
        socket.dropConnection(abort=True)
        await finished
        await self.until_nothing_is_left()
        self.assert_nothing_left()

    async def test_server_killed_leaves_nothing(self) -> None:
        """A SIGKILLed server: its launchers end their runs all the same."""
        code = "import os, time\nos.fork()\nprint('running', flush=True)\ntime.sleep(300)\n"
        running: Deferred[None] = Deferred()
        socket = await self.connect(
            on_output=lambda stream, text: running.called or running.callback(None)
        )
        Deferred.fromCoroutine(socket.run("python", code)).addErrback(lambda _: None)
        await running.addTimeout(10, reactor)
        await self.health.stop()  # the server is about to go: its last answer first
        self.health.answers.clear()
        self.health.answers.append(200)
        await self.node.kill()
        await self.until_nothing_is_left()
        self.assert_nothing_left()

    async def until_nothing_is_left(self) -> None:
        """Wait (up to 5 s) until no run cgroup and no process of a run uid is left."""
        await wait_for(lambda: not self.run_cgroups()
                       and not any(processes_of_uid(uid) for uid in self.uids),
                       5.0, poll=0.02)


class MemoryTestsWithinTheUnitsCapabilities(MemoryTests):
    """The memory limits, with the server holding only what the systemd unit lets it."""

    within_unit_capabilities = True


class ProcessTestsWithinTheUnitsCapabilities(ProcessTests):
    """The process limits and clean-up, with only what the systemd unit lets the server keep."""

    within_unit_capabilities = True


class TwoServersTests(TestCase):
    """Two servers on one host, with the same run uids: neither touches the other's runs."""

    timeout = 180

    async def test_four_runs_each_for_ten_seconds(self) -> None:
        """
        Server A runs four programs; server B starts meanwhile (its start-up sweep must
        spare A's runs) and runs four more.  Each program runs for 10 s and exits with its
        own code: every run ends with its own result, each with a uid of its own.
        """
        require_root()
        host_isolation()
        interpreter("python")
        uids = run_uids()
        nodes = []
        for name in ("a", "b"):
            base = tempfile.mkdtemp(prefix=f"gameproto-two-servers-{name}-", dir="/tmp")
            self.addCleanup(shutil.rmtree, base, True)
            nodes.append(stop_on_cleanup(self, Node(
                "--store", "memory:",
                "--processor-dir", base,
                "--processor-uids", f"{uids[0]}-{uids[-1]}",
                "--processor-max-runs", "4",
                "--processor-time-limit", "30",
            )))
        first, second = nodes
        await first.start()
        running = [await self._start_run(first, f"a{n}", 10 + n) for n in range(4)]
        await DeferredList([started for started, _ in running])
        await second.start()
        running += [await self._start_run(second, f"b{n}", 20 + n) for n in range(4)]
        outcomes = [await finished for _, finished in running]
        seen_uids = set()
        for n, outcome in enumerate(outcomes):
            label, code = (f"a{n}", 10 + n) if n < 4 else (f"b{n - 4}", 20 + n - 4)
            self.assertEqual([(e["code"], e["message"]) for e in outcome.errors()],
                             [("INTERPRETER_ERROR", f"exited with code {code}")], label)
            self.assertEqual(outcome.stdout[0].split()[0], label)
            self.assertEqual(outcome.stdout[-1], f"{label} done")
            self.assertEqual((outcome.end["exit_code"], outcome.end["signal"]), (code, None))
            seen_uids.add(int(outcome.stdout[0].split()[1]))
        self.assertEqual(len(seen_uids), 8)
        self.assertEqual([uid for uid in uids if processes_of_uid(uid)], [])

    async def _start_run(self, node: Node, label: str, exit_code: int) -> tuple[Deferred[None], Deferred[Any]]:
        """Start a 10 s program on C{node}; (its first output, its outcome)."""
        credentials = {"username": f"user{label}", "password": "password1"}
        await http_json("POST", node.url("/api/users/sign_up/"), credentials)
        _, body = await http_json("POST", node.url("/api/token/"), credentials)
        started: Deferred[None] = Deferred()
        socket = await client.connect(
            reactor, node.ws_url(""), str(body["token"]),
            on_output=lambda stream, text: started.called or started.callback(None),
        )
        self.addCleanup(lambda: socket.state == socket.STATE_OPEN and socket.dropConnection(abort=True))
        code = (
            "import os, sys, time\n"
            f"print({label!r}, os.getuid(), flush=True)\n"
            "deadline = time.monotonic() + 10\n"
            "while time.monotonic() < deadline:\n"
            "    time.sleep(0.5)\n"
            f"print({label!r} + ' done')\n"
            f"sys.exit({exit_code})\n"
        )
        finished = Deferred.fromCoroutine(socket.run("python", code, timeout=60))
        return started, finished
