"""
Arena load: K arenas × 4 bots, each bot sending one command every tick, against a real
C{twistd -n gameproto} process, next to the same traffic on a bare Autobahn echo, in
one run.

Each arena gets a controller and four bots on fixed spawn points, and the game is started.
A bot answers every RadarScanNotification (one per tick) with its next command, cycling
through rotate, forward, backward and shoot (shots do no damage here, so rounds never
end).  For each server, after --duration seconds the script records:

- commands handled per second: the replies (acks and InvalidCommandErrors) the bots
  received, over the measured window, next to the ideal K·4·1000/tick_ms;
- tick lateness p50/p99 as measured by the server (how late each tick ran compared with
  its schedule, over every arena; gameproto logs it when it stops, the bare server
  prints it);
- the gap between consecutive snapshots at the controllers, p50/p99 (client side).

The bare server (this script with --bare-server, in its own process) does what the
traffic needs and nothing else: it serves the same paths, answers each command at once
with a reply of the same type and size gameproto sends (RegisterPlayerAck, MovePlayerAck,
PlayerShotAck, StartGameAck, then StartGameOrder), and runs one LoopingCall per arena
that sends, every tick, one radar frame of the same size to the arena's players (encoded
and framed once, as a prepared message) and one snapshot frame of the same size to its
controller.  No engine, no auth, no store, no rate limit.  The snapshot's size depends on
the shots in flight, so the bare server is told its size: the mean seen by the controllers
in the first gameproto run (or --snapshot-bytes); the table shows both.

    .venv/bin/python bench/arena_load.py -K 20 --duration 10 --rounds 2

The clients share this one process, so a saturated client can be the limit: the
comparison with the bare server shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any, Awaitable, Callable

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import UNTHROTTLED, cpu_seconds, percentile, serve_bare  # noqa: E402
from gameproto.client import arena as client  # noqa: E402
from tests.nodes import Node, ServerProcess, http_json  # noqa: E402

SPAWNS = [[100, 100, 0], [300, 100, 90], [100, 300, 180], [300, 300, 270]]
COMMANDS: list[dict[str, Any]] = [
    {"type": "MovePlayerCommand", "data": [{"rotate": 45}]},
    {"type": "MovePlayerCommand", "data": [{"move": "forward"}]},
    {"type": "MovePlayerCommand", "data": [{"move": "backward"}]},
    {"type": "PlayerShootCommand"},
]
REPLIES = {"MovePlayerAck", "PlayerShotAck", "InvalidCommandError"}
# The mean GameSnapshotNotification of this workload over a 10 s window after 1 s
# (measured with -K 10); used by the bare server when no gameproto run came before it.
SNAPSHOT_BYTES = 9000

# -- the bare Autobahn server (run in its own process with --bare-server) -------

# What gameproto sends in this workload, field for field: the bots stay 200 apart
# (beyond the 40 radar radius) and at least 98 from every wall, so their radar is empty.
RADAR: dict[str, Any] = {"type": "RadarScanNotification", "data": {"elements": [], "walls": []}}
REGISTER_ACK: dict[str, Any] = {"type": "RegisterPlayerAck", "data": {
    "id": "1", "x": 100, "y": 100, "life": 100, "shooting": {"tokens": 40, "cost": 6}}}
# gameproto's move acks alternate (100.0, 100.0) and (101.41421, 101.41421), with the
# tokens: 105 bytes on average, as this one.
MOVE_ACK: dict[str, Any] = {"type": "MovePlayerAck",
                            "data": {"x": 101.41421, "y": 100.0, "rotation": 45,
                                     "shooting": {"tokens": 40, "cost": 6}}}
SHOT_ACK: dict[str, Any] = {"type": "PlayerShotAck",
                            "data": {"shooting": {"tokens": 40, "cost": 6}}}
EMPTY: dict[str, Any] = {}


def snapshot(size: int) -> bytes:
    """A GameSnapshotNotification shaped like gameproto's: 4 players, and shots up to C{size}."""
    import orjson

    players = [{"id": str(n + 1), "coordinates": {"x": 101.41421, "y": 101.41421},
                "rotation": 45, "life": 100, "tokens": 40,
                "radar": {"type": "circular_scan", "radius": 40}} for n in range(4)]
    flying: list[dict[str, Any]] = []
    message = {"type": "GameSnapshotNotification",
               "data": {"arena_snapshot": {"players_snapshots": players,
                                           "shots_snapshots": flying}}}
    while len(orjson.dumps(message)) < size:
        flying.append({"id": str(len(flying) + 1000),
                       "coordinates": {"x": 212.13203, "y": 212.13203}, "rotation": 45})
    return orjson.dumps(message)


