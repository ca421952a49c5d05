"""
Idle connections: what N idle connections cost one server process, in memory (RSS
growth per connection) and in the per-tick cost of the games running beside them.

Memory, one fresh server process per row:

- Socket.IO over WebSocket and over polling, each on gameproto (C{--store memory:}),
  on Node's official socket.io server (bench/peers/node_socketio_chat.js) and on
  python-socketio with aiohttp (bench/peers/python_socketio_chat.py): official
  socket.io-client members of the chat of docs/chat.md, in rooms of --room-size,
  each registered (its ack awaited);
- gameproto's match spectators (C{/ws/game/{id}/?role=spectator}, authenticated,
  --per-match in each unstarted match) and arena players (C{/ws/arena/{id}/player},
  registered, 64 to an unstarted arena with the default config otherwise).

For each: --warmup clients first, then the server's settled RSS (VmRSS of
/proc/PID/status, read every second until it stops growing) as the base; then N more
clients (and, for spectators and arena players, the matches and arenas they need:
those count in the growth); then the run waits until every client has had at least one
heartbeat ping (Engine.IO's every 25 s on all three Socket.IO servers; the WebSocket
ping of the match and arena endpoints every 30 s), reads the settled RSS again and
prints (RSS - base) / N, then the server's CPU time over a 30 s idle window (one ping
interval of every protocol; utime + stime of /proc/PID/stat) and how many clients are
still open.

Per-tick cost: one started match (two players, as in bench/match_load.py) and one
arena with four bots (as in bench/arena_load.py) on a gameproto node, once with no
other connection and once with N idle connections elsewhere on the server (half
Socket.IO WebSocket members, half spectators of other, unstarted matches), connected
before the match and the arena start.  Over a --duration window the server's own
histograms (gameproto_tick_lateness_seconds and gameproto_tick_duration_seconds on
--metrics-port, read before and after the window) give each game's tick lateness
p50/p99 (interpolated within the histogram's buckets, as Prometheus does) and its mean
tick duration; the lateness lines the server logs at shutdown are printed beside them.

    .venv/bin/python bench/idle_connections.py -N 10000

The clients are official socket.io-client sockets and `ws` WebSockets in one node
process (bench/idle_clients.js), each from its own loopback address 127.1.X.Y; the
script raises its RLIMIT_NOFILE to the hard limit, which the servers and the clients
inherit.  It needs what bench/chat_fanout.py's peer comparison needs (`make bench-deps`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from twisted.internet import defer, task
from twisted.web.client import Agent, readBody

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import arena_load, match_load  # noqa: E402
from bench.chat_fanout import NODE_PEER, PEER, peer_missing  # noqa: E402
from bench.common import UNTHROTTLED, cpu_seconds  # noqa: E402
from gameproto.auth import hash_password, new_token, token_digest  # noqa: E402
from gameproto.store import TokenRecord, User  # noqa: E402
from gameproto.store.sqlite import SQLiteStore  # noqa: E402
from tests.nodes import Lines, Node, ServerProcess, http_json  # noqa: E402
from tests.redisserver import free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS_JS = os.path.join(HERE, "idle_clients.js")
SERVERS = ("gameproto", "node socket.io", "python-socketio")
ARENA_PLAYERS = 64  # the largest max_players an arena allows
PASSWORD = "benchpass1"
# The caps a benchmark needs out of the way, set through options (never the defaults):
# matches waiting for their host longer than a run, more arenas per user and per server.
GAMEPROTO_OPTIONS = (*UNTHROTTLED, "--match-lobby-timeout", "86400",
                     "--arena-max", "1000", "--arena-max-per-user", "1000")


# -- the server process, seen from /proc ---------------------------------------------


def rss_kb(pid: int) -> int:
    """The process's resident set size, in KB (1024 bytes, as /proc says kB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


