"""
The configuration of one arena: every key of DESIGN.md §4 "arena", with its default and range.

L{ArenaConfig.from_dict} builds one from the decoded JSON of C{POST /api/arenas/} and
L{ArenaConfig.asdict} echoes it back.  Constructing an L{ArenaConfig} directly validates too,
so no arena can run on a configuration the REST API would have refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable

import attrs

_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

# Bounds the REST body: a spawn list longer than this is a mistake, not a map.
MAX_SPAWN_POINTS = 1000


class ArenaConfigError(ValueError):
    """
    A configuration key is unknown, or its value has the wrong type or is out of range.

    @ivar key: the offending key, as the REST API reports it in its C{"field"}.
    @ivar problem: what is wrong with it, without the key.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def _is_integer(value: object) -> bool:
    # bool is an int subclass, but true is not a width.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    # JSON cannot carry NaN or infinities, but a caller building a config in code can.
    return _is_integer(value) or (isinstance(value, float) and math.isfinite(value))


def _integer(low: int, high: int) -> _Validator:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not _is_integer(value):
            raise ArenaConfigError(attribute.name, f"must be an integer between {low} and {high}")
        if not low <= value <= high:  # type: ignore[operator]
            raise ArenaConfigError(attribute.name, f"must be between {low} and {high}")

    return check


def _real(low: float, high: float) -> _Validator:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not _is_real(value):
            raise ArenaConfigError(attribute.name, f"must be a number between {low} and {high}")
        if not low <= value <= high:  # type: ignore[operator]
            raise ArenaConfigError(attribute.name, f"must be between {low} and {high}")

    return check


def _boolean(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ArenaConfigError(attribute.name, "must be true or false")


@attrs.frozen
class SpawnPoint:
    """Where, and facing which way, a registrant starts; C{[x, y, rotation]} on the wire."""

    x: int
    y: int
    rotation: int

    def aslist(self) -> list[int]:
        return [self.x, self.y, self.rotation]


def _spawn_points(value: object) -> tuple[SpawnPoint, ...]:
    """
    Parse the JSON form of C{spawn_points}: a list of C{[x, y, rotation]} integer triples.
    Whether each point lies inside the arena is checked by L{ArenaConfig}, which knows its size.

    @raise ArenaConfigError: naming C{spawn_points}.
    """
    if not isinstance(value, list):
        raise ArenaConfigError("spawn_points", "must be a list of [x, y, rotation]")
    points = []
    for index, entry in enumerate(value):
        if not (isinstance(entry, list) and len(entry) == 3 and all(map(_is_integer, entry))):
            raise ArenaConfigError(
                "spawn_points", f"entry {index} must be [x, y, rotation], three integers"
            )
        points.append(SpawnPoint(*entry))
    return tuple(points)


@attrs.frozen(kw_only=True)
class ArenaConfig:
    """
    The rules of one arena.  Lengths are arena units, speeds are units per tick, angles are
    degrees.  Ranges the design leaves open are chosen so that every combination still plays:
    a player fits the smallest arena, and no value needs more than a 64-bit integer.
    """

    width: int = attrs.field(default=800, validator=_integer(100, 10_000))
    height: int = attrs.field(default=400, validator=_integer(100, 10_000))
    max_players: int = attrs.field(default=4, validator=_integer(1, 64))
    tick_ms: int = attrs.field(default=20, validator=_integer(10, 1000))
    players_can_join_started_game: bool = attrs.field(default=False, validator=_boolean)
    # At most half the smallest side, so a player always fits inside the arena.
    player_radius: float = attrs.field(default=5, validator=_real(1, 50))
    player_life: int = attrs.field(default=100, validator=_integer(1, 1_000_000))
    spawn_margin: int = attrs.field(default=16, validator=_integer(0, 5000))
    move_speed: float = attrs.field(default=2, validator=_real(0.1, 100))
    shot_speed: float = attrs.field(default=1.5, validator=_real(0.1, 100))
    shot_radius: float = attrs.field(default=1, validator=_real(0, 50))
    shot_damage: int = attrs.field(default=5, validator=_integer(0, 1_000_000))
    shot_cost: int = attrs.field(default=6, validator=_integer(0, 1_000_000))
    initial_tokens: int = attrs.field(default=40, validator=_integer(0, 1_000_000))
    max_tokens: int = attrs.field(default=40, validator=_integer(0, 1_000_000))
    tokens_per_tick: int = attrs.field(default=2, validator=_integer(0, 1_000_000))
    # The diagonal of the largest arena is about 14,143: a larger radius would see nothing more.
    circular_scan_radius: float = attrs.field(default=40, validator=_real(0, 20_000))
    long_range_scan_radius: float = attrs.field(default=80, validator=_real(0, 20_000))
    long_range_scan_half_angle: float = attrs.field(default=30, validator=_real(0, 180))
    spawn_points: tuple[SpawnPoint, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        # Checks that involve several keys; each names the key a user would change.
        if self.initial_tokens > self.max_tokens:
            raise ArenaConfigError("initial_tokens", "must not exceed max_tokens")
        if 2 * self.spawn_margin > min(self.width, self.height):
            raise ArenaConfigError(
                "spawn_margin", "must be at most half the arena's width and height"
            )
        self._check_spawn_points()

    def _check_spawn_points(self) -> None:
        if len(self.spawn_points) > MAX_SPAWN_POINTS:
            raise ArenaConfigError("spawn_points", f"must hold at most {MAX_SPAWN_POINTS} points")
        for index, point in enumerate(self.spawn_points):
            if not isinstance(point, SpawnPoint):
                raise ArenaConfigError("spawn_points", f"entry {index} must be a SpawnPoint")
            # On the border is inside: a spawn point may put a player against a wall.
            if not (0 <= point.x <= self.width and 0 <= point.y <= self.height):
                raise ArenaConfigError(
                    "spawn_points",
                    f"entry {index} must lie inside the {self.width}x{self.height} arena",
                )
            if not 0 <= point.rotation <= 360:
                raise ArenaConfigError(
                    "spawn_points", f"entry {index} must have a rotation between 0 and 360"
                )

    @classmethod
    def from_dict(cls, values: object) -> ArenaConfig:
        """
        Build a configuration from decoded JSON: any subset of the keys, the others default.

        @raise ArenaConfigError: for a non-object, an unknown key, or a bad value; its C{key}
            names the first offending key.
        """
        if not isinstance(values, Mapping):
            raise ArenaConfigError("config", "must be a JSON object")
        known = {field.name for field in attrs.fields(cls)}
        for key in values:
            if key not in known:
                raise ArenaConfigError(str(key), "is not a configuration key")
        arguments = dict(values)
        if "spawn_points" in arguments:
            arguments["spawn_points"] = _spawn_points(arguments["spawn_points"])
        return cls(**arguments)

    def asdict(self) -> dict[str, Any]:
        """
        @return: every key and its value, as JSON (the REST API's echo of the configuration).
        """
        values = {field.name: getattr(self, field.name) for field in attrs.fields(type(self))}
        values["spawn_points"] = [point.aslist() for point in self.spawn_points]
        return values
