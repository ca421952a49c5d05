"""
A complete arena bot for gameproto, on gameproto.client.arena: it finds the other players
and fights them until one is left.

Run a server in one terminal and two bots in two others, from the repository's root:

    make run
    .venv/bin/python examples/arena_bot.py --username ann
    .venv/bin/python examples/arena_bot.py --username bob

Each bot signs up a user over the REST API (or reuses it: a second sign-up is refused and
ignored), takes its token, reads the arena's size (``GET /api/arenas/ID/``), connects a
player socket to the ``default`` arena and registers.  Then it connects the arena's
controller socket with the same token (without ``--arena-owner`` any authenticated user may
control ``default``; a newer controller replaces an older one) and starts the game once
``--players`` players (2) are registered.

After the StartGameOrder it sends one command per tick, chosen by L{Tactics} from its latest
radar scan and what the replies told it (position, heading, and tokens: every ack says how
many it has):

  - nobody in sight: walk to the middle of the arena and patrol a small square there.
    Every bot that searches goes there, so they meet whatever their spawns;
  - a player in sight: turn to the nearest, walk up to it while farther than 30, and fire
    whenever it is aimed and can afford a shot.  While it waits for tokens it steps aside,
    left or right at random, and aims again: two copies of one bot would otherwise trade
    the same shots tick for tick and destroy each other in the same tick, a round with no
    winner (it still happens now and then, and the next round decides).

At a game over it registers again and plays the next round, ``--rounds`` times.

Options: ``--host`` (127.0.0.1), ``--port`` (8000), ``--arena`` (default),
``--username`` / ``--password``, ``--players N`` (start when N are registered),
``--rounds N`` (stop after N rounds; 0, the default, plays until interrupted), ``--turns N``
(stop after N commands), ``--no-start`` (do not control the arena: wait for someone else
to start the game) and ``--seed`` (the sidesteps' random numbers).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from typing import Any

from twisted.internet import defer, task

from gameproto.client import arena
from gameproto.client.rest import RestClient, RestError

Message = dict[str, Any]

# The defaults of an arena's configuration, for a server that does not say.
DEFAULT_CONFIG: Message = {
    "width": 800, "height": 400, "player_radius": 5, "shot_radius": 1, "move_speed": 2,
    "shot_speed": 1.5,
}


def bearing(x: float, y: float, to_x: float, to_y: float) -> float:
    """The heading from (x, y) to (to_x, to_y): degrees, 0 = +x, 90 = +y."""
    return math.degrees(math.atan2(to_y - y, to_x - x)) % 360


def angle_between(a: float, b: float) -> float:
    """The smaller angle between two headings, 0 to 180."""
    return abs((a - b + 180) % 360 - 180)


def rotate(heading: float, *then: Message) -> Message:
    return {"type": "MovePlayerCommand", "data": [{"rotate": round(heading % 360, 3)}, *then]}


SHOOT: Message = {"type": "PlayerShootCommand"}
FORWARD: Message = {"move": "forward"}


class Tactics:
    """
    How the bot plays, from what it knows: no I/O, so that any loop can drive it (the
    WebSocket loop below, or a test holding the arena engine).  Feed it every message the
    player receives (L{observe}) and ask for one command per tick (L{command}).
    """

    # Walk up to a target farther than this many player radii, then stand and fire.
    ENGAGE_RADII = 6

    def __init__(self, config: Message, rng: random.Random) -> None:
        config = {**DEFAULT_CONFIG, **config}
        self.width, self.height = config["width"], config["height"]
        self.radius = config["player_radius"]
        self.reach = config["player_radius"] + config["shot_radius"]
        self.speed = config["move_speed"]
        self.shot_speed = config["shot_speed"]
        self.rng = rng
        self.x = self.y = 0.0
        self.heading: float | None = None  # unknown until the first ack that says it
        self.tokens = self.cost = 0
        self.enemies: list[tuple[float, float]] = []
        self.ticks = 0
        # Until this tick a shot of ours may still be flying ahead: walking forward, we
        # would run into it (a player walks 2 a tick, a shot flies 1.5).
        self.shots_clear_at = 0
        self.waypoint = 0

    # -- what the bot learns -------------------------------------------------------

    def observe(self, message: Message) -> None:
        kind, data = message.get("type"), message.get("data", {})
        if kind == "RegisterPlayerAck":
            self.x, self.y = float(data["x"]), float(data["y"])
            self.heading = None
            self.tokens, self.cost = data["shooting"]["tokens"], data["shooting"]["cost"]
            self.enemies, self.ticks, self.shots_clear_at, self.waypoint = [], 0, 0, 0
        elif kind == "RadarScanNotification":
            self.ticks += 1
            self.enemies = [(e["coordinates"]["x"], e["coordinates"]["y"])
                            for e in data["elements"]]
        elif kind == "MovePlayerAck":
            self.x, self.y, self.heading = data["x"], data["y"], data["rotation"]
            if "shooting" in data:  # older gameproto servers did not send it
                self.tokens = data["shooting"]["tokens"]
        elif kind == "PlayerShotAck":
            self.tokens = data["shooting"]["tokens"]
        elif kind == "InvalidCommandError":
            reason = data.get("reason", "")
            if reason.startswith("the move hits"):
                self.waypoint += 1  # blocked on the way: head for the next point
            elif reason == "not enough tokens to shoot":
                self.tokens = 0

    # -- what it does ----------------------------------------------------------------

    def command(self) -> Message:
        if self.enemies:
            return self.fight(min(self.enemies,
                                  key=lambda e: math.hypot(e[0] - self.x, e[1] - self.y)))
        return self.search()

    def fight(self, target: tuple[float, float]) -> Message:
        distance = math.hypot(target[0] - self.x, target[1] - self.y)
        aim = bearing(self.x, self.y, *target)
        off = 180.0 if self.heading is None else angle_between(aim, self.heading)
        # Aimed: the shot passes well within reach of the target's centre.
        aimed = off < 90 and distance * math.sin(math.radians(off)) <= self.reach / 2
        if aimed and self.tokens >= self.cost:
            self.shots_clear_at = self.ticks + math.ceil(distance / self.shot_speed) + 1
            return SHOOT
        if distance > self.ENGAGE_RADII * self.radius and self.ticks >= self.shots_clear_at:
            return rotate(aim, FORWARD)
        if aimed:
            # Waiting for tokens: a step aside, left or right at random, then aim again.
            return rotate(aim + self.rng.choice((90, -90)), FORWARD)
        return rotate(aim)

    def search(self) -> Message:
        for _ in range(len(self.patrol()) + 1):
            x, y = self.patrol()[self.waypoint % len(self.patrol())]
            if math.hypot(x - self.x, y - self.y) > self.speed:
                return rotate(bearing(self.x, self.y, x, y), FORWARD)
            self.waypoint += 1
        return rotate(self.heading or 0)

    def patrol(self) -> list[tuple[float, float]]:
        """The middle of the arena, then the corners of a small square around it."""
        cx, cy, side = self.width / 2, self.height / 2, 2 * self.radius
        return [(cx, cy), (cx - side, cy - side), (cx + side, cy - side),
                (cx + side, cy + side), (cx - side, cy + side)]


class Bot:
    """One player's connection: feeds L{Tactics}, sends its commands, prints what happens."""

    def __init__(self, socket: arena.ArenaClient, tactics: Tactics) -> None:
        self.socket = socket
        self.tactics = tactics
        self.radar: Message = {"elements": [], "walls": []}
        self.scans = self.moves = self.shots = 0
        self.destroyed = self.game_over = False
        self.winner: str | None = None
        # The radar comes every tick: read it as it arrives rather than queueing it.
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
            self.tactics.observe(message)
        elif kind == "PlayerHitByShotNotification":
            print(f"hit! life {data['life']}")
        elif kind == "PlayerDestroyedNotification":
            print("destroyed; waiting for the game over")
            self.destroyed = True
        elif kind == "GameOverNotification":
            self.winner = data["winner"]
            print(f"game over, winner: {data['winner']}")
            self.game_over = True

    async def register(self) -> bool:
        ack = await self.socket.register()
        if ack["type"] != "RegisterPlayerAck":
            print(f"registration refused: {ack['data']['reason']}")
            return False
        self.tactics.observe(ack)
        data = ack["data"]
        self.destroyed = self.game_over = False
        print(f"registered as player {data['id']} at ({data['x']}, {data['y']}), "
              f"{data['shooting']['tokens']} tokens, {data['shooting']['cost']} a shot")
        return True

    async def turn(self) -> None:
        """One command, and its reply."""
        command = self.tactics.command()
        if command is SHOOT:
            reply = await self.socket.shoot()
        else:
            reply = await self.socket.move(*command["data"])
        self.tactics.observe(reply)
        data = reply["data"]
        if reply["type"] == "MovePlayerAck":
            self.moves += 1
            print(f"moved to ({data['x']}, {data['y']}), heading {data['rotation']}")
        elif reply["type"] == "PlayerShotAck":
            self.shots += 1
            print(f"shot: {data['shooting']['tokens']} tokens left")
        else:
            print(f"refused: {data['reason']}")