def bare_server(tick: float, snapshot_bytes: int) -> None:
    import orjson
    from autobahn.twisted.resource import WebSocketResource
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet import reactor
    from twisted.web.resource import Resource

    radar = orjson.dumps(RADAR)
    state_frame = snapshot(snapshot_bytes)
    replies = {
        "RegisterPlayerCommand": orjson.dumps(REGISTER_ACK),
        "MovePlayerCommand": orjson.dumps(MOVE_ACK),
        "PlayerShootCommand": orjson.dumps(SHOT_ACK),
        "StartGameCommand": orjson.dumps({"type": "StartGameAck", "data": EMPTY}),
    }
    start_order = orjson.dumps({"type": "StartGameOrder", "data": EMPTY})

    class Arena:
        def __init__(self) -> None:
            self.players: set[Echo] = set()
            self.controller: Echo | None = None
            self.started = False
            self.ticks = 0
            self.loop = task.LoopingCall.withCount(self.step)
            self.loop.start(tick, now=False)

        def step(self, count: int) -> None:
            self.ticks += count
            expected = self.loop.starttime + self.ticks * self.loop.interval
            lateness.append(max(0.0, reactor.seconds() - expected))
            if self.started:
                prepared = factory.prepareMessage(radar)
                for player in list(self.players):
                    if player.state == player.STATE_OPEN:
                        player.sendPreparedMessage(prepared)
            controller = self.controller
            if controller is not None and controller.state == controller.STATE_OPEN:
                controller.sendMessage(state_frame)

    arenas: dict[str, Arena] = {}
    lateness: list[float] = []
    factory = WebSocketServerFactory()

    class Echo(WebSocketServerProtocol):
        arena: Arena | None = None
        role = "player"

        def onConnect(self, request: Any) -> None:
            parts = request.path.rstrip("/").split("/")  # /ws/arena/ID/ROLE
            self.role = parts[-1]
            self.arena = arenas.get(parts[-2]) or arenas.setdefault(parts[-2], Arena())

        def onOpen(self) -> None:
            assert self.arena is not None
            if self.role == "control":
                self.arena.controller = self
            else:
                self.arena.players.add(self)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            kind = orjson.loads(payload).get("type")
            reply = replies.get(kind)
            if reply is not None:
                self.sendMessage(reply)
            if kind == "StartGameCommand" and self.arena is not None:
                self.arena.started = True
                prepared = factory.prepareMessage(start_order)
                for player in self.arena.players:
                    player.sendPreparedMessage(prepared)

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            if self.arena is not None:
                self.arena.players.discard(self)
                if self.arena.controller is self:
                    self.arena.controller = None

    factory.protocol = Echo
    factory.setProtocolOptions(autoPingInterval=30, autoPingTimeout=10)
    resource = WebSocketResource(factory)

    class Paths(Resource):
        """/ws/arena/ID/player and /ws/arena/ID/control, all to one WebSocket resource."""

        def getChild(self, path: bytes, request: Any) -> Any:
            if request.postpath:
                return self
            return resource

    serve_bare(reactor, b"arena", Paths(), lateness,
               "Arena ticks: {count}, lateness p50 {p50:.3f} ms, p99 {p99:.3f} ms")


def start_bare(tick_ms: int, snapshot_bytes: int) -> ServerProcess:
    return ServerProcess([sys.executable, os.path.abspath(__file__), "--bare-server",
                          "--tick-ms", str(tick_ms), "--snapshot-bytes", str(snapshot_bytes)])


# -- the load ---------------------------------------------------------------------


