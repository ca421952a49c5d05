"""
Properties of the arena's geometry helpers (gameproto.arena.world) that the engine's
per-tick speed rests on: the fast rounding (of one value or of a list) gives Python's
C{round(value, 5)} bit for bit, and the reach bands never hide a player that a shot reaches.
"""

from __future__ import annotations

import math
import struct

from hypothesis import example, given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

# Importing it loads the project's deterministic Hypothesis profile.
from tests.propertysupport import settings
from gameproto.arena.world import (
    Player, PlayerState, Pose, all_rounded, first_reached, reach_bands, rounded,
)


def bits(value: float) -> bytes:
    """The float's bytes: 0.0 and -0.0 differ, as they do on the wire."""
    return struct.pack("<d", value)


def python_rounded(value: float) -> float:
    return round(float(value), 5) + 0.0


# Coordinates as the engine has them: anywhere in (and a little beyond) the largest arena.
coordinates = st.floats(min_value=-20_000, max_value=20_000, allow_nan=False)


@st.composite
def near_halves(draw: st.DrawFn) -> float:
    """Floats within a few ulps of k + 0.5 hundred-thousandths, where rounding is delicate."""
    k = draw(st.integers(min_value=-1_000_000_000, max_value=1_000_000_000))
    value = (k + 0.5) / 100000.0
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        value = math.nextafter(value, draw(st.sampled_from([math.inf, -math.inf])))
    return value


class RoundedTests(SynchronousTestCase):
    @settings(max_examples=2000)  # cheap, and the halves are where it could go wrong
    @given(coordinates | near_halves() | st.floats(allow_nan=False, allow_infinity=False))
    @example(0.0)
    @example(-0.0)
    @example(-0.000004)
    @example(0.000015)
    @example(1.234565)
    @example(2.5e-06)
    @example(799.999995)
    @example(1e9)
    @example(-1e300)
    def test_as_python_rounds(self, value: float) -> None:
        """C{rounded} is C{round(value, 5)}, with -0.0 as 0.0, to the last bit."""
        self.assertEqual(bits(rounded(value)), bits(python_rounded(value)))

    @settings(max_examples=500)
    @given(st.lists(coordinates | near_halves() | st.floats(allow_nan=False), max_size=50))
    @example([0.0, -0.0, -0.000004, 1.234565, 2.5e-06, 799.999995, 1e9, 10_000.0, -1e300])
    def test_all_rounded(self, values: list[float]) -> None:
        """C{all_rounded} is C{rounded} of each value, to the last bit."""
        self.assertEqual([bits(value) for value in all_rounded(values)],
                         [bits(python_rounded(value)) for value in values])

    @given(st.integers(min_value=-10_000, max_value=10_000))
    def test_integers(self, value: int) -> None:
        """Integral coordinates (spawn points) come out as floats, as before."""
        self.assertEqual(bits(rounded(value)), bits(python_rounded(value)))


def player(index: int, x: float, y: float) -> Player:
    return Player(id=str(index), client=index, pose=Pose(x, y, 0), life=1, tokens=0,
                  state=PlayerState.IN_ARENA, spawn_index=None)


@st.composite
def scenes(draw: st.DrawFn) -> tuple[list[Player], float, float, float]:
    """Players, a reach, and a shot that is often exactly at the edge of someone's reach."""
    reach = draw(st.sampled_from([2, 6, 1.5, 100, 50.5, 5.000001]))
    places = draw(st.lists(st.tuples(coordinates, coordinates), min_size=0, max_size=6))
    players = [player(index, x, y) for index, (x, y) in enumerate(places)]
    if players and draw(st.booleans()):
        target = draw(st.sampled_from(players))
        angle = draw(st.floats(min_value=0, max_value=2 * math.pi))
        distance = draw(st.sampled_from([reach, math.nextafter(reach, math.inf),
                                         math.nextafter(reach, 0), 0, reach / 2]))
        x = target.pose.x + distance * math.cos(angle)
        y = target.pose.y + distance * math.sin(angle)
        if draw(st.booleans()):
            x, y = target.pose.x + distance, target.pose.y  # straight along x
    else:
        x, y = draw(coordinates), draw(coordinates)
    return players, reach, x, y


class ReachBandsTests(SynchronousTestCase):
    @given(scenes())
    def test_as_every_player_tested(self, scene: tuple[list[Player], float, float, float]) -> None:
        """
        The bands find the same player as testing every player in turn, the first in
        registration order within reach, or nobody.
        """
        players, reach, x, y = scene
        reach_squared = reach * reach
        expected = next(
            (p for p in players
             if (p.pose.x - x) * (p.pose.x - x) + (p.pose.y - y) * (p.pose.y - y)
             <= reach_squared),
            None,
        )
        nearby = reach_bands(players, reach).get(x // reach)
        found = None if nearby is None else first_reached(nearby, x, y, reach_squared)
        self.assertIs(found, expected)