async def token_for(api: RestClient, username: str, password: str) -> str:
    """Sign up (a taken username is fine: it is ours from an earlier run) and log in."""
    try:
        await api.sign_up(username, password)
    except RestError as e:
        if e.status != 400:
            raise
    return await api.token(username, password)


async def arena_config(api: RestClient, arena_id: str) -> Message:
    """The arena's configuration (its size, speeds...), or the defaults if it cannot be read."""
    status, body = await api.call("GET", f"/api/arenas/{arena_id}/")
    return body["config"] if status == 200 else {}


class Controller:
    """The arena's controller socket: starts a round once enough players are in the arena."""

    def __init__(self, socket: arena.ArenaClient, players: int) -> None:
        self.socket = socket
        self.players = players
        self.registered = 0
        self._enough: defer.Deferred[None] | None = None
        # A snapshot comes every tick: count the players as they arrive.
        socket.on_message = self.notified
        socket.closed.addCallback(lambda _: self._wake())

    def notified(self, message: Message) -> None:
        if message.get("type") == "GameSnapshotNotification":
            self.registered = len(message["data"]["arena_snapshot"]["players_snapshots"])
            if self.registered >= self.players:
                self._wake()

    def _wake(self) -> None:
        waiting, self._enough = self._enough, None
        if waiting is not None:
            waiting.callback(None)

    async def start_round(self) -> None:
        if self.socket.closed.called:
            return  # replaced by a newer controller: someone else controls the arena
        if self.registered < self.players:
            print(f"waiting for {self.players} players to start")
            self._enough = defer.Deferred()
            await self._enough
            if self.socket.closed.called:
                return
        try:
            reply = await self.socket.start_game()
        except arena.ConnectionClosed as e:
            print(f"no longer the controller: {e}")  # a newer one starts the game
            return
        if reply["type"] == "StartGameAck":
            print("started the game")
        else:
            print(f"could not start the game: {reply['data']['reason']}")


