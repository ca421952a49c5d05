"""
Soak: chat (WebSocket and polling), matches, arenas and processor runs driven together
against one real node on a real redis-server for a chosen time, then idle; whatever
the traffic left behind shows as a figure that does not come back.

Every minute (and at each phase's end) it prints, read from the node's metrics
endpoint and from the machine: the node's RSS, its open fds, the reactor's pending
timers, its open connections, the processes of the run uids, the files under the
processor's directory, and the keys in Redis.

Phases: warm-up traffic, then idle (the baseline is read at its end); the soak's
traffic, then idle again (the final figures).  The last lines compare the final
figures with the baseline (the acceptance: each within 5 %, or within a small
absolute margin for counts that are near zero).

    sudo .venv/bin/python bench/soak.py --duration 1800      # 30 minutes (root: the processor)
    .venv/bin/python bench/soak.py --duration 60 --warmup 30 --idle 30   # a quick look
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time
from functools import partial
from typing import Any, Callable

from twisted.internet import defer, task
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.chat_fanout import Bench as ChatBench  # noqa: E402
from bench.common import UNTHROTTLED  # noqa: E402
from gameproto import wire  # noqa: E402
from gameproto.client import arena as arena_client  # noqa: E402
from gameproto.client import match as match_client  # noqa: E402
from gameproto.client import processor as processor_client  # noqa: E402
from gameproto.client.rest import RestClient  # noqa: E402
from tests.nodes import Node  # noqa: E402
from tests.redisserver import RedisServer  # noqa: E402

PROGRAMS = [
    ("python", 'print("hello")\n'),
    ("python", "from gameproto_sdk import send\nfor i in range(200):\n    send({'n': i})\n"),
    ("javascript", 'console.log("hello");\n'),
    ("ruby", 'puts "hello"\n'),
    ("php", 'echo "hello\\n";\n'),
    ("python", "import time\ntime.sleep(30)\n"),  # the client leaves mid-run
]
# What the store keeps for good (accounts, tokens, completed matches, arenas): it grows
# with the traffic by design.  Every other key (waiting and started matches, roles,
# leases, chat names, nodes) must be gone once the traffic is.
DURABLE_KEYS = ("gp:user", "gp:users", "gp:token", "gp:completed", "gp:arena:", "gp:arenas")
FIGURES = ("rss_mib", "fds", "timers", "connections", "run_processes", "run_files", "redis_keys")
# Counts that are near zero: the comparison allows this much besides the 5 %.
ABSOLUTE_MARGIN = {"fds": 3, "timers": 3, "connections": 0, "run_processes": 0,
                   "run_files": 0, "redis_keys": 2}


class Soak:
    def __init__(self, reactor: Any, options: argparse.Namespace) -> None:
        self.reactor = reactor
        self.options = options
        self.redis = RedisServer()
        self.runs_dir = tempfile.mkdtemp(prefix="gameproto-soak-runs-")
        self.node = Node(
            "--redis", self.redis.url, "--metrics-port", "tcp:0:interface=127.0.0.1",
            "--processor-dir", self.runs_dir, "--processor-uids", options.processor_uids,
            "--processor-runs-per-minute", "600", *UNTHROTTLED,
        )
        first, _, last = options.processor_uids.partition("-")
        self.run_uids = range(int(first), int(last or first) + 1)
        self.metrics_url = ""
        self.traffic = False
        self.errors: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.tokens: list[str] = []
        self.pool: Any = None

    # -- measuring ----------------------------------------------------------------------

    async def figures(self) -> dict[str, float]:
        response = await Agent(self.reactor).request(b"GET", self.metrics_url.encode())
        text = (await readBody(response)).decode()

        def metric(name: str) -> float:
            return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

        files = sum(len(f) + len(d) for _, d, f in os.walk(self.runs_dir))
        return {
            "rss_mib": metric("process_resident_memory_bytes") / 2**20,
            "fds": metric("process_open_fds"),
            "timers": metric("gameproto_reactor_delayed_calls"),
            "connections": metric("gameproto_connections_open"),
            "run_processes": float(len(processes_of(self.run_uids))),
            "run_files": float(files),
            "redis_keys": float(sum(1 for key in await self.pool.keys("*")
                                    if not durable(key))),
        }

    async def report(self, phase: str) -> dict[str, float]:
        figures = await self.figures()
        done = ", ".join(f"{k} {v}" for k, v in sorted(self.done.items()))
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        print(f"{time.strftime('%H:%M:%S')} {phase:8} "
              + "  ".join(f"{k} {figures[k]:.1f}" for k in FIGURES)
              + f"  | load {os.getloadavg()[0]:.2f} | done: {done} | errors: {errors}",
              flush=True)
        return figures

    async def phase(self, name: str, seconds: float, traffic: bool) -> dict[str, float]:
        self.traffic = traffic
        workers = [defer.ensureDeferred(w()) for w in self.workers()] if traffic else []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await task.deferLater(self.reactor, min(self.options.report_every,
                                                    max(0.0, end - time.monotonic())),
                                  lambda: None)
            if time.monotonic() < end:
                await self.report(name)
        self.traffic = False
        await defer.DeferredList(workers)
        return await self.report(name)

    # -- traffic ------------------------------------------------------------------------

    def workers(self) -> list[Callable[[], Any]]:
        """Every worker of the traffic, each with users of its own (one run, one match at
        a time per user: shared users would only be refused)."""
        o = self.options
        users = iter(self.tokens)
        return ([self.chat_worker] * o.chat + [self.polling_worker] * o.polling
                + [partial(self.match_worker, next(users), next(users)) for _ in range(o.matches)]
                + [partial(self.arena_worker, next(users)) for _ in range(o.arena)]
                + [partial(self.processor_worker, next(users)) for _ in range(o.processor)])

    async def guarded(self, kind: str, work: Callable[[], Any]) -> None:
        try:
            await work()
            self.done[kind] = self.done.get(kind, 0) + 1
        except Exception as e:  # a soak goes on; the error is counted and shown
            key = f"{kind}: {type(e).__name__}"
            if key not in self.errors:
                print(f"# first {key}: {e}", flush=True)
            self.errors[key] = self.errors.get(key, 0) + 1
        await task.deferLater(self.reactor, random.uniform(0.1, 0.5), lambda: None)

    async def chat_worker(self) -> None:
        while self.traffic:
            await self.guarded("chat", self.chat_session)

    async def chat_session(self) -> None:
        bench = ChatBench()
        name = f"s{random.randrange(10**9)}"
        member = await bench.join(self.reactor, self.node.port, name, "127.0.0.1")
        try:
            for i in range(random.randint(5, 30)):
                await member.call("message", {"message": str(time.perf_counter())})
                await task.deferLater(self.reactor, 0.1, lambda: None)
        finally:
            member.sendClose()

    async def polling_worker(self) -> None:
        while self.traffic:
            await self.guarded("polling", self.polling_session)

    async def polling_session(self) -> None:
        """A polling session that joins, says something, and is abandoned (the server
        closes it after the ping timeout)."""
        agent, base = Agent(self.reactor), f"{self.node.http}/socket.io/?EIO=4&transport=polling"
        response = await agent.request(b"GET", base.encode())
        body = (await readBody(response)).decode()
        sid = wire.decode(body[1:])["sid"]
        url = f"{base}&sid={sid}".encode()
        for packet in ("40" + wire.encode({"room": "soak"}).decode(),
                       '42["register","p' + sid[:8] + '"]'):
            posted = await agent.request(b"POST", url, Headers(), _body(packet))
            await readBody(posted)
            polled = await agent.request(b"GET", url)
            await readBody(polled)

    async def match_worker(self, one: str, other: str) -> None:
        while self.traffic:
            await self.guarded("match", partial(self.match, *random.sample([one, other], 2)))

    async def match(self, host_token: str, challenger_token: str) -> None:
        """A match: both sit down, the host starts, they play it to the end and leave (a
        match that never started is deleted)."""
        rest = RestClient(self.reactor, self.node.http, host_token)
        created = await rest.create_match()
        host = await match_client.connect(self.reactor, self.node.ws, host_token, created["id"], "host")
        challenger = await match_client.connect(self.reactor, self.node.ws, challenger_token,
                                                created["id"], "challenger")
        challenger.keep_frames = False
        try:
            challenger.command("ready")
            await task.deferLater(self.reactor, 0.2, lambda: None)
            host.command("start_match")
            # Play to the end (a user is in one match at a time): random paddles.
            over = defer.ensureDeferred(
                host.wait_for(lambda f: f.get("message_type") in ("end", "aborted"), 600))
            while not over.called:
                host.command(random.choice(["up", "down", "fup", "fdown"]))
                challenger.command(random.choice(["up", "down"]))
                await task.deferLater(self.reactor, 0.1, lambda: None)
            await over
        finally:
            for socket in (host, challenger):
                socket.close()
            await self.delete_if_waiting(rest, created["id"])

    async def delete_if_waiting(self, rest: RestClient, match_id: int) -> None:
        # 204 deleted; 404 over or aborted already; a started match cannot be deleted.
        await rest.call("DELETE", f"/api/ongoing_matches/{match_id}/")

    async def arena_worker(self, token: str) -> None:
        while self.traffic:
            await self.guarded("arena", partial(self.arena_bot, token))

    async def arena_bot(self, token: str) -> None:
        bot = await arena_client.connect(self.reactor, self.node.ws, "default", "player", token,
                                         ignore=("RadarScanNotification",
                                                 "GameSnapshotNotification"))
        try:
            await bot.register()
            for _ in range(random.randint(10, 60)):
                bot.send({"type": "MovePlayerCommand",
                          "data": [{"rotate": random.randint(0, 359)}, {"move": "forward"}]})
                await task.deferLater(self.reactor, 0.1, lambda: None)
        finally:
            bot.close()

    async def processor_worker(self, token: str) -> None:
        while self.traffic:
            await self.guarded("processor", partial(self.program, token))

    async def program(self, token: str) -> None:
        language, code = random.choice(PROGRAMS)
        runner = await processor_client.connect(self.reactor, self.node.ws, token)
        if "sleep" in code:
            started = runner.wait_for_type("started")
            runner.send_context(language)
            await runner.wait_for_type("ready")
            runner.send_code(code)
            await started
            runner.close()  # the client leaves mid-run: the run must be stopped
            return
        outcome = await runner.run(language, code)
        if outcome.close_code != 1000:
            raise RuntimeError(f"run closed with {outcome.close_code}")

    # -- the whole soak -----------------------------------------------------------------

    async def run(self) -> int:
        from gameproto.redis import RedisURL, connection_pool

        await self.redis.start()
        try:
            await self.node.start()
            found = re.search(r"metrics on (http://\S+/metrics)", self.node.text())
            assert found is not None, self.node.text()
            self.metrics_url = found.group(1)
            self.pool = connection_pool(self.reactor, RedisURL.parse(self.redis.url))
            o = self.options
            for i in range(o.chat + o.polling + 2 * o.matches + o.arena + o.processor):
                api = RestClient(self.reactor, self.node.http)
                await api.sign_up(f"soak{i}", "password1")
                self.tokens.append(await api.token(f"soak{i}", "password1"))
            o = self.options
            print(f"# soak: warm-up {o.warmup:.0f} s, idle {o.idle:.0f} s, soak {o.duration:.0f} s,"
                  f" idle {o.idle:.0f} s; {o.chat} chat + {o.polling} polling clients,"
                  f" {o.matches} matches, {o.arena} arena bots, {o.processor} program runners"
                  f" at a time; node on {self.redis.url}", flush=True)
            await self.report("start")
            await self.phase("warm-up", o.warmup, traffic=True)
            baseline = await self.phase("idle", o.idle, traffic=False)
            await self.phase("soak", o.duration, traffic=True)
            final = await self.phase("idle", o.idle, traffic=False)
            return compare(baseline, final)
        finally:
            if self.pool is not None:
                await self.pool.disconnect()
            await self.node.stop()
            await self.redis.stop()
            shutil.rmtree(self.runs_dir, ignore_errors=True)


def compare(baseline: dict[str, float], final: dict[str, float]) -> int:
    """Print the final figures against the baseline; 0 if every one is back, else 1."""
    failed = 0
    for name in FIGURES:
        allowed = max(0.05 * baseline[name], ABSOLUTE_MARGIN.get(name, 0))
        ok = abs(final[name] - baseline[name]) <= allowed
        failed += not ok
        print(f"{name:14} baseline {baseline[name]:10.1f}  final {final[name]:10.1f}  "
              f"{'back' if ok else 'NOT BACK'} (within {allowed:.1f})")
    print("soak: every figure is back" if not failed else f"soak: {failed} figure(s) not back")
    return 1 if failed else 0


def durable(key: str) -> bool:
    """A key of data kept for good (an arena's lease is not: it lives with its node)."""
    return key.startswith(DURABLE_KEYS) and not key.endswith(":lease")


def processes_of(uids: range) -> list[int]:
    """Every process of a run uid, zombies included (the launcher's own /proc reading)."""
    from gameproto.processor.launcher.procfs import live_processes_by_uid

    found = live_processes_by_uid(set(uids), zombies=True)
    return sorted(pid for pids in found.values() for pid in pids)


def _body(text: str) -> Any:
    from io import BytesIO

    from twisted.web.client import FileBodyProducer

    return FileBodyProducer(BytesIO(text.encode()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="soak traffic, seconds")
    parser.add_argument("--warmup", type=float, default=120.0)
    parser.add_argument("--idle", type=float, default=90.0,
                        help="quiet time after each traffic phase (above the chat's 45 s timeouts)")
    parser.add_argument("--report-every", type=float, default=60.0)
    parser.add_argument("--chat", type=int, default=8)
    parser.add_argument("--polling", type=int, default=2)
    parser.add_argument("--matches", type=int, default=3)
    parser.add_argument("--arena", type=int, default=6)
    parser.add_argument("--processor", type=int, default=2)
    parser.add_argument("--processor-uids", default="63000-63007")
    options = parser.parse_args()

    def start(reactor: Any) -> defer.Deferred[None]:
        d = defer.ensureDeferred(Soak(reactor, options).run())

        def done(code: int) -> None:
            if code:
                raise SystemExit(code)  # react exits with it

        return d.addCallback(done)

    task.react(start)


if __name__ == "__main__":
    main()
