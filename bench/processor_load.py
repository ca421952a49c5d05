"""
Processor load: how fast a real C{twistd -n gameproto} process starts users' programs,
and how many engine round trips one program gets per second.

The script starts the server (memory store, its own run directory, as root a block of run
uids claimed like the test suite's, C{--processor-max-runs} = C{--users}), signs up
C{--users} users and measures, over the processor WebSocket (L{gameproto.client.processor}):

- spawn-to-first-output latency per language: a program that prints one line, C{--runs}
  runs per language (after C{--warmup} uncounted ones).  One run per user at a time is the
  server's rule, so each user runs its share one after the other and the users run side
  by side.  Timed from the moment the code frame is sent (the server spawns on it) to the
  C{started} message and to the first C{output} message; p50 and p99 (nearest rank).
- engine round trips per second of one process, per language:
  - client relay (C{engine: "client"}): the program calls C{send()} C{--calls} times in a
    loop; this script answers each C{command} at once with a C{result};
  - arena binding (C{engine: "arena"}, the default arena): the program calls
    C{send({"type": "GetNotifications"})} C{--calls} times (answered by the server's
    arena engine without a round trip to the WebSocket client);
  - in Python only, an arena command the arena applies at its tick
    (C{ConfigurePlayerCommand}, C{--arena-commands} times, after registering): one command
    per player per tick, so bounded by the tick rate (50/s at the default 20 ms).
  The program times its own loop (a monotonic clock around the calls) and prints it.

Beside gameproto, in the same run, the floor each figure is compared with:

- a bare C{reactor.spawnProcess} of C{/usr/bin/python3 -c "print('hi')"}, timed from the
  spawn to the first bytes on its stdout (no sandbox, no WebSocket): the ratio of Python's
  spawn-to-first-output p50 to it;
- a bare Twisted pipe echo between two processes: a C{/usr/bin/python3} child writing a
  JSON line on one pipe and blocking on the reply from another (the SDK's own shape), this
  process's C{ProcessProtocol} writing each line straight back: the ratio of Python's arena
  C{GetNotifications} round trips per second to it.

    .venv/bin/python bench/processor_load.py --runs 100 --users 2 --calls 5000

Client and server share this machine: the figures include the client's own time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.protocol import ProcessProtocol

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import UNTHROTTLED, percentile  # noqa: E402
from gameproto.client import processor as client  # noqa: E402
from tests.nodes import Node, http_json  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"

LANGUAGES = ("python", "javascript", "ruby", "php")

#: One line of output.
HELLO = {
    "python": 'print("hello")\n',
    "javascript": 'console.log("hello");\n',
    "ruby": 'puts "hello"\n',
    "php": 'echo "hello\\n";\n',
}

#: C{N} engine calls of C{COMMAND} (a JSON object in each language's syntax), timed by the
#: program itself: prints C{rtt N SECONDS}.
CALLS = {
    "python": (
        "import time\n"
        "from gameproto_sdk import send\n"
        "t = time.perf_counter()\n"
        "for i in range({n}):\n"
        "    send({command})\n"
        "print('rtt', {n}, time.perf_counter() - t)\n"
    ),
    "javascript": (
        "const {{ send }} = require('gameproto_sdk');\n"
        "const t = process.hrtime.bigint();\n"
        "for (let i = 0; i < {n}; i++) send({command});\n"
        "console.log('rtt', {n}, Number(process.hrtime.bigint() - t) / 1e9);\n"
    ),
    "ruby": (
        "require 'gameproto_sdk'\n"
        "t = Process.clock_gettime(Process::CLOCK_MONOTONIC)\n"
        "{n}.times {{ |i| GameprotoSDK.send({command}) }}\n"
        "puts \"rtt {n} #{{Process.clock_gettime(Process::CLOCK_MONOTONIC) - t}}\"\n"
    ),
    "php": (
        "$t = hrtime(true);\n"
        "for ($i = 0; $i < {n}; $i++) {{ \\gameproto_sdk\\send({command}); }}\n"
        "echo 'rtt {n} ' . ((hrtime(true) - $t) / 1e9) . \"\\n\";\n"
    ),
}
RELAY_COMMAND = {
    "python": "{'n': i}",
    "javascript": "{n: i}",
    "ruby": "{'n' => i}",
    "php": "['n' => $i]",
}
NOTIFICATIONS_COMMAND = {
    "python": "{'type': 'GetNotifications'}",
    "javascript": "{type: 'GetNotifications'}",
    "ruby": "{'type' => 'GetNotifications'}",
    "php": "['type' => 'GetNotifications']",
}
#: Registers, then C{N} radar settings: each one waits for the arena's next tick.
ARENA_COMMANDS = (
    "import time\n"
    "from gameproto_sdk import send\n"
    "assert send({{'type': 'RegisterPlayerCommand'}})['type'] == 'RegisterPlayerAck'\n"
    "command = {{'type': 'ConfigurePlayerCommand',\n"
    "           'data': [{{'op': 'radarType', 'args': ['circular_scan']}}]}}\n"
    "t = time.perf_counter()\n"
    "for i in range({n}):\n"
    "    reply = send(command)\n"
    "    assert reply['type'] == 'ConfigurePlayerAck', reply\n"
    "print('rtt', {n}, time.perf_counter() - t)\n"
)


#: The bare echo's child: C{N} round trips of a JSON line (fd 3 out, fd 4 in), then its rate.
ECHO_CHILD = (
    "import os, sys, time\n"
    "n = int(sys.argv[1])\n"
    "out, replies = os.fdopen(3, 'wb', buffering=0), os.fdopen(4, 'rb', buffering=0)\n"
    "line = b'{\"type\": \"GetNotifications\"}\\n'\n"
    "t = time.perf_counter()\n"
    "for _ in range(n):\n"
    "    out.write(line)\n"
    "    replies.readline()\n"
    "print('rtt', n, time.perf_counter() - t, flush=True)\n"
)


class _FirstOutput(ProcessProtocol):
    """Fires C{first} at the first stdout bytes, C{ended} when the process is gone."""

    def __init__(self) -> None:
        self.first: defer.Deferred[float] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.stdout = b""

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.stdout += data
            if not self.first.called:
                self.first.callback(time.perf_counter())

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class _Echo(_FirstOutput):
    """Writes every line the child sends on fd 3 back on fd 4."""

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 3:
            self.transport.writeToChild(4, data)  # type: ignore[union-attr]
        else:
            super().childDataReceived(fd, data)


async def bare_spawn(reactor: Any) -> float:
    """Seconds from a bare spawnProcess of Python's hello world to its first output."""
    protocol = _FirstOutput()
    began = time.perf_counter()
    reactor.spawnProcess(protocol, SYSTEM_PYTHON, [SYSTEM_PYTHON, "-c", "print('hi')"], env={})
    first = await protocol.first
    await protocol.ended
    return first - began