async def main(reactor: Any, options: argparse.Namespace) -> None:
    http, ws = f"http://{options.host}:{options.port}", f"ws://{options.host}:{options.port}"
    api = RestClient(reactor, http)
    token = await token_for(api, options.username, options.password)
    config = await arena_config(api.as_user(token), options.arena)
    socket = await arena.connect(reactor, ws, options.arena, token=token,
                                 ignore={"RadarScanNotification"})
    bot = Bot(socket, Tactics(config, random.Random(options.seed)))
    controller = None
    try:
        if not await bot.register():
            raise SystemExit(1)
        if not options.no_start:
            controller = Controller(
                await arena.connect(reactor, ws, options.arena, role="control", token=token,
                                    ignore={"GameSnapshotNotification"}),
                options.players)
        number = rounds = 0
        while options.rounds == 0 or rounds < options.rounds:
            if controller is not None:
                await controller.start_round()
            await socket.wait_for_type("StartGameOrder", timeout=None)
            print("game started")
            while not (bot.game_over or bot.destroyed):
                if options.turns and number >= options.turns:
                    break
                await bot.turn()
                number += 1
            if options.turns and number >= options.turns:
                break
            if not bot.game_over:
                await socket.wait_for_type("GameOverNotification", timeout=None)
            rounds += 1
            if (options.rounds == 0 or rounds < options.rounds) and not await bot.register():
                raise SystemExit(1)
        print(f"done: {rounds} round(s), {bot.moves} moves, {bot.shots} shots, "
              f"{bot.scans} radar scans")
    finally:
        connections = [socket] + ([controller.socket] if controller is not None else [])
        for connection in connections:
            if not connection.closed.called:
                connection.close()
                await connection.closed


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A gameproto arena bot.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--arena", default="default")
    parser.add_argument("--username", default="arena-bot")
    parser.add_argument("--password", default="arena-bot-password")
    parser.add_argument("--players", type=int, default=2,
                        help="start a round once this many players are registered")
    parser.add_argument("--rounds", type=int, default=0,
                        help="stop after this many rounds (0: play until interrupted)")
    parser.add_argument("--turns", type=int, default=0,
                        help="stop after this many commands (0: no limit)")
    parser.add_argument("--no-start", action="store_true",
                        help="do not connect as the controller; wait for a start")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the random sidesteps (default: a fresh one)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))
