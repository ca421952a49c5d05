"""
The things of an arena and the messages about them, for L{gameproto.arena.engine}: the
recipients and messages an engine returns, poses, players and shots, and the radar's
geometry.  Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable
from typing import Any, Final, NamedTuple, TypeAlias

import attrs

from gameproto.arena.commands import RadarType

Message: TypeAlias = dict[str, Any]

# Coordinates on the wire are rounded to this many decimals (DESIGN.md: 11.73205).
_DECIMALS = 5

class Controller(enum.Enum):
    """The type of L{CONTROLLER}; an enum so that type checkers know it is a single value."""

    CONTROLLER = "controller"


CONTROLLER: Final = Controller.CONTROLLER
"""The recipient of messages for whichever connection controls the arena."""


class Outgoing(NamedTuple):
    """A message to send, and to whom: a client key or L{CONTROLLER}."""

    recipient: Hashable
    message: Message


# ---------------------------------------------------------------------------
# Messages: every server message carries "data", {} when empty.


def message(type_: str, **data: Any) -> Message:
    return {"type": type_, "data": data}


def invalid_command_error(reason: str) -> Message:
    """
    @return: the C{InvalidCommandError} saying C{reason}, for the engine's refusals and for the
        protocol's own (a frame that is not JSON, an L{InvalidCommand}).
    """
    return message("InvalidCommandError", reason=reason)


def rounded(value: float) -> float:
    # Adding 0.0 turns -0.0 into 0.0, which nobody wants to read on the wire.
    return round(float(value), _DECIMALS) + 0.0


def coordinates(pose: Pose) -> dict[str, float]:
    return {"x": rounded(pose.x), "y": rounded(pose.y)}


def refusal(recipient: Hashable, reason: str) -> list[Outgoing]:
    return [Outgoing(recipient, invalid_command_error(reason))]


# ---------------------------------------------------------------------------
# Game state


@attrs.frozen
class Pose:
    """Where something is and which way it faces."""

    x: float
    y: float
    rotation: float

    def advanced(self, distance: float) -> Pose:
        """@return: this pose moved C{distance} along its heading (negative: backwards)."""
        heading = math.radians(self.rotation)
        return attrs.evolve(
            self,
            x=self.x + distance * math.cos(heading),
            y=self.y + distance * math.sin(heading),
        )

    def distance_to(self, other: Pose) -> float:
        return math.hypot(other.x - self.x, other.y - self.y)


class PlayerState(enum.Enum):
    IN_ARENA = "in arena"
    """Playing (or about to, before the start): in the snapshots and in everyone's radar."""

    PARKED = "parked"
    """Registered during a started game that late registrants cannot join: plays next round."""

    DESTROYED = "destroyed"
    """Out of life: gone from the arena, still registered until the round ends."""


@attrs.define
class Player:
    id: str
    client: Hashable
    pose: Pose
    life: int
    tokens: int
    state: PlayerState
    spawn_index: int | None
    """The index of the spawn point this player holds, if it spawned on one."""
    radar: RadarType = RadarType.CIRCULAR_SCAN
    user: str | None = None
    """The user the player's connection is attributed to, if any."""


@attrs.define
class Shot:
    id: str
    pose: Pose
    # The move of one tick: a shot keeps its heading, so the trigonometry is done once.
    step: tuple[float, float] | None = None


def shot_snapshot(shot: Shot) -> Message:
    return {"id": shot.id, "coordinates": coordinates(shot.pose), "rotation": shot.pose.rotation}


class Rejected(Exception):
    """A player command that is well-formed but not legal now; answered with its reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------
# Radar geometry


def _crossings(centre: float, distance_to_line: float, radius: float, limit: int) -> list[int]:
    """
    Where a circle crosses a wall line, as coordinates along that line: truncated toward zero,
    clamped to the wall's extent C{[0, limit]}, the larger first, and one point for a tangent
    (or for two crossings that truncate to the same point).
    """
    half_chord = math.sqrt(radius**2 - distance_to_line**2)
    points: list[int] = []
    for along in (centre + half_chord, centre - half_chord):
        point = min(max(int(along), 0), limit)
        if point not in points:
            points.append(point)
    return points


def scan_walls(x: float, y: float, radius: float, width: int, height: int) -> list[Any]:
    """
    The walls a circular scan of C{radius} around C{(x, y)} sees: for each wall line it
    crosses, in the order x = width, y = 0, x = 0, y = height, the list of its crossing points
    C{[x, y]}.  A player at (380, 380) in 800x400 with radius 40 sees
    C{[[[414, 400], [345, 400]]]}.
    """
    walls: list[Any] = []
    for vertical, line in ((True, width), (False, 0), (True, 0), (False, height)):
        distance = abs((x if vertical else y) - line)
        if distance > radius:
            continue
        if vertical:
            walls.append([[line, along] for along in _crossings(y, distance, radius, height)])
        else:
            walls.append([[along, line] for along in _crossings(x, distance, radius, width)])
    return walls


def angle_between(heading: float, bearing: float) -> float:
    """@return: the unsigned difference of two headings in degrees, 0 to 180."""
    return abs((bearing - heading + 180) % 360 - 180)
