"""
A complete arena bot for gameproto, on gameproto.client.arena.

Run a server in one terminal and the bot in another, from the repository's root:

    make run
    .venv/bin/python examples/arena_bot.py

The bot signs up a user over the REST API (or reuses it: a second sign-up is refused
and ignored), takes its token, connects a player socket to the ``default`` arena and
registers.  Then it connects the arena's controller socket with the same token (without
``--arena-owner`` any authenticated user may control ``default``; a newer controller
replaces an older one) and starts the game.  After the StartGameOrder it sends one
command per tick: aim at and shoot the first player its radar sees; otherwise walk
forward, turn 90° at a wall, and fire a shot every 8th turn.  At a game over it registers
again and starts the next round.  Run several copies to see them fight (each new copy
takes the controller over and starts a round when the arena is not playing).

Options: ``--host`` (127.0.0.1), ``--port`` (8000), ``--arena`` (default),
``--username`` / ``--password``, ``--turns N`` (stop after N commands; 0, the
default, plays until interrupted) and ``--no-start`` (do not control the arena: wait for
someone else to start the game).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from twisted.internet import defer, task

from gameproto.client import arena
from gameproto.client.rest import RestClient, RestError

Message = dict[str, Any]


class Bot:
    """One player: what it knows of itself and its radar, and how it picks a command."""

    def __init__(self, socket: arena.ArenaClient) -> None:
        self.socket = socket
        self.x = self.y = 0.0
        self.heading = 0.0
        self.tokens = self.cost = 0
        self.radar: Message = {"elements": [], "walls": []}
        self.scans = 0
        self.moves = self.shots = 0
        self.destroyed = False
        self.game_over = False
        # The radar comes every tick: keep the latest rather than queueing them all.
        socket.on_message = self.notified

    def notified(self, message: Message) -> None:
        kind, data = message.get("type"), message.get("data", {})
        if kind == "RadarScanNotification":
            seen = (len(data["elements"]), len(data["walls"]))
            if self.scans == 0 or seen != (len(self.radar["elements"]),
                                           len(self.radar["walls"])):
                print(f"radar: {seen[0]} player(s) in sight, {seen[1]} wall(s) in range "
                      f"{data}")
            self.radar = data
            self.scans += 1
        elif kind == "PlayerHitByShotNotification":
            print(f"hit! life {data['life']}")
        elif kind == "PlayerDestroyedNotification":
            print("destroyed; waiting for the game over")
            self.destroyed = True
        elif kind == "GameOverNotification":
            print(f"game over, winner: {data['winner']}")
            self.game_over = True

    async def register(self) -> bool:
        ack = await self.socket.register()
        if ack["type"] != "RegisterPlayerAck":
            print(f"registration refused: {ack['data']['reason']}")
            return False
        data = ack["data"]
        self.x, self.y = data["x"], data["y"]
        self.tokens, self.cost = data["shooting"]["tokens"], data["shooting"]["cost"]
        self.destroyed = self.game_over = False
        print(f"registered as player {data['id']} at ({self.x}, {self.y}), "
              f"{self.tokens} tokens, {self.cost} a shot")
        return True

    async def turn(self, number: int) -> None:
        """One command, chosen from the latest radar scan; its reply updates the bot."""
        enemies = self.radar["elements"]
        if enemies:
            target = enemies[0]["coordinates"]
            aim = math.degrees(math.atan2(target["y"] - self.y, target["x"] - self.x)) % 360
            if abs(aim - self.heading) > 1 or self.tokens < self.cost:
                await self.move({"rotate": round(aim, 2)})
            else:
                await self.shoot()
        elif number % 8 == 3 and self.tokens >= self.cost:
            await self.shoot()
            # Shots fly at 1.5 a tick and a bot walks at 2: turn away from our own shot.
            self.heading = (self.heading + 90) % 360
        else:
            await self.move({"rotate": self.heading}, {"move": "forward"})

    async def move(self, *steps: Message) -> None:
        reply = await self.socket.move(*steps)
        if reply["type"] == "MovePlayerAck":
            data = reply["data"]
            self.x, self.y, self.heading = data["x"], data["y"], data["rotation"]
            self.moves += 1
            print(f"moved to ({self.x}, {self.y}), heading {self.heading}")
        else:
            reason = reply["data"]["reason"]
            print(f"move refused: {reason}")
            if reason == "the move hits a wall" or reason == "the move hits another player":
                self.heading = (self.heading + 90) % 360

    async def shoot(self) -> None:
        reply = await self.socket.shoot()
        if reply["type"] == "PlayerShotAck":
            self.tokens = reply["data"]["shooting"]["tokens"]
            self.shots += 1
            print(f"shot: {self.tokens} tokens left")
        else:
            print(f"shot refused: {reply['data']['reason']}")


async def token_for(reactor: Any, http: str, username: str, password: str) -> str:
    """Sign up (a taken username is fine: it is ours from an earlier run) and log in."""
    api = RestClient(reactor, http)
    try:
        await api.sign_up(username, password)
    except RestError as e:
        if e.status != 400:
            raise
    return await api.token(username, password)


async def start_round(controller: arena.ArenaClient | None) -> None:
    if controller is None or controller.closed.called:
        return  # someone else controls the arena
    reply = await controller.start_game()
    if reply["type"] == "StartGameAck":
        print("started the game")
    else:
        print(f"could not start the game: {reply['data']['reason']}")


async def main(reactor: Any, options: argparse.Namespace) -> None:
    http, ws = f"http://{options.host}:{options.port}", f"ws://{options.host}:{options.port}"
    token = await token_for(reactor, http, options.username, options.password)
    socket = await arena.connect(reactor, ws, options.arena, token=token,
                                 ignore={"RadarScanNotification"})
    bot = Bot(socket)
    controller = None
    try:
        if not await bot.register():
            raise SystemExit(1)
        if not options.no_start:
            controller = await arena.connect(reactor, ws, options.arena, role="control",
                                             token=token, ignore={"GameSnapshotNotification"})
        number = 0
        while options.turns == 0 or number < options.turns:
            await start_round(controller)
            await socket.wait_for_type("StartGameOrder", timeout=None)
            print("game started")
            while not (bot.game_over or bot.destroyed):
                if options.turns and number >= options.turns:
                    break
                await bot.turn(number)
                number += 1
            if bot.destroyed and not bot.game_over:
                await socket.wait_for_type("GameOverNotification", timeout=None)
            if bot.game_over and not await bot.register():
                raise SystemExit(1)
        print(f"done: {bot.moves} moves, {bot.shots} shots, {bot.scans} radar scans")
    finally:
        for connection in (socket, controller):
            if connection is not None and not connection.closed.called:
                connection.close()
                await connection.closed


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A gameproto arena bot.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--arena", default="default")
    parser.add_argument("--username", default="arena-bot")
    parser.add_argument("--password", default="arena-bot-password")
    parser.add_argument("--turns", type=int, default=0,
                        help="stop after this many commands (0: play until interrupted)")
    parser.add_argument("--no-start", action="store_true",
                        help="do not connect as the controller; wait for a start")
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))
