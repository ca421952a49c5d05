"""
Bot-vs-bot matches: N concurrent matches, each played by two processor programs (the
Python example bot, examples/pong_bot.py, as host and as challenger) through the match
engine of a real C{twistd -n gameproto} process, for C{--duration} seconds.

Printed:

- whether frames come on time: the server's tick lateness p50/p99 over every tick of every
  match (its log line at shutdown: how late each 100 Hz tick ran), and the status frames
  each bot read per second (p50 and the slowest bot; the loop sends 100 a second, a bot
  that reads slower sees only the latest);
- engine calls per second, all bots together and per bot (p50);
- the load average (1, 5, 15 min) before and after: a figure taken while something else
  loads the machine is not a figure.

The bots count their own calls: a few lines put before the example wrap the SDK's C{send}
and print C{progress SECONDS FRAMES CALLS} about once a second.  As root the server gets
run uids 61000 and up (one per program) and the isolated sandbox.

    .venv/bin/python bench/match_bots.py -N 50 --duration 30

Client and server share this machine: the figures include the client's own time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import UNTHROTTLED, percentile  # noqa: E402
from gameproto.client import processor as client  # noqa: E402
from tests.nodes import Node, http_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_UID = 61000

#: Put before the example: counts engine calls and status frames read, prints them.
COUNTING = '''\
import time as _time
import gameproto_sdk as _sdk

_send, _count = _sdk.send, {"calls": 0, "frames": 0, "next": _time.monotonic() + 1}


def _counting_send(command):
    reply = _send(command)
    _count["calls"] += 1
    if isinstance(reply, dict) and reply.get("message_type") == "status":
        _count["frames"] += 1
    now = _time.monotonic()
    if now >= _count["next"]:
        _count["next"] = now + 1
        print("progress", now, _count["frames"], _count["calls"], flush=True)
    return reply


_sdk.send = _counting_send
'''

_LATENESS = re.compile(
    r"Tick lateness of (\d+) running match\(es\): p50 ([\d.]+) ms, p99 ([\d.]+) ms over (\d+) ticks")


def bot_code() -> str:
    with open(os.path.join(ROOT, "examples", "pong_bot.py")) as f:
        return COUNTING + f.read()


class Bot:
    """One program's progress lines: (seconds, frames read, engine calls)."""

    def __init__(self) -> None:
        self.progress: list[tuple[float, int, int]] = []
        self.errors: list[str] = []

    def output(self, stream: str, line: str) -> None:
        if stream == "stdout" and line.startswith("progress "):
            _, seconds, frames, calls = line.split()
            self.progress.append((float(seconds), int(frames), int(calls)))
        elif stream == "stderr":
            self.errors.append(line)

    def rates(self, since: float, until: float) -> tuple[float, float] | None:
        """
        Frames read and calls per second between this bot's first and last progress lines
        inside the window (a bot whose match ended in the window counts for its part).
        """
        inside = [p for p in self.progress if since <= p[0] <= until]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        (t0, f0, c0), (t1, f1, c1) = inside[0], inside[-1]
        return (f1 - f0) / (t1 - t0), (c1 - c0) / (t1 - t0)

    def calls_between(self, since: float, until: float) -> int:
        """The engine calls this bot made in the window, as its progress lines count them."""
        def calls_at(moment: float) -> int:
            before = [p[2] for p in self.progress if p[0] <= moment]
            return before[-1] if before else 0
        return calls_at(until) - calls_at(since)


async def sign_up(node: Node, name: str) -> str:
    status, _ = await http_json("POST", node.url("/api/users/sign_up/"),
                                {"username": name, "password": "password1"})
    assert status == 201, status
    status, body = await http_json("POST", node.url("/api/token/"),
                                   {"username": name, "password": "password1"})
    assert status == 200, status
    return str(body["token"])


