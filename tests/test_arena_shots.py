"""
L{gameproto.arena.shots.ShotsInFlight} against the plainest model of shots in flight, one
shot at a time (as the engine once kept them): the same positions float for float, the same
shots into walls at the same move (the walls are tested only when a shot may have reached
one), the same hits in the same order, and a snapshot encoded byte for byte as its dicts.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

# Importing it loads the project's deterministic Hypothesis profile.
from tests.propertysupport import settings
from gameproto.arena.config import ArenaConfig
from gameproto.arena.shots import ShotsInFlight
from gameproto.arena.world import Player, PlayerState, Pose, rounded

# Headings along an axis (a step of almost nothing across it), just off one, and any.
HEADINGS = st.sampled_from([0, 90, 180, 270, 360, 45, 359.99, 0.001, 89.9999999, 1e-12,
                            180.0000001]) | st.floats(min_value=0, max_value=360)


class ModelShot:
    """A shot as the engine kept it before its shots were kept column by column."""

    def __init__(self, id: str, muzzle: Pose, speed: float) -> None:
        self.id, self.x, self.y, self.rotation = id, muzzle.x, muzzle.y, muzzle.rotation
        moved = muzzle.advanced(speed)
        self.dx, self.dy = moved.x - muzzle.x, moved.y - muzzle.y

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "coordinates": {"x": rounded(self.x), "y": rounded(self.y)},
                "rotation": self.rotation}


def model_move(shots: list[ModelShot], config: ArenaConfig,
               players: list[Player]) -> tuple[list[ModelShot], list[Player]]:
    reach = config.player_radius + config.shot_radius
    flying, hits = [], []
    for shot in shots:
        shot.x += shot.dx
        shot.y += shot.dy
        if not (0 < shot.x < config.width and 0 < shot.y < config.height):
            continue
        hit = next((p for p in players
                    if (p.pose.x - shot.x) * (p.pose.x - shot.x)
                    + (p.pose.y - shot.y) * (p.pose.y - shot.y) <= reach * reach), None)
        if hit is not None:
            hits.append(hit)
        else:
            flying.append(shot)
    return flying, hits


@st.composite
def games(draw: st.DrawFn) -> tuple[ArenaConfig, list[Any]]:
    """An arena and what happens in it, move by move: shots born, players moved."""
    width = draw(st.sampled_from([100, 120, 800]))
    height = draw(st.sampled_from([100, 400]))
    config = ArenaConfig.from_dict({
        "width": width, "height": height,
        "shot_speed": draw(st.sampled_from([0.1, 1.5, 3.7, 9.5, 100])),
        "player_radius": draw(st.sampled_from([1, 5, 7.5])),
        "shot_radius": draw(st.sampled_from([0, 0.5, 1])),
    })
    # Muzzles anywhere, on the walls included.
    xs = st.sampled_from([0, width, 0.5, width - 1e-9]) | st.floats(0, width)
    ys = st.sampled_from([0, height, 0.5, height - 1e-9]) | st.floats(0, height)
    moves = []
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        births = draw(st.lists(st.tuples(xs, ys, HEADINGS), max_size=4))
        players = draw(st.lists(st.tuples(xs, ys), max_size=3))
        moves.append((births, players))
    return config, moves


class ShotsInFlightTests(SynchronousTestCase):
    @settings(max_examples=300)
    @given(games())
    def test_as_the_model(self, game: tuple[ArenaConfig, list[Any]]) -> None:
        """Positions, walls, hits and the encoded snapshot are the model's, move by move."""
        config, moves = game
        shots = ShotsInFlight(config)
        model: list[ModelShot] = []
        serial = 0
        for births, places in moves:
            for x, y, heading in births:
                serial += 1
                shots.add(str(serial), Pose(x, y, heading))
                model.append(ModelShot(str(serial), Pose(x, y, heading), config.shot_speed))
            players = [
                Player(id=str(index), client=index, pose=Pose(x, y, 0), life=1, tokens=0,
                       state=PlayerState.IN_ARENA, spawn_index=None)
                for index, (x, y) in enumerate(places)
            ]
            hits = shots.move(players)
            model, expected_hits = model_move(model, config, players)
            self.assertEqual([id(p) for p in hits], [id(p) for p in expected_hits])
            expected = [shot.snapshot() for shot in model]
            self.assertEqual(shots.snapshots(), expected)
            self.assertEqual(shots.encoded(), orjson.dumps(expected))
            self.assertEqual(len(shots), len(model))

    def test_long_flight_along_a_wall(self) -> None:
        """
        A shot flying along an axis, its step across it almost nothing, is dropped at the
        very move its position leaves the arena, however long it flies.
        """
        config = ArenaConfig.from_dict({"width": 10_000, "height": 100, "shot_speed": 0.1})
        for heading in [1e-9, 90 - 1e-9, 180 + 1e-9, 0.0001]:
            shots = ShotsInFlight(config)
            model = [ModelShot("1", Pose(0.5, 1e-7 if heading < 1 else 50, heading), 0.1)]
            shots.add("1", Pose(model[0].x, model[0].y, heading))
            for _ in range(120_000):
                shots.move([])
                model, _ = model_move(model, config, [])
                if not model:
                    break
                self.assertEqual(len(shots), 1)
            self.assertEqual(len(shots), len(model))

    def test_empty(self) -> None:
        """No shots: an empty list, encoded as one."""
        shots = ShotsInFlight(ArenaConfig.from_dict({}))
        self.assertEqual(shots.move([]), [])
        self.assertEqual((shots.snapshots(), shots.encoded()), ([], b"[]"))
