"""
Arena load: K arenas × 4 bots, each bot sending one command every tick, against a real
C{twistd -n gameproto} process.

Each arena gets a controller and four bots on fixed spawn points, and the game is started.
A bot answers every RadarScanNotification (one per tick) with its next command, cycling
through rotate, forward, backward and shoot (shots do no damage here, so rounds never
end).  After --duration seconds the script prints:

- commands handled per second: the replies (acks and InvalidCommandErrors) the bots
  received, over the measured window, next to the ideal K·4·1000/tick_ms;
- tick lateness p50/p99 as measured by the server (how late each tick ran compared with
  its schedule, over every arena; the server logs it when it stops);
- the gap between consecutive snapshots at the controllers, p50/p99 (client side).

    .venv/bin/python bench/arena_load.py -K 20 --duration 10

The clients share this one process, so a saturated client can be the limit.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gameproto.client import arena as client  # noqa: E402
from tests.nodes import Node, http_json  # noqa: E402

SPAWNS = [[100, 100, 0], [300, 100, 90], [100, 300, 180], [300, 300, 270]]
COMMANDS: list[dict[str, Any]] = [
    {"type": "MovePlayerCommand", "data": [{"rotate": 45}]},
    {"type": "MovePlayerCommand", "data": [{"move": "forward"}]},
    {"type": "MovePlayerCommand", "data": [{"move": "backward"}]},
    {"type": "PlayerShootCommand"},
]
REPLIES = {"MovePlayerAck", "PlayerShotAck", "InvalidCommandError"}
_LATENESS = re.compile(rb"lateness p50 ([\d.]+) ms, p99 ([\d.]+) ms")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


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


async def user(node: Node, name: str) -> str:
    await http_json("POST", node.url("/api/users/sign_up/"),
                    {"username": name, "password": "password1"})
    _, body = await http_json("POST", node.url("/api/token/"),
                              {"username": name, "password": "password1"})
    return str(body["token"])


async def run(reactor: Any, arenas: int, duration: float, tick_ms: int) -> None:
    node = Node("--store", "memory:")
    await node.start()
    try:
        tokens = [await user(node, f"bench{n}") for n in range((arenas + 9) // 10)]
        bots: list[Bot] = []
        gaps: list[float] = []
        controllers = []
        base = node.ws_url("")
        for index in range(arenas):
            token = tokens[index // 10]
            status, body = await http_json(
                "POST", node.url("/api/arenas/"),
                {"id": f"bench-{index}", "config": {
                    "tick_ms": tick_ms, "shot_damage": 0, "spawn_points": SPAWNS}},
                token=token)
            assert status == 201, body
            control = await client.connect(reactor, base, f"bench-{index}", "control", token,
                                           ignore={"GameSnapshotNotification"})
            controllers.append(control)
            for seat in range(4):
                socket = await client.connect(reactor, base, f"bench-{index}",
                                              ignore={"RadarScanNotification"})
                ack = await socket.register()
                assert ack["type"] == "RegisterPlayerAck", ack
                bots.append(Bot(socket, seat))
            await control.start_game()

        last: dict[int, float] = {}

        def snapshot_gap(index: int) -> Any:
            def seen(message: dict[str, Any]) -> None:
                if message.get("type") != "GameSnapshotNotification":
                    return
                now = time.perf_counter()
                if index in last and measuring[0]:
                    gaps.append(now - last[index])
                last[index] = now
            return seen

        measuring = [False]
        for index, control in enumerate(controllers):
            control.on_message = snapshot_gap(index)
        await task.deferLater(reactor, 1.0, lambda: None)  # warm up
        for bot in bots:
            bot.measuring = True
        measuring[0] = True
        started = time.perf_counter()
        await task.deferLater(reactor, duration, lambda: None)
        elapsed = time.perf_counter() - started
        for bot in bots:
            bot.measuring = False
        measuring[0] = False
        replies = sum(bot.replies for bot in bots)
        errors = sum(bot.errors for bot in bots)
        for socket in [bot.socket for bot in bots] + controllers:
            socket.dropConnection(abort=True)
    finally:
        await node.stop()
    found = _LATENESS.search(node.output)
    ideal = arenas * 4 * 1000 / tick_ms
    print(f"arenas: {arenas}, bots: {4 * arenas}, tick: {tick_ms} ms, window: {elapsed:.1f} s")
    print(f"commands handled: {replies / elapsed:,.0f}/s (ideal {ideal:,.0f}/s), "
          f"of which InvalidCommandError: {errors / elapsed:,.0f}/s")
    if found:
        print(f"server tick lateness: p50 {float(found.group(1)):.2f} ms, "
              f"p99 {float(found.group(2)):.2f} ms")
    else:
        print("server tick lateness: not found in the server log")
    print(f"controller snapshot gap: p50 {percentile(gaps, 0.5) * 1000:.1f} ms, "
          f"p99 {percentile(gaps, 0.99) * 1000:.1f} ms (ideal {tick_ms} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-K", "--arenas", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--tick-ms", type=int, default=20)
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(
        run(reactor, args.arenas, args.duration, args.tick_ms)))


if __name__ == "__main__":
    main()