async def run(reactor: Any, options: argparse.Namespace) -> None:
    n = options.matches
    before = os.getloadavg()
    print(f"# {n} bot-vs-bot matches ({2 * n} processor programs), {options.duration:g} s "
          f"measured after {options.warmup:g} s; load average before "
          + " ".join(f"{x:.2f}" for x in before))
    base = tempfile.mkdtemp(prefix="gameproto-bench-runs-", dir="/tmp")
    node_options = [
        "--store", "memory:", "--processor-dir", base, *UNTHROTTLED,
        "--processor-max-runs", str(2 * n), "--processor-runs-per-minute", "1000",
        "--processor-engine-wait-limit", "3600", "--processor-session-limit", "3600",
        # Fifty matches on two cores stretch each program's own time past the default
        # ten seconds: the bench measures the loop and the engine, not the run limits.
        "--processor-time-limit", "3600", "--processor-cpu-limit", "3600",
    ]
    if os.geteuid() == 0:
        node_options += ["--processor-uids", f"{FIRST_UID}-{FIRST_UID + 2 * n - 1}"]
    node = Node(*node_options)
    await node.start()
    sockets: list[client.ProcessorClient] = []
    try:
        code = bot_code()
        bots: list[Bot] = []
        outcomes = []
        for i in range(n):
            host, challenger = await sign_up(node, f"h{i}"), await sign_up(node, f"c{i}")
            status, match = await http_json("POST", node.url("/api/ongoing_matches/"), {},
                                            token=host)
            assert status == 201, status
            for token, role in ((host, "host"), (challenger, "challenger")):
                bot = Bot()
                socket = await client.connect(reactor, node.ws_url(""), token,
                                              on_output=bot.output)
                sockets.append(socket)
                bots.append(bot)
                outcomes.append(defer.ensureDeferred(socket.run(
                    "python", code, engine="match", match=match["id"], role=role,
                    timeout=options.warmup + options.duration + 60)))
        await task.deferLater(reactor, options.warmup, lambda: None)
        start = time.monotonic()  # the bots' clock (CLOCK_MONOTONIC) too
        await task.deferLater(reactor, options.duration, lambda: None)
        end = time.monotonic()
        for socket in sockets:
            if socket.state == socket.STATE_OPEN:  # a match may have ended already
                socket.stop()
        ended = await defer.gatherResults(outcomes)
        rates = [r for r in (bot.rates(start, end) for bot in bots) if r is not None]
        failed = [bot.errors[-1] for bot in bots if bot.errors]
        failed += [e["message"].splitlines()[-1] for o in ended for e in o.errors("SERVER_ERROR")]
    finally:
        for socket in sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)
        await node.stop()
        shutil.rmtree(base, True)
    after = os.getloadavg()
    found = _LATENESS.findall(node.log())
    if found:
        running, p50, p99, ticks = found[-1]
        print(f"tick lateness (server, every tick of {running} match(es)): p50 {p50} ms, "
              f"p99 {p99} ms over {ticks} ticks")
    else:
        print("tick lateness: no line in the server's log (no match was running at the end)")
    frames = [r[0] for r in rates]
    calls = [r[1] for r in rates]
    print(f"status frames read per bot: p50 {percentile(frames, 0.5):.1f}/s, slowest "
          f"{min(frames, default=0):.1f}/s (the loop sends 100/s); {len(rates)} of "
          f"{len(bots)} bots measured")
    window = end - start
    total_calls = sum(bot.calls_between(start, end) for bot in bots) / window
    print(f"engine calls: {total_calls:,.0f}/s in all, p50 {percentile(calls, 0.5):.1f}/s per "
          f"bot while its match ran")
    finished = sum(1 for o in ended if len(o.stdout) >= 2 and o.stdout[-2].startswith("end "))
    print(f"matches played to their end by the bots: {finished // 2} of {n}")
    print(f"runs ended: {sum(1 for o in ended if o.end is not None)} of {len(ended)}; "
          f"with error output: {len(failed)}" + (f" (last: {failed[-1]})" if failed else ""))
    print("load average after: " + " ".join(f"{x:.2f}" for x in after))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-N", "--matches", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds after the programs are sent, not measured")
    options = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, options)))


if __name__ == "__main__":
    main()
