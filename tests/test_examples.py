"""
The programs in examples/ run as their docstrings say, against a real
C{twistd -n gameproto} process, and print what they claim to do.
"""

from __future__ import annotations

import os
import re
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.nodes import Node, stop_on_cleanup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARENA_BOT = os.path.join(ROOT, "examples", "arena_bot.py")


class ArenaBotExampleTests(TestCase):
    """examples/arena_bot.py against a server with the C{default} arena and no owner."""

    timeout = 120

    def setUp(self) -> Deferred[None]:
        self.node = stop_on_cleanup(self, Node("--store", "memory:"))
        return self.node.start().addCallback(lambda _: None)

    async def run_bot(self, *options: str) -> str:
        """Run the example to its end; its standard output (the exit code must be 0)."""
        out, err, code = await getProcessOutputAndValue(
            sys.executable, [ARENA_BOT, "--port", str(self.node.port), *options],
            env=dict(os.environ), path=ROOT, reactor=reactor)
        text = out.decode("utf-8", "replace")
        self.assertEqual(code, 0, f"exit {code}\n{text}\n{err.decode('utf-8', 'replace')}")
        return text

    def test_plays_a_game(self) -> Deferred[None]:
        """
        The bot signs up, registers, starts the game as the controller of C{default},
        sees its radar, moves and shoots, and stops after C{--turns} commands.
        """
        async def scenario() -> None:
            text = await self.run_bot("--turns", "12")
            self.assertRegex(text, r"registered as player 1 at \(\d+, \d+\), 40 tokens, 6 a shot")
            self.assertIn("started the game\n", text)
            self.assertIn("game started\n", text)
            self.assertRegex(text, r"radar: 0 player\(s\) in sight, \d wall\(s\) in range")
            self.assertRegex(text, r"moved to \([\d.]+, [\d.]+\), heading")
            self.assertIn("shot: 34 tokens left\n", text)
            done = re.search(r"done: (\d+) moves, (\d+) shots, (\d+) radar scans", text)
            assert done is not None, text
            moves, shots, scans = map(int, done.groups())
            self.assertEqual(shots, 2)  # turns 3 and 11 of 0..11
            self.assertGreater(moves, 0)
            self.assertGreaterEqual(scans, 12)  # one scan before each command's reply
            self.assertLess(text.index("registered as player"), text.index("game started"))
            self.assertLess(text.index("game started"), text.index("shot:"))
        return ensureDeferred(scenario())

    def test_second_run_reuses_the_account(self) -> Deferred[None]:
        """
        A second run finds its username taken, logs in with it anyway, and plays a new
        game: the first run's leaving ended the game it had started.
        """
        async def scenario() -> None:
            await self.run_bot("--turns", "2")
            text = await self.run_bot("--turns", "4")
            self.assertRegex(text, r"registered as player \d+ at")
            self.assertIn("started the game\n", text)
            self.assertIn("done: ", text)
        return ensureDeferred(scenario())