async def bare_echo(reactor: Any, calls: int) -> float:
    """Round trips per second of the bare pipe echo."""
    protocol = _Echo()
    reactor.spawnProcess(protocol, SYSTEM_PYTHON, [SYSTEM_PYTHON, "-c", ECHO_CHILD, str(calls)],
                         env={}, childFDs={0: "w", 1: "r", 2: "r", 3: "r", 4: "w"})
    await protocol.ended
    _, n, seconds = protocol.stdout.decode().split()
    return int(n) / float(seconds)


class BenchError(Exception):
    pass


async def timed_run(reactor: Any, base: str, token: str, language: str) -> tuple[float, float]:
    """One run of L{HELLO}: (code sent to started, code sent to first output), in seconds."""
    socket = await client.connect(reactor, base, token)
    try:
        ready = await socket.wait_for_type("ready", "error")
        if ready["type"] != "ready":
            raise BenchError(ready["message"])
        socket.send_context(language)
        ready = await socket.wait_for_type("ready", "error")
        if ready["type"] != "ready":
            raise BenchError(f"{language}: {ready['message']}")
        sent = time.perf_counter()
        socket.send_code(HELLO[language])
        started = await socket.wait_for_type("started", "error")
        if started["type"] != "started":
            raise BenchError(f"{language}: {started['message']}")
        at_started = time.perf_counter()
        output = await socket.wait_for_type("output", "error")
        at_output = time.perf_counter()
        if output.get("message") != "hello":
            raise BenchError(f"{language}: {output}")
        outcome = await socket.outcome()
        if outcome.end is None or outcome.end["exit_code"] != 0:
            raise BenchError(f"{language}: {outcome.messages}, closed with"
                             f" {outcome.close_code} {outcome.close_reason!r}")
        return at_started - sent, at_output - sent
    finally:
        if socket.state == socket.STATE_OPEN:
            socket.dropConnection(abort=True)


