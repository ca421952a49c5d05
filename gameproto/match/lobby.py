"""
The rules of a match's lobby, as pure transitions of its record (no I/O, no
clock: the caller passes the time).  The match service applies them to the record
it reads from the directory (gameproto.match.directory) and writes the result back
with a compare-and-set, on one node or many alike.

- A socket joins in a role: a host only to the match it created (code 8); the
  challenger slot goes to one user, taken on connect, and a new challenger socket
  must say it is ready again; spectators up to a limit (code 9 past it).  That the
  user holds no other role is the directory's check, not the record's.
- A socket leaves: a challenger before the start frees the slot (and readiness);
  after the start the slot stays theirs (they may reconnect); a spectator frees its
  place; a host keeps the match.
- The challenger says it is ready (once, before the start).
- The host starts the match if a challenger is present and ready.
- The host deletes the match, before the start only.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from gameproto.match import frames
from gameproto.match.frames import Refusal, Role
from gameproto.store import OngoingMatch


class JoinRefused(Exception):
    """A socket is not admitted: its handshake's refusal (one frame, then a close)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.error)
        self.refusal = refusal


class AlreadyInMatch(Exception):
    """A user who holds a role in a match cannot host another one."""


class NotTheHost(Exception):
    """Only the host may delete a match."""


class MatchStarted(Exception):
    """A started match cannot be deleted."""


class StartOutcome(enum.Enum):
    """What a host's C{start_match} did."""

    STARTED = "started"
    NOT_READY = "not ready"  # the host is told: code 3
    NOTHING = "nothing"  # started already, or the seat or the match is gone


class Leaving(enum.Enum):
    """What becomes of the role of a socket that leaves."""

    FREED = "freed"  # the user holds nothing in the match any more
    KEPT = "kept"  # the role stays the user's, with no socket (a host; a started challenger)


class StartRefused(enum.Enum):
    """Why a C{start_match} starts nothing."""

    NOT_READY = "not ready"  # no challenger, or not ready: the host is told (code 3)
    STARTED = "started"  # already started: nothing to say


def join(record: OngoingMatch, username: str, role: Role, max_spectators: int
         ) -> OngoingMatch | Refusal:
    """The record once C{username} holds C{role}, or the refusal of the handshake."""
    key = username.lower()
    if role is Role.HOST:
        return record if record.host.lower() == key else frames.NOT_THE_HOST
    if role is Role.CHALLENGER:
        if (record.challenger or key).lower() != key:
            return frames.ALREADY_ELSEWHERE
        if record.is_started:
            return record  # a reconnecting challenger: the slot is theirs
        # A new socket must say it is ready itself.
        return attrs.evolve(record, challenger=username, challenger_ready=False)
    if any(s.lower() == key for s in record.spectators):
        return record  # a newer socket of a spectator
    if len(record.spectators) >= max_spectators:
        return frames.ALREADY_ELSEWHERE
    return attrs.evolve(record, spectators=record.spectators + (username,))


def leave(record: OngoingMatch, username: str, role: Role) -> tuple[OngoingMatch, Leaving]:
    """The record once C{username}'s socket in C{role} is gone, and what becomes of the role."""
    if role is Role.HOST:
        return record, Leaving.KEPT
    if role is Role.CHALLENGER:
        if record.is_started:
            return record, Leaving.KEPT  # the paddle idles until they reconnect
        return attrs.evolve(record, challenger=None, challenger_ready=False), Leaving.FREED
    key = username.lower()
    spectators = tuple(s for s in record.spectators if s.lower() != key)
    return attrs.evolve(record, spectators=spectators), Leaving.FREED


def ready(record: OngoingMatch) -> OngoingMatch | None:
    """The record with the challenger ready, or C{None} if that changes nothing now."""
    if record.is_started or record.challenger_ready or record.challenger is None:
        return None
    return attrs.evolve(record, challenger_ready=True)


def start(record: OngoingMatch, now: datetime) -> OngoingMatch | StartRefused:
    """The record of the match started at C{now}, or why it does not start."""
    if record.is_started:
        return StartRefused.STARTED
    if record.challenger is None or not record.challenger_ready:
        return StartRefused.NOT_READY
    return attrs.evolve(record, start_timestamp=now)


def check_delete(record: OngoingMatch, username: str) -> None:
    """Whether C{username} may delete the match: L{NotTheHost}, L{MatchStarted} if not."""
    if record.host.lower() != username.lower():
        raise NotTheHost(username)
    if record.is_started:
        raise MatchStarted(record.id)


def restarted(record: OngoingMatch) -> OngoingMatch:
    """An unstarted match after a restart of its only node: no socket survived, only
    the host keeps a role."""
    return attrs.evolve(record, challenger=None, challenger_ready=False, spectators=())
