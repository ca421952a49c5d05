"""
Where every ongoing match is and who holds which role in it: the match service's
one source of truth, behind L{IMatchDirectory}.

- L{LocalMatchDirectory} (gameproto.match.local_directory): a single node's, in
  memory, written through to the store (which the REST API reads and a restarted
  server loads);
- L{RedisMatchDirectory} (gameproto.match.redis_directory): the nodes sharing one
  Redis, each change one Lua script.

Both keep the same rules (C{tests/test_match_directory.py} holds them to one
contract): a user holds at most one role in one match; a role names the connection
holding it (a L{SeatRef}), or none (a host who has not connected, a started
challenger who left); a role whose match is gone is free.  Every change of a match
is a compare-and-set (L{IMatchDirectory.change}): it applies only if the record is
still the one it was computed from, together with one user's role, so that two
nodes admitting sockets of one match at once lose neither join.  L{update} reads,
decides (with the pure rules of gameproto.match.lobby) and retries.
"""

from __future__ import annotations

import enum
from typing import Callable, TypeVar

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

from gameproto.match.frames import Role
from gameproto.store import CompletedMatch, MatchOutcome, OngoingMatch, Rating, StoreError

# How often a change computed from a record that changed meanwhile is tried again.
RETRIES = 20

R = TypeVar("R")


@attrs.frozen
class SeatRef:
    """One connection holding a role: the node it is on and its number there."""

    node: str
    number: int


@attrs.frozen
class Place:
    """A user's role in a match, and the connection holding it (C{None}: none now)."""

    match_id: int
    role: Role
    seat: SeatRef | None = None

    def vacated(self) -> "Place":
        return attrs.evolve(self, seat=None)


class RoleOp(enum.Enum):
    """What a change does to one user's role."""

    # Take the place, unless the user holds a live role of another match or another
    # role of this one (the same role is taken over: a newer connection).
    TAKE = "take"
    # The user's place must be exactly this one (the connection still holds it).
    CHECK = "check"
    # Check, then free the role.
    RELEASE = "release"
    # Check, then keep the role with no connection.
    VACATE = "vacate"


@attrs.frozen
class RoleChange:
    op: RoleOp
    username: str
    place: Place


@attrs.frozen
class Step:
    """
    One change of a match: its record after the change (C{None}: the match is
    deleted, and every role in it freed) and what it does to one user's role.
    """

    record: OngoingMatch | None
    role: RoleChange | None = None


@attrs.frozen
class Changed:
    """A change applied: the record before and after it, and its sequence number
    (increasing across every match, so that nodes keep the newest record they hear of)."""

    before: OngoingMatch
    after: OngoingMatch | None
    seq: int


class Conflict(enum.Enum):
    """Why a change did not apply."""

    GONE = "gone"  # no such match (any more)
    STALE = "stale"  # the record changed since it was read: read it again
    ELSEWHERE = "elsewhere"  # the user holds a role in another match, or another role
    NOT_MINE = "not mine"  # the role is not (or no longer) held by that connection


class IMatchDirectory(Interface):
    """The ongoing matches and the users' roles; every method answers with a Deferred
    (failing with L{StoreError} when the shared store is unavailable)."""

    def open() -> "Deferred[None]":
        """Ready to serve (a single node loads what survived a restart)."""

    def close() -> "Deferred[None]":
        """Every write made so far is done."""

    def create(host: str, created: object) -> "Deferred[OngoingMatch | None]":
        """A new match hosted by C{host}, or C{None} if C{host} holds a live role."""

    def get(match_id: int) -> "Deferred[OngoingMatch | None]":
        """The match's record now."""

    def matches(started: bool | None) -> "Deferred[list[OngoingMatch]]":
        """Every ongoing match (only the started or unstarted ones if C{started} says)."""

    def place(username: str) -> "Deferred[Place | None]":
        """Where C{username} holds a live role, if anywhere."""

    def change(expected: OngoingMatch, step: Step) -> "Deferred[Changed | Conflict]":
        """Apply C{step} if the record is still C{expected} and the role change is allowed."""

    def complete(outcome: MatchOutcome, rate: Rating) -> "Deferred[CompletedMatch]":
        """Record the result (with the Elo change) and remove the match, freeing its roles."""

    def drop(match_id: int) -> "Deferred[bool]":
        """Remove a match without a result, freeing its roles: C{False} if it was gone."""

    def seat_alive(seat: SeatRef) -> "Deferred[bool]":
        """Whether the node of C{seat} is alive (a dead node's connections are gone)."""


async def update(
    directory: IMatchDirectory, match_id: int, decide: Callable[[OngoingMatch], Step | R]
) -> Changed | Conflict | R:
    """
    Read the match, C{decide} what to change from its record, apply it; again if the
    record changed meanwhile.  Whatever C{decide} returns that is not a L{Step}
    (the lobby's refusals) is returned as it is, with nothing changed.
    """
    for _ in range(RETRIES):
        record = await directory.get(match_id)
        if record is None:
            return Conflict.GONE
        step = decide(record)
        if not isinstance(step, Step):
            return step
        result = await directory.change(record, step)
        if result is not Conflict.STALE:
            return result
    raise StoreError(f"match {match_id} kept changing")