async def settled_rss(reactor: Any, pid: int, quiet: int = 5, limit: int = 180) -> int:
    """
    Read the RSS every second until it has not grown (by more than 0.5 % or 256 KB over
    its highest reading) for C{quiet} readings in a row; the last reading.
    """
    high = last = rss_kb(pid)
    still = 0
    for _ in range(limit):
        if still >= quiet:
            break
        await sleep(reactor, 1.0)
        last = rss_kb(pid)
        if last > high + max(256, high // 200):
            high, still = last, 0
        else:
            high, still = max(high, last), still + 1
    return last


async def cpu_percent(reactor: Any, pid: int, seconds: float) -> float:
    before, began = cpu_seconds(pid), time.monotonic()
    await sleep(reactor, seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - began)


def raise_open_files() -> int:
    """RLIMIT_NOFILE up to its hard limit (the servers and the clients inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- the idle clients: bench/idle_clients.js ------------------------------------------


class IdleClients:
    """One node process holding idle clients; see bench/idle_clients.js for its commands."""

    def __init__(self, reactor: Any) -> None:
        node = shutil.which("node")
        assert node is not None
        self.reactor = reactor
        self.lines = Lines()
        self.process = reactor.spawnProcess(self.lines, node, [node, CLIENTS_JS], env=os.environ)
        self.answers = 0

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        self.process.write(json.dumps(command).encode() + b"\n")
        line = await self.lines.next_line(self.answers)
        self.answers += 1
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        answer = await self.ask(command)
        if answer.get("failed") or "connected" not in answer:
            raise RuntimeError(f"idle clients failed to connect: {answer}")
        return answer

    async def status(self) -> dict[str, Any]:
        return await self.ask({"cmd": "status"})

    async def until_pinged(self, timeout: float) -> dict[str, Any]:
        """Poll until every open client has had a heartbeat ping (at most C{timeout} s)."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.status()
            if status["unpinged"] == 0 or time.monotonic() > deadline:
                return status
            await sleep(self.reactor, 1.0)

    async def close(self) -> None:
        if not self.lines.ended.called:
            self.process.closeStdin()
            await self.lines.ended.addTimeout(30, self.reactor).addErrback(
                lambda _: self.process.signalProcess("KILL"))


def socketio_command(port: int, transport: str, first: int, count: int,
                     room_size: int) -> dict[str, Any]:
    return {"cmd": "socketio", "url": f"http://127.0.0.1:{port}", "transport": transport,
            "first": first, "count": count, "room_size": room_size}


# -- gameproto's users, seeded into its SQLite store -----------------------------------


async def seed(reactor: Any, path: str, names: list[str]) -> dict[str, str]:
    """
    Users and one token each, written into a new SQLite store through the store's own
    API before the server starts: signing up and logging in thousands of users over REST
    would cost two scrypt hashes each.  Every user has the same password hash.
    """
    store = SQLiteStore(reactor, path)
    await store.start()
    password_hash = hash_password(PASSWORD)
    now = datetime.now(timezone.utc)
    tokens = {name: new_token() for name in names}
    try:
        for at in range(0, len(names), 1000):
            chunk = names[at:at + 1000]
            await defer.gatherResults(
                [store.create_user(User(name, password_hash, now)) for name in chunk])
            await defer.gatherResults(
                [store.add_token(TokenRecord(token_digest(tokens[name]), name, now))
                 for name in chunk])
    finally:
        await store.close()
    return tokens


def spectator_names(count: int, per_match: int) -> list[str]:
    """The spectators spec0.. and the hosts host0.. of their matches."""
    return ([f"spec{i}" for i in range(count)]
            + [f"host{g}" for g in range(math.ceil(count / per_match))])


async def spectators_command(server: ServerProcess, tokens: dict[str, str], first: int,
                             count: int, per_match: int, address: int) -> dict[str, Any]:
    """
    Spectators spec<first>.. of unstarted matches, C{per_match} to a match (spectator i
    watches the match of host<i // per_match>, created over REST when first needed).
    """
    matches: dict[int, int] = getattr(server, "bench_matches", {})
    server.bench_matches = matches  # type: ignore[attr-defined]
    sockets = []
    for i in range(first, first + count):
        group = i // per_match
        if group not in matches:
            status, body = await http_json("POST", server.url("/api/ongoing_matches/"),
                                           token=tokens[f"host{group}"])
            assert status == 201, body
            matches[group] = body["id"]
        sockets.append([server.ws_url(f"/ws/game/{matches[group]}/?role=spectator"),
                        tokens[f"spec{i}"]])
    return {"cmd": "ws", "sockets": sockets, "first": address, "register": False}


async def arena_players_command(server: ServerProcess, owner_token: str, first: int,
                                count: int) -> dict[str, Any]:
    """
    Anonymous players first.. of unstarted arenas of 64 (player i in arena idle-<i // 64>,
    created over REST when first needed, the default config but max_players), registered.
    """
    arenas: set[int] = getattr(server, "bench_arenas", set())
    server.bench_arenas = arenas  # type: ignore[attr-defined]
    sockets = []
    for i in range(first, first + count):
        group = i // ARENA_PLAYERS
        if group not in arenas:
            status, body = await http_json(
                "POST", server.url("/api/arenas/"),
                {"id": f"idle-{group}", "config": {"max_players": ARENA_PLAYERS}},
                token=owner_token)
            assert status == 201, body
            arenas.add(group)
        sockets.append([server.ws_url(f"/ws/arena/idle-{group}/player"), None])
    return {"cmd": "ws", "sockets": sockets, "first": first, "register": True}


# -- memory per idle connection ------------------------------------------------------


@dataclasses.dataclass
class Memory:
    kind: str
    server: str
    n: int
    base_kb: int
    rss_kb: int
    connect_s: float
    cpu: float
    status: dict[str, Any]

    @property
    def per_connection(self) -> float:
        return (self.rss_kb - self.base_kb) / self.n


# What a row connects: (server, first index, count) → the idle clients' command.
Batch = Callable[[ServerProcess, int, int], Awaitable[dict[str, Any]]]


async def measure_memory(reactor: Any, kind: str, name: str, server: ServerProcess,
                         batch: Batch, options: argparse.Namespace) -> Memory:
    await server.start()
    pid = server.process.pid
    clients = IdleClients(reactor)
    try:
        await clients.connect(await batch(server, 0, options.warmup))
        base = await settled_rss(reactor, pid)
        began = time.monotonic()
        connected = await clients.connect(await batch(server, options.warmup,
                                                      options.connections))
        connect_s = time.monotonic() - began
        status = await clients.until_pinged(options.ping_wait)
        if status["unpinged"]:
            raise RuntimeError(f"{kind} on {name}: clients never pinged: {status}")
        rss = await settled_rss(reactor, pid)
        cpu = await cpu_percent(reactor, pid, options.idle_window)
        status = await clients.status()
    finally:
        await clients.close()
        await server.stop()
    if connected["retried"]:
        status["retried"] = f"{connected['retried']} (first error: {connected.get('error')})"
    return Memory(kind, name, options.connections, base, rss, connect_s, cpu, status)


def socketio_server(name: str) -> ServerProcess:
    if name == "gameproto":
        return Node("--store", "memory:")
    node = shutil.which("node")
    assert node is not None
    if name == "node socket.io":
        return ServerProcess([node, NODE_PEER, "--port", "0"])
    return ServerProcess([sys.executable, PEER, "--port", "0"])


def print_memory_header() -> None:
    print(f"{'connections':<22} {'server':<16} {'base MB':>8} {'at N MB':>8} "
          f"{'KB/conn':>8} {'connect s':>10} {'idle CPU':>9} {'open':>6} {'closed':>7}",
          flush=True)


def print_memory(row: Memory) -> None:
    closed = row.status["closed"]
    print(f"{row.kind:<22} {row.server:<16} {row.base_kb / 1024:>8.1f} {row.rss_kb / 1024:>8.1f} "
          f"{row.per_connection:>8.1f} {row.connect_s:>10.1f} {row.cpu:>8.1f}% "
          f"{row.status['open']:>6} {closed:>7}"
          + (f"  closes: {row.status['reasons']}" if closed else "")
          + (f"  connected at the second try: {row.status['retried']}"
             if "retried" in row.status else ""), flush=True)


async def memory_runs(reactor: Any, options: argparse.Namespace) -> list[Memory]:
    rows = []
    for transport in options.transports:
        for name in options.servers:
            async def batch(server: ServerProcess, first: int, count: int,
                            transport: str = transport) -> dict[str, Any]:
                return socketio_command(server.port, transport, first, count, options.room_size)

            row = await measure_memory(reactor, f"socket.io {transport}", name,
                                       socketio_server(name), batch, options)
            print_memory(row)
            rows.append(row)
    if "spectators" in options.games:
        directory = tempfile.mkdtemp(prefix="gameproto-idle-")
        path = os.path.join(directory, "bench.sqlite3")
        total = options.warmup + options.connections
        tokens = await seed(reactor, path, spectator_names(total, options.per_match))

        async def spectators(server: ServerProcess, first: int, count: int) -> dict[str, Any]:
            return await spectators_command(server, tokens, first, count, options.per_match,
                                            first)

        row = await measure_memory(
            reactor, "match spectators", "gameproto",
            Node("--store", f"sqlite:{path}", *GAMEPROTO_OPTIONS, cwd=directory),
            spectators, options)
        print_memory(row)
        rows.append(row)
    if "arena" in options.games:
        directory = tempfile.mkdtemp(prefix="gameproto-idle-")
        path = os.path.join(directory, "bench.sqlite3")
        tokens = await seed(reactor, path, ["owner"])

        async def players(server: ServerProcess, first: int, count: int) -> dict[str, Any]:
            return await arena_players_command(server, tokens["owner"], first, count)

        row = await measure_memory(
            reactor, "arena players", "gameproto",
            Node("--store", f"sqlite:{path}", *GAMEPROTO_OPTIONS, cwd=directory),
            players, options)
        print_memory(row)
        rows.append(row)
    return rows


# -- per-tick cost beside idle connections -------------------------------------------


_SAMPLE = re.compile(r'^(gameproto_tick_(?:lateness|duration)_seconds)_(bucket|sum|count)'
                     r'\{([^}]*)\} (\S+)$', re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


async def scrape(reactor: Any, port: int) -> dict[tuple[str, str, str, str], float]:
    """The tick histograms of GET /metrics: (metric, kind, game, le) → value."""
    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}/metrics".encode())
    with warnings.catch_warnings():  # readBody's warning about Agent's own transport
        warnings.simplefilter("ignore", DeprecationWarning)
        text = (await readBody(response)).decode()
    samples = {}
    for metric, kind, labels, value in _SAMPLE.findall(text):
        label = dict(_LABEL.findall(labels))
        samples[(metric, kind, label.get("game", ""), label.get("le", ""))] = float(value)
    return samples


def quantile(buckets: list[tuple[float, float]], fraction: float) -> float:
    """
    The C{fraction} quantile of a histogram's cumulative C{(le, count)} buckets, linear
    within the bucket it falls in (Prometheus's histogram_quantile); the last finite bound
    if it falls in +Inf.
    """
    total = buckets[-1][1]
    if not total:
        return float("nan")
    rank = fraction * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


@dataclasses.dataclass
class GameTicks:
    ticks: float
    late50: float
    late99: float
    duration_mean: float


def window(before: dict[Any, float], after: dict[Any, float], game: str) -> GameTicks:
    """One game's ticks between two scrapes."""
    def delta(key: tuple[str, str, str, str]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    late = "gameproto_tick_lateness_seconds"
    took = "gameproto_tick_duration_seconds"
    bounds = sorted({key[3] for key in after if key[0] == late and key[1] == "bucket"
                     and key[2] == game}, key=float)
    buckets = [(float(le), delta((late, "bucket", game, le))) for le in bounds]
    count = delta((took, "count", game, ""))
    return GameTicks(delta((late, "count", game, "")), 1000 * quantile(buckets, 0.5),
                     1000 * quantile(buckets, 0.99),
                     1e6 * delta((took, "sum", game, "")) / count if count else float("nan"))


_MATCH_LOG = re.compile(r"Tick lateness of \d+ running match\(es\): p50 ([\d.]+) ms, "
                        r"p99 ([\d.]+) ms over (\d+) ticks")
_ARENA_LOG = re.compile(r"Arena ticks: (\d+), lateness p50 ([\d.]+) ms, p99 ([\d.]+) ms")


@dataclasses.dataclass
class Ticks:
    idle: int
    match: GameTicks
    arena: GameTicks
    cpu: float
    log: str
    open: int
    ended: bool


async def tick_run(reactor: Any, idle: int, options: argparse.Namespace) -> Ticks:
    directory = tempfile.mkdtemp(prefix="gameproto-idle-")
    path = os.path.join(directory, "bench.sqlite3")
    socketio = idle - idle // 2
    spectators = idle // 2
    tokens = await seed(reactor, path, spectator_names(spectators, options.per_match))
    metrics = free_port()
    server = Node("--store", f"sqlite:{path}", "--metrics-port",
                  f"tcp:{metrics}:interface=127.0.0.1", *GAMEPROTO_OPTIONS, cwd=directory)
    await server.start()
    pid = server.process.pid
    clients = IdleClients(reactor)
    sockets: list[Any] = []
    try:
        if socketio:
            await clients.connect(socketio_command(server.port, "websocket", 0, socketio,
                                                   options.room_size))
        if spectators:
            await clients.connect(await spectators_command(
                server, tokens, 0, spectators, options.per_match, socketio))
        # The measured games start once the idle connections are there: one match
        # played as bench/match_load.py plays it, one arena of four bots as
        # bench/arena_load.py runs it.
        players = await match_load.gameproto_load(reactor, server, 1, 0)
        meter = match_load.Meter()
        for socket in players:
            meter.attach(socket, True)
        controllers, bots = await arena_load.gameproto_arenas(reactor, server, 1, 20)
        sockets = players + controllers + [bot.socket for bot in bots]
        await sleep(reactor, options.warmup_seconds)
        before = await scrape(reactor, metrics)
        cpu_before, began = cpu_seconds(pid), time.monotonic()
        await sleep(reactor, options.duration)
        cpu = 100 * (cpu_seconds(pid) - cpu_before) / (time.monotonic() - began)
        after = await scrape(reactor, metrics)
        status = await clients.status()
        ended = any(s.state != s.STATE_OPEN for s in players)
    finally:
        for socket in sockets:
            socket.dropConnection(abort=True)
        await clients.close()
        await server.stop()
    log = server.log()
    match_log, arena_log = _MATCH_LOG.search(log), _ARENA_LOG.search(log)
    shutdown = ((f"match p50 {match_log.group(1)} p99 {match_log.group(2)} ms over "
                 f"{match_log.group(3)} ticks" if match_log else "match: no line (ended?)")
                + "; " + (f"arenas p50 {arena_log.group(2)} p99 {arena_log.group(3)} ms over "
                          f"{arena_log.group(1)} ticks" if arena_log else "arenas: no line"))
    return Ticks(idle, window(before, after, "match"), window(before, after, "arena"), cpu,
                 shutdown, status["open"], ended)


async def tick_runs(reactor: Any, options: argparse.Namespace) -> list[Ticks]:
    n = options.connections
    print(f"# per-tick cost: 1 match (2 players, 100 Hz) and 1 arena (4 bots, 50 Hz; the "
          f"default arena ticks too) on one gameproto node, {options.duration:g} s window; "
          f"idle = {n - n // 2} socket.io websocket members + {n // 2} spectators of "
          f"unstarted matches, connected first", flush=True)
    print(f"{'idle conns':>10} {'game':<6} {'ticks':>6} {'late p50 ms':>12} {'p99 ms':>8} "
          f"{'tick mean us':>13} {'server CPU':>11}", flush=True)
    rows = []
    for idle in (0, n):
        row = await tick_run(reactor, idle, options)
        for game, ticks in (("match", row.match), ("arena", row.arena)):
            print(f"{row.idle:>10} {game:<6} {ticks.ticks:>6.0f} {ticks.late50:>12.3f} "
                  f"{ticks.late99:>8.3f} {ticks.duration_mean:>13.1f} {row.cpu:>10.1f}%",
                  flush=True)
        print(f"{'':>10} idle clients still open: {row.open}/{idle}"
              f"{'; the match ended in the window' if row.ended else ''}; "
              f"shutdown log: {row.log}", flush=True)
        rows.append(row)
    return rows


# -- main ---------------------------------------------------------------------------


async def run(reactor: Any, options: argparse.Namespace) -> None:
    limit = raise_open_files()
    print(f"# idle connections: N = {options.connections} after {options.warmup} warm-up "
          f"clients, one fresh server process per row; RLIMIT_NOFILE {limit}; "
          f"load average {load()}", flush=True)
    rows: list[Memory] = []
    if options.transports or options.games - {"ticks"}:
        print(f"# RSS growth per idle connection (KB = 1024 bytes) after every client had a "
              f"heartbeat ping; chat members in rooms of {options.room_size}, spectators "
              f"{options.per_match} to a match, arena players {ARENA_PLAYERS} to an arena "
              f"(their matches and arenas count); idle CPU over {options.idle_window:g} s",
              flush=True)
        print_memory_header()
        rows = await memory_runs(reactor, options)
    if "ticks" in options.games:
        await tick_runs(reactor, options)
    print(f"# load average after: {load()}")
    for transport in options.transports:
        ours = [r for r in rows if r.server == "gameproto" and r.kind.endswith(transport)]
        for peer in SERVERS[1:]:
            theirs = [r for r in rows if r.server == peer and r.kind.endswith(transport)]
            if ours and theirs:
                a, b = ours[0].per_connection, theirs[0].per_connection
                print(f"gameproto / {peer}, socket.io {transport}: {a:.1f} / {b:.1f} KB per "
                      f"connection = {a / b:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-N", "--connections", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=100,
                        help="clients connected before the base RSS is read")
    parser.add_argument("--room-size", type=int, default=10, help="chat members per room")
    parser.add_argument("--per-match", type=int, default=50, help="idle spectators per match")
    parser.add_argument("--transports", default="websocket,polling",
                        help="Socket.IO transports to measure (comma-separated; empty: none)")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="Socket.IO servers to measure (comma-separated)")
    parser.add_argument("--games", default="spectators,arena,ticks",
                        help="gameproto-only parts (comma-separated; empty: none)")
    parser.add_argument("--ping-wait", type=float, default=120.0,
                        help="seconds to wait at most for every client's first ping")
    parser.add_argument("--idle-window", type=float, default=30.0,
                        help="seconds over which the idle CPU is read: at least one ping "
                             "interval of every protocol (25 s Engine.IO, 30 s WebSocket)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="per-tick cost: the measured window")
    parser.add_argument("--warmup-seconds", type=float, default=2.0,
                        help="per-tick cost: seconds between the games' start and the window")
    options = parser.parse_args()
    options.transports = [t for t in options.transports.split(",") if t]
    options.servers = [s for s in options.servers.split(",") if s]
    unknown = [s for s in options.servers if s not in SERVERS]
    if unknown:
        parser.error(f"--servers: unknown {', '.join(unknown)} (known: {', '.join(SERVERS)})")
    options.games = {g for g in options.games.split(",") if g}
    missing = peer_missing()
    if missing and options.transports:
        print(f"cannot run: {missing}", file=sys.stderr)
        sys.exit(2)
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