class Bot:
    """Sends its next command whenever a radar scan says a new tick ran."""

    def __init__(self, socket: client.ArenaClient, offset: int) -> None:
        self.socket = socket
        self.step = offset
        self.replies = 0
        self.errors = 0
        self.measuring = False
        socket.on_message = self.received

    def received(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "RadarScanNotification":
            self.socket.send(COMMANDS[self.step % len(COMMANDS)])
            self.step += 1
        elif kind in REPLIES and self.measuring:
            self.replies += 1
            self.errors += kind == "InvalidCommandError"


class Controllers:
    """Records the gap between consecutive snapshots of each controller, and their size."""

    def __init__(self, sockets: list[client.ArenaClient]) -> None:
        self.measuring = False
        self.gaps: list[float] = []
        self.bytes = 0
        self.snapshots = 0
        for socket in sockets:
            self._watch(socket)

    def _watch(self, socket: client.ArenaClient) -> None:
        last = [0.0]
        size = [0]
        decode = socket.onMessage

        def sized(payload: bytes, isBinary: bool) -> None:
            size[0] = len(payload)
            decode(payload, isBinary)

        def seen(message: dict[str, Any]) -> None:
            if message.get("type") != "GameSnapshotNotification":
                return
            now = time.perf_counter()
            if self.measuring:
                if last[0]:
                    self.gaps.append(now - last[0])
                self.snapshots += 1
                self.bytes += size[0]
            last[0] = now

        socket.onMessage = sized  # type: ignore[method-assign]
        socket.on_message = seen


Setup = Callable[[Any, ServerProcess, int, int, dict[str, Any]],
                 Awaitable[tuple[list[client.ArenaClient], list[Bot]]]]


async def user(server: ServerProcess, name: str) -> str:
    await http_json("POST", server.url("/api/users/sign_up/"),
                    {"username": name, "password": "password1"})
    _, body = await http_json("POST", server.url("/api/token/"),
                              {"username": name, "password": "password1"})
    return str(body["token"])


async def gameproto_arenas(reactor: Any, server: ServerProcess, arenas: int, tick_ms: int,
                           settings: dict[str, Any] | None = None,
                           ) -> tuple[list[client.ArenaClient], list[Bot]]:
    """
    Users, arenas over REST, a controller and 4 registered bots each, games started.
    C{settings} are more of the arenas' settings (an experiment's).
    """
    config = {"tick_ms": tick_ms, "shot_damage": 0, "spawn_points": SPAWNS, **(settings or {})}
    tokens = [await user(server, f"bench{n}") for n in range((arenas + 9) // 10)]
    controllers: list[client.ArenaClient] = []
    bots: list[Bot] = []
    for index in range(arenas):
        token = tokens[index // 10]
        status, body = await http_json(
            "POST", server.url("/api/arenas/"),
            {"id": f"bench-{index}", "config": config},
            token=token)
        assert status == 201, body
        controllers.append(await start_arena(reactor, server, f"bench-{index}", token, bots))
    return controllers, bots


async def bare_arenas(reactor: Any, server: ServerProcess, arenas: int, tick_ms: int,
                      settings: dict[str, Any] | None = None,
                      ) -> tuple[list[client.ArenaClient], list[Bot]]:
    """The same sockets and commands on the bare server (which needs no user or arena)."""
    controllers: list[client.ArenaClient] = []
    bots: list[Bot] = []
    for index in range(arenas):
        controllers.append(await start_arena(reactor, server, f"bench-{index}", None, bots))
    return controllers, bots


async def start_arena(reactor: Any, server: ServerProcess, arena_id: str, token: str | None,
                      bots: list[Bot]) -> client.ArenaClient:
    control = await client.connect(reactor, server.ws, arena_id, "control", token,
                                   ignore={"GameSnapshotNotification"})
    for seat in range(4):
        socket = await client.connect(reactor, server.ws, arena_id,
                                      ignore={"RadarScanNotification"})
        ack = await socket.register()
        assert ack["type"] == "RegisterPlayerAck", ack
        socket.keep_messages = False  # counted by Bot.received; nobody awaits them
        bots.append(Bot(socket, seat))
    reply = await control.start_game()
    assert reply["type"] == "StartGameAck", reply
    control.keep_messages = False
    return control


_LATENESS = re.compile(r"lateness p50 ([\d.]+) ms, p99 ([\d.]+) ms")


class Row:
    def __init__(self, name: str, elapsed: float, cpu: float, bots: list[Bot],
                 controllers: Controllers, log: str) -> None:
        self.name = name
        self.cpu = cpu / elapsed  # the server's share of one core over the window
        self.commands = sum(bot.replies for bot in bots) / elapsed
        self.errors = sum(bot.errors for bot in bots) / elapsed
        found = _LATENESS.search(log)
        self.late50, self.late99 = ((float(found.group(1)), float(found.group(2)))
                                    if found else (float("nan"), float("nan")))
        self.gap50 = 1000 * percentile(controllers.gaps, 0.5)
        self.gap99 = 1000 * percentile(controllers.gaps, 0.99)
        self.snapshot_bytes = controllers.bytes / max(1, controllers.snapshots)


async def measure(reactor: Any, name: str, server: ServerProcess, setup: Setup,
                  options: argparse.Namespace) -> Row:
    await server.start()
    try:
        sockets, bots = await setup(reactor, server, options.arenas, options.tick_ms,
                                    options.arena_config)
        controllers = Controllers(sockets)
        await task.deferLater(reactor, options.warmup, lambda: None)
        for bot in bots:
            bot.measuring = True
        controllers.measuring = True
        started = time.perf_counter()
        cpu_began = cpu_seconds(server.process.pid)
        await task.deferLater(reactor, options.duration, lambda: None)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.process.pid) - cpu_began
        for bot in bots:
            bot.measuring = False
        controllers.measuring = False
        for socket in [bot.socket for bot in bots] + sockets:
            socket.dropConnection(abort=True)
    finally:
        await server.stop()
    return Row(name, elapsed, cpu, bots, controllers, server.log())


async def run(reactor: Any, options: argparse.Namespace) -> None:
    k, tick_ms = options.arenas, options.tick_ms
    ideal = k * 4 * 1000 / tick_ms
    print(f"# {k} arenas x 4 bots = {4 * k} bots + {k} controllers, tick {tick_ms} ms, "
          f"{options.duration:g} s measured; ideal {ideal:,.0f} commands/s")
    snapshot_bytes = options.snapshot_bytes
    rows: list[Row] = []
    for name in options.servers * options.rounds:
        if name == "gameproto":
            row = await measure(reactor, name, Node("--store", "memory:", *UNTHROTTLED),
                                gameproto_arenas, options)
            if snapshot_bytes is None:
                snapshot_bytes = round(row.snapshot_bytes)
        else:
            bare = start_bare(tick_ms, SNAPSHOT_BYTES if snapshot_bytes is None
                              else snapshot_bytes)
            row = await measure(reactor, name, bare, bare_arenas, options)
        rows.append(row)
    print(f"{'server':<14} {'commands/s':>10} {'of ideal':>9} {'errors/s':>9} "
          f"{'tick late p50':>14} {'p99':>9} {'snapshot gap p50':>17} {'p99':>9} "
          f"{'snapshot bytes':>15} {'server CPU':>11}")
    for row in rows:
        print(f"{row.name:<14} {row.commands:>10,.0f} {row.commands / ideal:>8.1%} "
              f"{row.errors:>9,.0f} {row.late50:>11.2f} ms {row.late99:>6.2f} ms "
              f"{row.gap50:>14.1f} ms {row.gap99:>6.1f} ms {row.snapshot_bytes:>15,.0f} "
              f"{row.cpu:>11.0%}")
    ours = [row for row in rows if row.name == "gameproto"]
    theirs = [row for row in rows if row.name != "gameproto"]
    if ours and theirs:
        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

        print(f"gameproto / bare (mean over rounds): commands/s "
              f"{mean([r.commands for r in ours]) / mean([r.commands for r in theirs]):.2f}, "
              f"tick lateness p50 {mean([r.late50 for r in ours]):.2f} vs "
              f"{mean([r.late50 for r in theirs]):.2f} ms, p99 "
              f"{mean([r.late99 for r in ours]):.2f} vs {mean([r.late99 for r in theirs]):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-K", "--arenas", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--tick-ms", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate the servers this many times (a noisy machine shows)")
    parser.add_argument("--only", choices=["gameproto", "bare"], help="run one server only")
    parser.add_argument("--snapshot-bytes", type=int, default=None,
                        help="size of the bare server's snapshot (default: the mean seen "
                             f"in the first gameproto run, else {SNAPSHOT_BYTES})")
    parser.add_argument("--arena-config", type=json.loads, default={},
                        help="more settings of gameproto's arenas, as a JSON object; for "
                             "experiments: '{\"shot_speed\": 100}' keeps about one shot in flight")
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    options.servers = [n for n in ("gameproto", "bare autobahn")
                       if options.only is None or n.startswith(options.only)]
    if options.bare_server:
        bare_server(options.tick_ms / 1000, SNAPSHOT_BYTES if options.snapshot_bytes is None
                    else options.snapshot_bytes)
        return
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
