"""
The shots in flight of an arena, for step 1 and the snapshot of L{gameproto.arena.engine}'s
tick: kept column by column (ids, positions, steps, ...), so that moving them, testing them
against the walls and players, and writing the controller's snapshot of them are a few
C-level passes over lists per tick, with Python code per shot only for the few near a wall
or a player.  Pure: no I/O, no clock, no randomness.

Every value is what the one-object-per-shot engine computed, float for float: a shot's
position is its previous one plus its step, and the snapshot's coordinates are
L{rounded}; the encoded snapshot is byte for byte C{orjson.dumps} of L{ShotsInFlight.snapshots}.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from itertools import compress, repeat
from operator import add, floordiv

import orjson

from gameproto.arena.config import ArenaConfig
from gameproto.arena.world import (
    Message, Player, Pose, all_rounded, first_reached, reach_bands, rounded,
)

# Between a shot's coordinates in its snapshot entry.
_Y = b',"y":'

# When a shot may first be past a wall is estimated once, at its birth, from its step; the
# estimate must never be late.  The float additions of its path drift from the exact
# x0 + n * dx by at most n * 2**-53 * 10_000 (the largest arena), far below what widening
# the step by this much in the estimate covers, even for a step of almost nothing.
_STEP_SLACK = 1e-9


class ShotsInFlight:
    """
    The shots in flight of one arena, oldest first (the order of the snapshot and of the
    hits).

    A shot's columns: C{_serials} (its serial number, for C{_wall_checks}), C{_xs} and
    C{_ys} (its position), C{_dxs} and C{_dys} (its step of one tick: a shot keeps its
    heading, so the trigonometry is done once, at its birth), C{_heads} and C{_tails} (its
    snapshot entry's JSON around its coordinates, which does not change:
    C{{"id":"7","coordinates":{"x":} and C{},"rotation":90},}), and C{_names} and
    C{_rotations} (its id and heading, for L{snapshots}).

    @ivar _wall_checks: a heap of C{(move, serial)}: from its C{move}-th move on (counted by
        C{_moves}), the shot of that serial number may be past a wall and is tested at each
        move until it is.  Before then it certainly is not, so a move tests the few shots
        that are due instead of every shot.  Entries of shots that hit a player stay until
        they come up, then are skipped.
    """

    __slots__ = ("_width", "_height", "_speed", "_reach",
                 "_serials", "_xs", "_ys", "_dxs", "_dys", "_heads", "_tails", "_rotations",
                 "_names", "_wall_checks", "_moves", "_next_serial")

    def __init__(self, config: ArenaConfig) -> None:
        self._width, self._height = config.width, config.height
        self._speed = config.shot_speed
        self._reach = config.player_radius + config.shot_radius
        self._next_serial = 0
        self.clear()

    def clear(self) -> None:
        """Drop every shot (the end of a round)."""
        self._serials: list[int] = []
        self._xs: list[float] = []
        self._ys: list[float] = []
        self._dxs: list[float] = []
        self._dys: list[float] = []
        self._heads: list[bytes] = []
        self._tails: list[bytes] = []
        self._rotations: list[float] = []
        self._names: list[str] = []
        self._wall_checks: list[tuple[int, int]] = []
        self._moves = 0

    def __len__(self) -> int:
        return len(self._xs)

    def add(self, id: str, muzzle: Pose) -> None:
        """A shot C{id} born at C{muzzle}: it first moves, and can first hit, at the next move."""
        # The step is the difference of two poses a tick apart, as it always was: the
        # shot's path, float for float, does not depend on how it is stored.
        moved = muzzle.advanced(self._speed)
        dx, dy = moved.x - muzzle.x, moved.y - muzzle.y
        serial = self._next_serial
        self._next_serial += 1
        self._serials.append(serial)
        self._xs.append(muzzle.x)
        self._ys.append(muzzle.y)
        self._dxs.append(dx)
        self._dys.append(dy)
        self._names.append(id)
        self._rotations.append(muzzle.rotation)
        self._heads.append(b'{"id":' + orjson.dumps(id) + b',"coordinates":{"x":')
        self._tails.append(b'},"rotation":' + orjson.dumps(muzzle.rotation) + b"},")
        inside = min(_moves_inside(muzzle.x, dx, self._width),
                     _moves_inside(muzzle.y, dy, self._height))
        heapq.heappush(self._wall_checks, (self._moves + inside + 1, serial))

    def move(self, players: list[Player]) -> list[Player]:
        """
        Move every shot by its step and drop those that are then past a wall (not strictly
        inside the arena) or within reach of one of C{players} (the first in C{players}'
        order, when it reaches two at once).  A shot past a wall reaches nobody.

        @param players: the players in the arena, in registration order.
        @return: the player each shot that hit one reached, in shot order (with repeats).
        """
        xs = self._xs = list(map(add, self._xs, self._dxs))
        ys = self._ys = list(map(add, self._ys, self._dys))
        self._moves += 1
        gone = self._past_walls()
        hits: list[Player] = []
        reach = self._reach
        # The shooter is a target like any other: it can run into its own shot.
        bands = reach_bands(players, reach)
        if bands:
            reach_squared = reach * reach
            # Most shots are far from every player: one band look-up each, in C.
            near = map(bands.get, map(floordiv, xs, repeat(reach)))
            for index in compress(range(len(xs)), near):
                if index in gone:
                    continue  # into a wall first
                x = xs[index]
                player = first_reached(bands[x // reach], x, ys[index], reach_squared)
                if player is not None:
                    hits.append(player)
                    gone.add(index)
        if gone:
            self._drop(sorted(gone, reverse=True))
        return hits

    def _past_walls(self) -> set[int]:
        """@return: the indexes of the shots past a wall, of those due for the test."""
        gone: set[int] = set()
        checks, moves = self._wall_checks, self._moves
        width, height = self._width, self._height
        serials, xs, ys = self._serials, self._xs, self._ys
        again: list[tuple[int, int]] = []
        while checks and checks[0][0] <= moves:
            _, serial = heapq.heappop(checks)
            index = bisect_left(serials, serial)
            if index == len(serials) or serials[index] != serial:
                continue  # it hit a player
            if 0 < xs[index] < width and 0 < ys[index] < height:
                again.append((moves + 1, serial))
            else:
                gone.add(index)
        for check in again:
            heapq.heappush(checks, check)
        return gone

    def _drop(self, indexes: list[int]) -> None:
        """Drop the shots at C{indexes}, the largest first."""
        for column in (self._serials, self._xs, self._ys, self._dxs, self._dys, self._heads,
                       self._tails, self._rotations, self._names):
            for index in indexes:
                del column[index]

    def snapshots(self) -> list[Message]:
        """@return: the C{shots_snapshots} of a snapshot, as dicts."""
        return [
            {"id": id, "coordinates": {"x": rounded(x), "y": rounded(y)}, "rotation": rotation}
            for id, x, y, rotation in zip(self._names, self._xs, self._ys, self._rotations)
        ]

    def encoded(self) -> bytes:
        """
        @return: C{orjson.dumps(self.snapshots())}, byte for byte, without a dict per shot:
            the rounded coordinates are encoded by one C{orjson.dumps} per axis, then cut
            apart and put between each shot's head and tail by slice assignment.
        """
        count = len(self._xs)
        if not count:
            return b"[]"
        parts = [_Y] * (5 * count)  # the third of each five stays
        parts[0::5] = self._heads
        parts[1::5] = orjson.dumps(all_rounded(self._xs))[1:-1].split(b",")
        parts[3::5] = orjson.dumps(all_rounded(self._ys))[1:-1].split(b",")
        parts[4::5] = self._tails
        # Each tail ends with the comma before the next shot: the last one's closes the list.
        parts[0] = b"[" + parts[0]
        parts[-1] = parts[-1][:-1] + b"]"
        return b"".join(parts)


def _moves_inside(start: float, step: float, limit: int) -> int:
    """
    @return: how many moves of C{step} from C{start} certainly stay strictly between 0 and
        C{limit}, at least 0.
    """
    if not 0 < start < limit:
        return 0
    if step > 0:
        room = limit - start
    elif step < 0:
        room = start
    else:
        return 1 << 62  # never: it does not move along this axis
    return max(0, math.floor(room / (abs(step) * (1 + _STEP_SLACK) + _STEP_SLACK)) - 1)
