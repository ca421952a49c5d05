"""
The things of an arena and the messages about them, for L{gameproto.arena.engine}: the
recipients and messages an engine returns, poses and players, where shots can reach players,
and the radar's geometry (the shots in flight are in L{gameproto.arena.shots}).  Pure: no
I/O, no clock, no randomness.
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
    """
    C{round(value, 5)}, with -0.0 read as 0.0 (nobody wants it on the wire); bit for bit the
    same float, in a fraction of the time (a snapshot rounds two coordinates per shot in
    flight, every tick: see L{gameproto.arena.shots.ShotsInFlight.encoded}).

    C{round(value, 5)} is the float nearest to the decimal C{k / 10**5}, C{k} the exact
    C{value * 10**5} rounded half to even; C{k / 100000.0} is that float (a correctly rounded
    division of two exact floats), so only C{k} needs care: the float product is off the
    exact one by far less than the distance that would change C{k}, except near a half.

    The constants are literals, not names: this runs twice per shot per tick.
    """
    scaled = value * 100000.0  # 10**_DECIMALS
    # Below 1e9 (coordinates up to 10,000, the largest arena) the float product is off the
    # exact one by at most half an ulp, 2**-24.
    if -1e9 < scaled < 1e9:
        # Adding then subtracting 1.5 * 2**52 rounds a float of magnitude below 2**51 to an
        # integral float, half to even (the ulp at that magnitude is 1); +0.0 for a zero.
        units = (scaled + 6755399441055744.0) - 6755399441055744.0
        # Close to half-way between two integers the product may round the other way than
        # the exact value would: those (about one in 5,000) take Python's round.
        if -0.4999 < scaled - units < 0.4999:
            return units / 100000.0
    # Adding 0.0 turns -0.0 into 0.0.
    return round(float(value), _DECIMALS) + 0.0


def all_rounded(values: list[float]) -> list[float]:
    """
    C{[rounded(value) for value in values]}, bit for bit, a fifth faster: L{rounded}'s
    arithmetic inline in one comprehension, without a call per value (the snapshot rounds
    every coordinate of every shot in flight, every tick).  Values L{rounded} would hand
    to Python's round are handed to L{rounded}.
    """
    return [
        units / 100000.0
        if -0.4999 < scaled - units < 0.4999 and -1e9 < scaled < 1e9
        else rounded(value)
        for value in values
        # Assignments in a comprehension (Python makes them such since 3.9).
        for scaled in (value * 100000.0,)
        for units in ((scaled + 6755399441055744.0) - 6755399441055744.0,)
    ]


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
        return Pose(
            self.x + distance * math.cos(heading),
            self.y + distance * math.sin(heading),
            self.rotation,
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


Target: TypeAlias = tuple[Player, float, float]
"""A player a shot may reach, and where it is: C{(player, x, y)}."""


def reach_bands(players: list[Player], reach: float) -> dict[float, list[Target]]:
    """
    Where shots can reach C{players} this tick, for L{first_reached}: the players (in
    registration order, with their position) by band of x, each band C{reach} wide, keyed
    by C{x // reach}.  A shot whose band is not a key reaches nobody: most shots in flight
    are told so by one dict look-up instead of a distance to each player.

    A player is in every band its reach touches, and one more on each side, so that the
    rounding of C{x // reach} and of the distance test can never leave out a player the
    test would find.
    """
    bands: dict[float, list[Target]] = {}
    for player in players:
        x, y = player.pose.x, player.pose.y
        target = (player, x, y)
        band, last = (x - reach) // reach - 1, (x + reach) // reach + 1
        while band <= last:
            bands.setdefault(band, []).append(target)
            band += 1
    return bands


def first_reached(
    targets: list[Target], x: float, y: float, reach_squared: float
) -> Player | None:
    """
    @return: the first of C{targets} within reach of a shot at C{(x, y)} (the first in
        registration order, when it reaches two at once), or C{None}.
    """
    for player, px, py in targets:
        # Squared distances: no square root per shot and player.
        if (px - x) * (px - x) + (py - y) * (py - y) <= reach_squared:
            return player
    return None


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
