"""
The arena engine's whole output, byte for byte, against a recording: seeded games
(tests/arena_scenarios.py) replayed on today's engine must send every client exactly what
the engine sent them before its per-tick work was restructured.
"""

from __future__ import annotations

import os

import orjson
from twisted.trial.unittest import SynchronousTestCase

from tests import arena_scenarios

RECORDING = os.path.join(os.path.dirname(__file__), "arena_engine_stream.json")


class RecordedStreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        with open(RECORDING, "rb") as f:
            self.recording = orjson.loads(f.read())

    def check(self, name: str) -> None:
        expected = self.recording[name]["digests"]
        ticks = 0
        for tick, calls in enumerate(arena_scenarios.run(name)):
            ticks += 1
            if arena_scenarios.digest(calls) != expected[tick]:
                shown = "\n".join(f"  {call}: {[(to, payload.decode()) for to, payload in out]}"
                                  for call, out in calls)
                self.fail(f"scenario {name}: tick {tick} differs from the recording; "
                          f"it went:\n{shown}")
        self.assertEqual(ticks, len(expected))

    def test_scenarios(self) -> None:
        """The recording holds every scenario, and nothing else."""
        self.assertEqual(sorted(self.recording), sorted(arena_scenarios.SCENARIOS))

    def test_defaults(self) -> None:
        """The default rules, random spawns, rounds decided by destruction."""
        self.check("defaults")

    def test_small(self) -> None:
        """A small arena: walls, collisions, a full arena, late joiners."""
        self.check("small")

    def test_bench(self) -> None:
        """The benchmark's arena: harmless shots piling up in flight."""
        self.check("bench")

    def test_deadly(self) -> None:
        """Fast shots, fragile players: rounds that end often."""
        self.check("deadly")
