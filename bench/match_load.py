"""
Match load: M matches × (2 players + S spectators) against a real gameproto server,
next to the same load on a bare Autobahn broadcast loop, in one run.

For each server the benchmark connects the same sockets, lets the games run for
--duration seconds and prints:

- status frames delivered per second to all clients (and the ideal, M·(2+S)/tick);
- tick lateness p50/p99 as measured by the server (how late each tick ran
  compared with its schedule; gameproto logs it at shutdown, the bare server
  prints it);
- the client-side gap between consecutive status frames of one socket, p50/p99.

The bare server does what the match service does per tick, and nothing else: one
LoopingCall per match, one JSON status of the same size encoded once and sent as a
prepared message to the match's sockets.  No auth, no game, no store.

    .venv/bin/python bench/match_load.py -M 20 -S 5 --duration 10

Players send a paddle command every 10th status frame (10 per second at 100 Hz).
The clients share this one process, so a saturated client can be the limit: the
comparison with the bare server shows it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from typing import Any

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import UNTHROTTLED, percentile, serve_bare  # noqa: E402
from gameproto.client import match as client  # noqa: E402
from gameproto.client.rest import RestClient  # noqa: E402
from tests.nodes import Node, ServerProcess  # noqa: E402

STATUS = (
    b'{"message_type":"status","has_bounced":false,"left_paddle_margin_reached":false,'
    b'"right_paddle_margin_reached":false,"left_score":0,"right_score":0,'
    b'"left_paddle_y":0.5,"right_paddle_y":0.5,"ball_x":0.503,"ball_y":0.5055,'
    b'"match_time":0,"sudden_death":false}'
)

# -- the bare Autobahn server (run in its own process with --bare-server) -------


def bare_server(tick: float) -> None:
    from autobahn.twisted.resource import WebSocketResource
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet import reactor

    groups: dict[str, set[Any]] = {}
    loops: dict[str, task.LoopingCall] = {}
    lateness: list[float] = []
    factory = WebSocketServerFactory()

    def run_group(name: str) -> None:
        state = {"ticks": 0}
        loop: task.LoopingCall

        def step(count: int) -> None:
            state["ticks"] += count
            expected = loop.starttime + state["ticks"] * loop.interval
            lateness.append(max(0.0, reactor.seconds() - expected))
            prepared = factory.prepareMessage(STATUS)
            for proto in list(groups[name]):
                if proto.state == proto.STATE_OPEN:
                    proto.sendPreparedMessage(prepared)

        loop = task.LoopingCall.withCount(step)
        loops[name] = loop
        loop.start(tick, now=False)

    class Broadcast(WebSocketServerProtocol):
        def onConnect(self, request: Any) -> None:
            self.group = request.path.rstrip("/").rsplit("/", 1)[-1]

        def onOpen(self) -> None:
            groups.setdefault(self.group, set()).add(self)
            self.sendMessage(b'{"status":"success","code":0}')
            if self.group not in loops:
                run_group(self.group)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            pass

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            groups.get(getattr(self, "group", ""), set()).discard(self)

    factory.protocol = Broadcast
    factory.setProtocolOptions(autoPingInterval=30, autoPingTimeout=10)
    serve_bare(reactor, b"game", WebSocketResource(factory), lateness,
               "Tick lateness: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {count} ticks")


def start_bare(tick: float) -> ServerProcess:
    return ServerProcess(
        [sys.executable, os.path.abspath(__file__), "--bare-server", "--tick", str(tick)]
    )


# -- the load ---------------------------------------------------------------------


class Meter:
    """Counts status frames and records gaps between a socket's consecutive statuses."""

    def __init__(self) -> None:
        self.counting = False
        self.statuses = 0
        self.gaps: list[float] = []

    def attach(self, socket: client.MatchClient, player: bool) -> None:
        last = [0.0]
        seen = [0]

        def on_frame(frame: Any) -> None:
            if frame.get("message_type") != "status":
                return
            now = time.perf_counter()
            if self.counting:
                self.statuses += 1
                if last[0]:
                    self.gaps.append(now - last[0])
            last[0] = now
            seen[0] += 1
            if player and seen[0] % 10 == 0 and socket.state == socket.STATE_OPEN:
                socket.command("up" if (seen[0] // 10) % 2 else "down")

        socket.on_frame = on_frame
        socket.keep_frames = False  # counted by on_frame; nobody awaits them


async def gameproto_load(reactor: Any, server: ServerProcess, m: int, s: int) -> list[client.MatchClient]:
    api = RestClient(reactor, server.http)
    limit = defer.DeferredSemaphore(8)

    async def user(name: str) -> str:
        await limit.run(lambda: defer.ensureDeferred(api.sign_up(name, "benchpass1")))
        return await limit.run(lambda: defer.ensureDeferred(api.token(name, "benchpass1")))

    names = [f"h{i}" for i in range(m)] + [f"c{i}" for i in range(m)]
    names += [f"s{i}_{j}" for i in range(m) for j in range(s)]
    tokens = dict(zip(names, await defer.gatherResults(
        [defer.ensureDeferred(user(n)) for n in names])))
    sockets: list[client.MatchClient] = []
    for i in range(m):
        match_id = (await api.as_user(tokens[f"h{i}"]).create_match())["id"]
        host = await client.connect(reactor, server.ws, tokens[f"h{i}"], match_id, "host")
        challenger = await client.connect(reactor, server.ws, tokens[f"c{i}"], match_id, "challenger")
        await challenger.next_frame(10)
        challenger.command("ready")
        await host.wait_for(lambda f: f.get("challenger_ready") is True, 10)
        watchers = [
            await client.connect(reactor, server.ws, tokens[f"s{i}_{j}"], match_id, "spectator")
            for j in range(s)
        ]
        host.command("start_match")
        await host.wait_for_type("init", 10)
        sockets += [host, challenger, *watchers]
    return sockets


async def bare_load(reactor: Any, server: ServerProcess, m: int, s: int) -> list[client.MatchClient]:
    sockets = []
    for i in range(m):
        for _ in range(2 + s):
            sockets.append(await client.connect(reactor, server.ws, None, f"g{i}", None))
    return sockets


async def measure(reactor: Any, sockets: list[client.MatchClient], players_per_match: int,
                  per_match: int, duration: float, warmup: float) -> Meter:
    meter = Meter()
    for index, socket in enumerate(sockets):
        meter.attach(socket, index % per_match < players_per_match)
    await task.deferLater(reactor, warmup, lambda: None)
    meter.counting = True
    started = time.perf_counter()
    await task.deferLater(reactor, duration, lambda: None)
    meter.counting = False
    meter.elapsed = time.perf_counter() - started  # type: ignore[attr-defined]
    return meter


_LATENESS = re.compile(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms over (\d+) ticks")


async def run(reactor: Any, options: argparse.Namespace) -> None:
    m, s = options.matches, options.spectators
    ideal = m * (2 + s) / options.tick
    print(f"# {m} matches x (2 players + {s} spectators) = {m * (2 + s)} sockets, "
          f"tick {options.tick * 1000:g} ms, {options.duration:g} s measured; "
          f"ideal {ideal:,.0f} status frames/s")
    rows = []
    for name in options.servers * options.rounds:
        if name == "gameproto":
            directory = tempfile.mkdtemp(prefix="gameproto-bench-")
            server: ServerProcess = Node(
                "--store", "sqlite:" + os.path.join(directory, "bench.sqlite3"),
                "--match-tick", str(options.tick), "--connections-per-address", "100000",
                *UNTHROTTLED, cwd=directory,
            )
        else:
            server = start_bare(options.tick)
        await server.start()
        loader = gameproto_load if name == "gameproto" else bare_load
        sockets = await loader(reactor, server, m, s)
        meter = await measure(reactor, sockets, 2, 2 + s, options.duration, options.warmup)
        for socket in sockets:
            socket.dropConnection(abort=True)
        await server.stop()
        found = _LATENESS.findall(server.log())
        late50, late99 = (float(found[0][0]), float(found[0][1])) if found else (float("nan"),) * 2
        gap50, gap99 = (percentile(meter.gaps, f, float("nan")) for f in (0.5, 0.99))
        rate = meter.statuses / meter.elapsed  # type: ignore[attr-defined]
        rows.append((name, rate, late50, late99, 1000 * gap50, 1000 * gap99))
    print(f"{'server':<14} {'status/s':>10} {'of ideal':>9} {'tick late p50':>14} "
          f"{'p99':>8} {'client gap p50':>15} {'p99':>8}")
    for name, rate, late50, late99, gap50, gap99 in rows:
        print(f"{name:<14} {rate:>10,.0f} {rate / ideal:>8.1%} {late50:>11.2f} ms "
              f"{late99:>5.2f} ms {gap50:>12.2f} ms {gap99:>5.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-M", "--matches", type=int, default=20)
    parser.add_argument("-S", "--spectators", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--tick", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate the servers this many times (a noisy machine shows)")
    parser.add_argument("--only", choices=["gameproto", "bare"], help="run one server only")
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    options.servers = [n for n in ("gameproto", "bare autobahn")
                       if options.only is None or n.startswith(options.only)]
    if options.bare_server:
        bare_server(options.tick)
        return
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
