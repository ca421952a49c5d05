"""
The programs in examples/ run as their docstrings say, against a real
C{twistd -n gameproto} process, and print what they claim to do.  The arena bot's tactics
are also played out against the arena engine itself, without a network.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import re
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gameproto.arena.commands import StartGameCommand
from gameproto.arena.config import ArenaConfig
from gameproto.arena.engine import CONTROLLER, ArenaEngine, parse_command
from tests.nodes import Node, http_json, stop_on_cleanup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARENA_BOT = os.path.join(ROOT, "examples", "arena_bot.py")


def load_arena_bot() -> Any:
    """examples/arena_bot.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("arena_bot", ARENA_BOT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arena_bot = load_arena_bot()


class _Program(ProcessProtocol):
    """A program run to its end: its output, and its exit code once it is gone."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int | None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        code = reason.value.exitCode if reason.check(ProcessDone, ProcessTerminated) else None
        self.ended.callback(code)


class ArenaBotExampleTests(TestCase):
    """examples/arena_bot.py against a server with the C{default} arena and no owner."""

    timeout = 120

    def setUp(self) -> Deferred[None]:
        self.node = stop_on_cleanup(self, Node("--store", "memory:"))
        return self.node.start().addCallback(lambda _: None)

    async def run_bot(self, *options: str) -> str:
        """Run the example to its end; its standard output (the exit code must be 0)."""
        program = _Program()
        process = reactor.spawnProcess(
            program, sys.executable,
            [sys.executable, ARENA_BOT, "--port", str(self.node.port), *options],
            env=dict(os.environ), path=ROOT)

        def kill_if_running() -> None:
            if not program.ended.called:
                process.signalProcess("KILL")

        self.addCleanup(kill_if_running)  # a bot that hangs does not outlive its test
        code = await program.ended
        text = program.out.decode("utf-8", "replace")
        self.assertEqual(code, 0, f"exit {code}\n{text}\n{program.err.decode('utf-8', 'replace')}")
        return text

    def test_plays_a_game(self) -> Deferred[None]:
        """
        Alone (C{--players 1}) the bot signs up, registers, starts the game as the
        controller of C{default}, sees its radar and, with nobody in sight, walks toward
        the middle of the arena without shooting; it stops after C{--turns} commands.
        """
        async def scenario() -> None:
            text = await self.run_bot("--turns", "12", "--players", "1")
            spawn = re.search(r"registered as player 1 at \((\d+), (\d+)\), 40 tokens, "
                              r"6 a shot", text)
            assert spawn is not None, text
            self.assertIn("started the game\n", text)
            self.assertIn("game started\n", text)
            self.assertRegex(text, r"radar: 0 player\(s\) in sight, \d wall\(s\) in range")
            moves = [(float(x), float(y)) for x, y in
                     re.findall(r"moved to \(([\d.]+), ([\d.]+)\), heading", text)]
            self.assertEqual(len(moves), 12)
            start = (float(spawn.group(1)), float(spawn.group(2)))
            # Each step is move_speed (2) closer to the middle of the 800 x 400 arena.
            closer = math.dist(start, (400, 200)) - math.dist(moves[-1], (400, 200))
            self.assertLess(abs(closer - 24), 0.01)
            self.assertNotIn("shot:", text)
            self.assertIn("done: 0 round(s), 12 moves, 0 shots, ", text)
            self.assertLess(text.index("registered as player"), text.index("game started"))
        return ensureDeferred(scenario())

    def test_second_run_reuses_the_account(self) -> Deferred[None]:
        """
        A second run finds its username taken, logs in with it anyway, and plays a new
        game: the first run's leaving ended the game it had started.
        """
        async def scenario() -> None:
            await self.run_bot("--turns", "2", "--players", "1")
            text = await self.run_bot("--turns", "4", "--players", "1")
            self.assertRegex(text, r"registered as player \d+ at")
            self.assertIn("started the game\n", text)
            self.assertIn("done: ", text)
        return ensureDeferred(scenario())

    def test_two_copies_fight_to_a_winner(self) -> Deferred[None]:
        """
        Two copies of the bot in one arena, spawned 80 apart (twice the radar's reach),
        each trying to control it: they find each other, fight, and play three rounds to
        their GameOverNotification; the copies agree on every winner, and at least one
        round has one (two copies can still fall in the same tick now and then).
        """
        async def scenario() -> None:
            account = {"username": "duelist", "password": "duelist-password"}
            url = self.node.url
            status, _ = await http_json("POST", url("/api/users/sign_up/"), account)
            self.assertEqual(status, 201)
            _, body = await http_json("POST", url("/api/token/"), account)
            status, _ = await http_json("POST", url("/api/arenas/"), {
                "id": "duel",
                "config": {"tick_ms": 10, "spawn_points": [[100, 100, 0], [180, 100, 180]]},
            }, token=body["token"])
            self.assertEqual(status, 201)
            options = ("--arena", "duel", "--username", account["username"], "--password",
                       account["password"], "--rounds", "3")
            texts = await gatherResults([
                ensureDeferred(self.run_bot(*options, "--seed", str(seed))) for seed in (1, 2)
            ])
            winners = [re.findall(r"^game over, winner: (\w+)$", text, re.M) for text in texts]
            self.assertEqual(len(winners[0]), 3, texts[0])
            self.assertEqual(winners[0], winners[1])
            self.assertTrue(any(winner != "None" for winner in winners[0]), winners)
            for text in texts:
                self.assertRegex(text, r"radar: 1 player\(s\) in sight")
                self.assertIn("shot: ", text)
                self.assertIn("done: 3 round(s), ", text)
            self.assertTrue(any("hit! life" in text for text in texts))
        return ensureDeferred(scenario())


class GameOver(Exception):
    def __init__(self, winner: str | None) -> None:
        self.winner = winner


def duel(spawn_points: list[list[int]], seeds: tuple[int, int],
         ticks: int = 2000) -> tuple[str | None, int]:
    """
    Two players driven by the example's L{Tactics} in an arena engine, as the example's
    loop drives them (each sends its next command when its reply comes): the winner's id
    (C{None} for a draw) and the ticks the round took.
    """
    config = {"spawn_points": spawn_points}
    engine = ArenaEngine(ArenaConfig.from_dict(config), random.Random(seeds[0]))
    players = {name: arena_bot.Tactics(config, random.Random(seed))
               for name, seed in zip("AB", seeds)}

    def deliver(outgoing: list[Any]) -> set[str]:
        """Hand each player its messages; the players that got their reply."""
        replied = set()
        for recipient, message in outgoing:
            if recipient in players:
                players[recipient].observe(message)
                if message["type"] in ("MovePlayerAck", "PlayerShotAck", "InvalidCommandError"):
                    replied.add(recipient)
            elif recipient is CONTROLLER and message["type"] == "GameOverNotification":
                raise GameOver(message["data"]["winner"])
        return replied

    for name in players:
        engine.submit(name, parse_command({"type": "RegisterPlayerCommand"}))
    deliver(engine.tick())
    engine.control(StartGameCommand())
    ready = set(players)
    for tick in range(ticks):
        for name in sorted(ready):
            engine.submit(name, parse_command(players[name].command()))
        try:
            ready = deliver(engine.tick())
        except GameOver as over:
            return over.winner, tick
    raise AssertionError(f"no game over in {ticks} ticks")


class TacticsTests(SynchronousTestCase):
    """The example's L{Tactics}, fed messages by hand and played against the arena engine."""

    def tactics(self) -> Any:
        tactics = arena_bot.Tactics({}, random.Random(1))
        tactics.observe({"type": "RegisterPlayerAck", "data": {
            "id": "1", "x": 100, "y": 100, "life": 100, "shooting": {"tokens": 40, "cost": 6}}})
        return tactics

    def test_learns_tokens_from_move_acks(self) -> None:
        """
        Aimed at a player in sight with 2 tokens (a shot costs 6), the bot does not shoot;
        as soon as a MovePlayerAck says 6 tokens, its next command is a shot.
        """
        tactics = self.tactics()
        tactics.observe({"type": "RadarScanNotification", "data": {
            "elements": [{"type": "unknown", "coordinates": {"x": 120.0, "y": 100.0}}],
            "walls": []}})
        tactics.observe({"type": "MovePlayerAck", "data": {
            "x": 100.0, "y": 100.0, "rotation": 0, "shooting": {"tokens": 2, "cost": 6}}})
        self.assertEqual(tactics.command()["type"], "MovePlayerCommand")
        tactics.observe({"type": "MovePlayerAck", "data": {
            "x": 100.0, "y": 100.0, "rotation": 0, "shooting": {"tokens": 6, "cost": 6}}})
        self.assertEqual(tactics.command(), {"type": "PlayerShootCommand"})

    def test_searches_the_middle(self) -> None:
        """With nobody in sight the bot walks toward the middle of the arena, (400, 200)."""
        tactics = self.tactics()
        tactics.observe({"type": "RadarScanNotification", "data": {"elements": [], "walls": []}})
        command = tactics.command()
        self.assertEqual(command["data"][1], {"move": "forward"})
        self.assertAlmostEqual(command["data"][0]["rotate"],
                               math.degrees(math.atan2(100, 300)), places=2)

    def test_rounds_end(self) -> None:
        """
        Spawned 30 or 80 apart, or at random, two copies finish every round within a few
        hundred ticks, and most rounds have a winner.
        """
        layouts = {"30 apart": [[100, 100, 0], [130, 100, 180]],
                   "80 apart": [[100, 100, 0], [180, 100, 180]],
                   "random": []}
        for name, spawn_points in layouts.items():
            outcomes = [duel(spawn_points, (2 * n + 1, 2 * n + 2)) for n in range(20)]
            self.assertLess(max(ticks for _, ticks in outcomes), 600, name)
            decided = sum(winner is not None for winner, _ in outcomes)
            self.assertGreaterEqual(decided, 15, name)