async def latencies(reactor: Any, base: str, tokens: list[str], language: str,
                    runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """C{runs} timed runs (after C{warmup}), shared between the users, who run side by side."""
    for _ in range(warmup):
        await timed_run(reactor, base, tokens[0], language)
    to_started: list[float] = []
    to_output: list[float] = []

    async def user(token: str, count: int) -> None:
        for _ in range(count):
            started, output = await timed_run(reactor, base, token, language)
            to_started.append(started)
            to_output.append(output)

    shares = [runs // len(tokens) + (i < runs % len(tokens)) for i in range(len(tokens))]
    await defer.gatherResults(
        [defer.Deferred.fromCoroutine(user(token, share)) for token, share in zip(tokens, shares)],
        consumeErrors=True,
    )
    return to_started, to_output


async def interleaved_python(reactor: Any, base: str, token: str, runs: int, warmup: int
                             ) -> tuple[list[float], list[float]]:
    """C{runs} pairs, one after the other: a gameproto run of Python's hello world (code
    sent to first output) and a bare spawn of it."""
    for _ in range(warmup):
        await timed_run(reactor, base, token, "python")
        await bare_spawn(reactor)
    ours, bare = [], []
    for _ in range(runs):
        ours.append((await timed_run(reactor, base, token, "python"))[1])
        bare.append(await bare_spawn(reactor))
    return ours, bare


async def round_trips(reactor: Any, base: str, token: str, language: str, code: str,
                      engine: str = "client") -> float:
    """Run C{code}, which prints C{rtt N SECONDS}; its calls per second."""
    socket = await client.connect(reactor, base, token, on_command=lambda command: command)
    outcome = await socket.run(language, code, engine=engine,
                               arena="default" if engine == "arena" else None, timeout=120)
    lines = [line for line in outcome.stdout if line.startswith("rtt ")]
    if not lines or outcome.end is None or outcome.end["exit_code"] != 0:
        raise BenchError(f"{language} {engine}: {outcome.messages[-3:]}")
    _, n, seconds = lines[0].split()
    return int(n) / float(seconds)


async def main(reactor: Any, options: argparse.Namespace) -> None:
    base_dir = tempfile.mkdtemp(prefix="gameproto-bench-runs-", dir="/tmp")
    node_options = ["--store", "memory:", "--processor-dir", base_dir,
                    "--processor-max-runs", str(options.users), *UNTHROTTLED,
                    # a benchmark user starts far more than 30 runs a minute
                    "--processor-runs-per-minute", "1000000"]
    if os.geteuid() == 0:
        from tests.processor_support import run_uids

        uids = run_uids()
        if len(uids) < options.users:
            raise SystemExit(f"at most {len(uids)} users")
        node_options += ["--processor-uids", f"{uids[0]}-{uids[-1]}"]
    node = Node(*node_options)
    try:
        await node.start()
        base = node.ws_url("")
        tokens = []
        for i in range(options.users):
            name = f"bench{i}"
            status, _ = await http_json("POST", node.url("/api/users/sign_up/"),
                                        {"username": name, "password": "password1"})
            status, body = await http_json("POST", node.url("/api/token/"),
                                           {"username": name, "password": "password1"})
            if status != 200:
                raise BenchError(f"cannot sign up {name}: {status} {body}")
            tokens.append(str(body["token"]))

        print(f"# spawn to first output: {options.runs} runs per language, "
              f"{options.users} user(s) side by side (one run each at a time), "
              f"{options.warmup} warm-up run(s) not counted")
        print(f"{'language':<11} {'started p50':>11} {'p99':>9} {'output p50':>11} {'p99':>9}"
              f" {'runs/s':>7}")
        for language in options.languages:
            began = time.perf_counter()
            try:
                to_started, to_output = await latencies(
                    reactor, base, tokens, language, options.runs, options.warmup)
            except BenchError as e:
                print(f"{language:<11} unavailable: {e}")
                continue
            rate = len(to_output) / (time.perf_counter() - began)
            print(f"{language:<11} {percentile(to_started, 0.5) * 1000:>8.1f} ms"
                  f" {percentile(to_started, 0.99) * 1000:>6.1f} ms"
                  f" {percentile(to_output, 0.5) * 1000:>8.1f} ms"
                  f" {percentile(to_output, 0.99) * 1000:>6.1f} ms {rate:>7.1f}")

        print(f"\n# engine round trips of one process: {options.calls} calls per program"
              f" (client relay, arena GetNotifications); {options.arena_commands} arena"
              " commands (Python)")
        print(f"{'language':<11} {'client relay/s':>15} {'arena GetNotifications/s':>25}")
        for language in options.languages:
            try:
                relay = await round_trips(reactor, base, tokens[0], language, CALLS[language].format(
                    n=options.calls, command=RELAY_COMMAND[language]))
                arena = await round_trips(reactor, base, tokens[0], language, CALLS[language].format(
                    n=options.calls, command=NOTIFICATIONS_COMMAND[language]), engine="arena")
            except BenchError as e:
                print(f"{language:<11} unavailable: {e}")
                continue
            print(f"{language:<11} {relay:>15,.0f} {arena:>25,.0f}")
        if "python" in options.languages:
            ticked = await round_trips(reactor, base, tokens[0], "python", ARENA_COMMANDS.format(
                n=options.arena_commands), engine="arena")
            print(f"python arena ConfigurePlayerCommand (applied at the tick): {ticked:,.1f}/s")

        print(f"\n# against the floor, in this run: {options.runs} interleaved pairs of Python"
              f" hello world; {options.calls} round trips each")
        ours, bare = await interleaved_python(reactor, base, tokens[0], options.runs, options.warmup)
        arena_rates, echo_rates = [], []
        for _ in range(5):
            arena_rates.append(await round_trips(
                reactor, base, tokens[0], "python",
                CALLS["python"].format(n=options.calls, command=NOTIFICATIONS_COMMAND["python"]),
                engine="arena"))
            echo_rates.append(await bare_echo(reactor, options.calls))
        arena_rate, echo_rate = sorted(arena_rates)[2], sorted(echo_rates)[2]
        print(f"bare spawnProcess of python3 hello: p50 {percentile(bare, 0.5) * 1000:.1f} ms"
              f", p99 {percentile(bare, 0.99) * 1000:.1f} ms")
        print(f"bare pipe echo: {echo_rate:,.0f} round trips/s (median of 5)")
        print(f"python arena GetNotifications: {arena_rate:,.0f} round trips/s (median of 5)")
        print(f"spawn-to-first-output p50: gameproto {percentile(ours, 0.5) * 1000:.1f} ms /"
              f" bare {percentile(bare, 0.5) * 1000:.1f} ms ="
              f" {percentile(ours, 0.5) / percentile(bare, 0.5):.2f}x (goal: at most 3x)")
        print(f"engine round trips: arena {arena_rate:,.0f}/s / bare echo {echo_rate:,.0f}/s ="
              f" {arena_rate / echo_rate:.2f}x (goal: at least 0.6x)")
    except Exception:
        print(node.text()[-6000:], file=sys.stderr)
        raise
    finally:
        await node.stop()
        shutil.rmtree(base_dir, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="timed runs per language")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted runs per language")
    parser.add_argument("--users", type=int, default=2,
                        help="users running side by side (and --processor-max-runs)")
    parser.add_argument("--calls", type=int, default=5000, help="engine calls per program")
    parser.add_argument("--arena-commands", type=int, default=100,
                        help="tick-bound arena commands of the Python program")
    parser.add_argument("--languages", nargs="+", choices=LANGUAGES, default=list(LANGUAGES))
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, arguments)))
