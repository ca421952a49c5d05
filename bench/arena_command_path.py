"""
The server's work for one arena command a bot sends over WebSocket, without sockets: a whole
server in memory (as tests/arenasupport.py builds it, on a Clock), bench/arena_load.py's
arenas (four bots on its spawn points, a started game, shots that do no harm), and each bot's
next command handed to its L{ArenaPlayerProtocol}'s C{onMessage} every tick, as Autobahn hands
it a frame it has parsed: rate limiting, decoding, parsing, the connection's state machine and
C{Arena.submit}.  Prints the CPU time per command (so that other processes on a shared machine
count less), the minimum over the repeats; the ticks between the commands are not counted.

    .venv/bin/python bench/arena_command_path.py -K 20 --ticks 500 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import txaio  # noqa: E402
from twisted.internet.defer import maybeDeferred  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from bench.arena_load import COMMANDS, SPAWNS  # noqa: E402
from gameproto import wire  # noqa: E402
from gameproto.server import GameprotoServer, ServerConfig  # noqa: E402
from gameproto.store.memory import MemoryStore  # noqa: E402
from gameproto.throttle import RequestLimits  # noqa: E402
from gameproto.testing import WebSocketClient, request  # noqa: E402

TICK = 0.02  # the default tick_ms, in seconds


def make_server(arenas: int) -> GameprotoServer:
    """A whole server on a Clock with a memory store, as the arena tests build it."""
    clock = Clock()
    clock.advance(1_800_000_000.25)
    txaio.config.loop = clock
    # One user creates every arena, faster than anyone may.
    config = ServerConfig(store="memory:", port=None, arena_max_per_user=arenas + 1,
                          arena_max=arenas + 1,
                          request_limits=RequestLimits(creations_per_account=None,
                                                       creations_per_address=None))
    return GameprotoServer(config, clock, store=MemoryStore(),
                           run_in_thread=lambda f, *args: maybeDeferred(f, *args))


def owner_token(server: GameprotoServer) -> str:
    site = server.site
    request(site, "POST", "/api/users/sign_up/", {"username": "ann", "password": "password1"})
    response = request(site, "POST", "/api/token/", {"username": "ann", "password": "password1"})
    return str(response.json()["token"])


def started_arena(server: GameprotoServer, token: str, index: int) -> list[WebSocketClient]:
    """An arena of four registered bots in a started game: their connections."""
    clock = server.reactor
    arena_id = f"bench-{index}"
    auth = {"Authorization": f"Token {token}"}
    response = request(server.site, "POST", "/api/arenas/", {
        "id": arena_id, "config": {"shot_damage": 0, "spawn_points": SPAWNS}}, auth)
    assert response.status == 201, response.body
    port = 41000 + 10 * index
    bots = [WebSocketClient(server.site, f"/ws/arena/{arena_id}/player", port=port + seat)
            for seat in range(4)]
    control = WebSocketClient(server.site, f"/ws/arena/{arena_id}/control", auth, port=port + 9)
    for bot in bots:
        bot.send_json({"type": "RegisterPlayerCommand"})
    clock.advance(TICK)
    control.send_json({"type": "StartGameCommand"})
    clock.advance(TICK)
    for ws in bots + [control]:
        kinds = {message["type"] for message in ws.json_messages()}
        assert "InvalidCommandError" not in kinds, kinds
    return bots


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-K", "--arenas", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=500, help="measured ticks per repeat")
    parser.add_argument("--repeat", type=int, default=5, help="runs of --ticks; the best counts")
    options = parser.parse_args()
    server = make_server(options.arenas)
    server.startService()
    clock = server.reactor
    token = owner_token(server)
    bots = [bot for index in range(options.arenas) for bot in started_arena(server, token, index)]
    protocols: list[Any] = [bot.protocol for bot in bots]
    payloads = [wire.encode(command) for command in COMMANDS]
    best = float("inf")
    tick = refused = 0
    for _ in range(options.repeat):
        spent = 0.0
        for _ in range(options.ticks):
            tick += 1
            began = time.process_time()
            for seat, protocol in enumerate(protocols):
                protocol.onMessage(payloads[(tick + seat) % len(payloads)], False)
            spent += time.process_time() - began
            clock.advance(TICK)
            for bot in bots:
                # Every command must have been taken: none refused, none rate limited.
                refused += bot.transport.value().count(b"InvalidCommandError")
                # What the bots were sent is not read further: keep the transports small.
                bot.transport.clear()
        best = min(best, spent)
    assert refused == 0 and not any(bot.disconnected for bot in bots), refused
    commands = options.ticks * len(protocols)
    print(f"{options.arenas} arena(s), {len(protocols)} bots, {options.ticks} ticks x "
          f"{options.repeat}: {1e6 * best / commands:.2f} us/command (best run)")
    server.stopService()


if __name__ == "__main__":
    main()
