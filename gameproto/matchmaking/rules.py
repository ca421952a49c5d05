"""
The rules of matchmaking, as pure functions of tickets and the time (no I/O, no
clock: the caller passes the time).

A user waits in the queue with one L{Ticket}.  Its Elo window is C{base} wide
and widens by C{step} every C{interval} seconds waited (L{Window}).  The queue is
served oldest first (L{queue_order}): a ticket sent back to the front after its
opponent failed to show up comes before every other, then by the time queued.
Each ticket served is paired with the waiting ticket whose Elo is closest to its
own, if the difference is within the served ticket's window (ties: the one first
in the queue); the longer-waiting of the two hosts the match (L{pairs}).

A ticket goes C{waiting} → C{pairing} (the matcher holds the pair while it
creates the match) → C{matched} (the match exists; both users have
C{seat_timeout} seconds to connect to it) → done once both are seated.  A user
who does not connect in time loses the ticket and the other goes back to the
front of the queue (L{expire}).  A user who leaves the queue sends a partner back
to the front the same way (L{leave}).  The queues (memory and Redis) apply exactly
these transitions; the Redis one in Lua, held to the same contract by
C{tests/test_matchmaking_queue.py}.
"""

from __future__ import annotations

import bisect
import enum
import math
from typing import Iterable

import attrs

DEFAULT_WINDOW = 100
DEFAULT_WINDOW_STEP = 50
DEFAULT_WINDOW_INTERVAL = 10.0
DEFAULT_SEAT_TIMEOUT = 30.0
DEFAULT_ROUND_INTERVAL = 1.0


class TicketState(enum.Enum):
    WAITING = "waiting"
    PAIRING = "pairing"  # shown to users as waiting: the match is being created
    MATCHED = "matched"


class MatchRole(enum.Enum):
    HOST = "host"
    CHALLENGER = "challenger"


@attrs.frozen
class Window:
    """How far apart two ratings may be, by the time the served ticket has waited."""

    base: int = DEFAULT_WINDOW
    step: int = DEFAULT_WINDOW_STEP
    interval: float = DEFAULT_WINDOW_INTERVAL

    def width(self, waited: float) -> int:
        steps = math.floor(max(0.0, waited) / self.interval)
        return self.base + self.step * steps


def user_key(username: str) -> str:
    """Usernames are unique ignoring case: the key of a user's ticket."""
    return username.lower()


@attrs.frozen
class Ticket:
    """
    One user's place in the queue.  C{since} (epoch seconds) is when they queued;
    C{elo} their rating then.  Once paired: C{partner} (the other's key), C{role};
    once matched: C{match_id}, the C{deadline} to take the seat, and whether they
    did (C{seated}).
    """

    username: str
    elo: int
    since: float
    state: TicketState = TicketState.WAITING
    front: bool = False
    partner: str | None = None
    role: MatchRole | None = None
    match_id: int | None = None
    deadline: float | None = None
    seated: bool = False

    @property
    def key(self) -> str:
        return user_key(self.username)

    def requeued(self) -> "Ticket":
        """Back to the front of the queue, keeping its time (and so its window)."""
        return Ticket(self.username, self.elo, self.since, front=True)


@attrs.frozen
class Pair:
    host: Ticket
    challenger: Ticket


def queue_order(tickets: Iterable[Ticket]) -> list[Ticket]:
    """Waiting tickets in the order they are served: the front first, then the oldest."""
    waiting = [t for t in tickets if t.state is TicketState.WAITING]
    return sorted(waiting, key=lambda t: (not t.front, t.since, t.key))


def pairs(tickets: Iterable[Ticket], now: float, window: Window) -> list[Pair]:
    """
    The pairs to make now among the waiting C{tickets}: each ticket in queue order,
    if still unpaired, with the closest rating within its window.  O(n log n) plus
    the list removals.
    """
    order = queue_order(tickets)
    rank = {t.key: i for i, t in enumerate(order)}
    # Every unpaired ticket, by (elo, rank): the closest ratings are neighbours.
    pool = sorted((t.elo, rank[t.key]) for t in order)
    made: list[Pair] = []
    paired: set[int] = set()
    for i, ticket in enumerate(order):
        if i in paired:
            continue
        at = bisect.bisect_left(pool, (ticket.elo, i))
        candidates = []
        if at > 0:
            # Of the ratings just below, the one first in the queue.
            below = pool[at - 1][0]
            candidates.append(pool[bisect.bisect_left(pool, (below, -1))])
        if at + 1 < len(pool):
            candidates.append(pool[at + 1])
        best = min(candidates, key=lambda c: (abs(c[0] - ticket.elo), c[1]), default=None)
        if best is None or abs(best[0] - ticket.elo) > window.width(now - ticket.since):
            continue
        other = order[best[1]]
        pool.remove((ticket.elo, i))
        pool.remove(best)
        paired.update((i, best[1]))
        made.append(host_first(ticket, other))
    return made


def host_first(a: Ticket, b: Ticket) -> Pair:
    """The longer-waiting user hosts (C{a} on a tie: the one served)."""
    if b.since < a.since:
        return Pair(b, a)
    return Pair(a, b)


# -- the transitions of a pair's tickets ------------------------------------------


def claim(host: Ticket, challenger: Ticket) -> tuple[Ticket, Ticket] | None:
    """Both waiting: now held by the matcher while it creates the match."""
    if host.state is not TicketState.WAITING or challenger.state is not TicketState.WAITING:
        return None
    return (
        attrs.evolve(host, state=TicketState.PAIRING, partner=challenger.key, role=MatchRole.HOST),
        attrs.evolve(challenger, state=TicketState.PAIRING, partner=host.key,
                     role=MatchRole.CHALLENGER),
    )


def partners(a: Ticket | None, b: Ticket | None, state: TicketState) -> bool:
    """Whether C{a} and C{b} are each other's partner in C{state}."""
    return (a is not None and b is not None and a.state is state and b.state is state
            and a.partner == b.key and b.partner == a.key)


def commit(host: Ticket, challenger: Ticket, match_id: int, deadline: float
           ) -> tuple[Ticket, Ticket] | None:
    """The pair's match exists: both matched, with the deadline to take their seats."""
    if not partners(host, challenger, TicketState.PAIRING):
        return None
    return (attrs.evolve(host, state=TicketState.MATCHED, match_id=match_id, deadline=deadline),
            attrs.evolve(challenger, state=TicketState.MATCHED, match_id=match_id,
                         deadline=deadline))


def release(ticket: Ticket) -> Ticket:
    """A pair that did not become a match: waiting again, where it was in the queue."""
    return Ticket(ticket.username, ticket.elo, ticket.since, front=ticket.front)


def seat(ticket: Ticket, match_id: int) -> Ticket | None:
    """The user took their seat in the match they were given (C{None}: not that match)."""
    if ticket.state is not TicketState.MATCHED or ticket.match_id != match_id:
        return None
    return attrs.evolve(ticket, seated=True)


def leave(ticket: Ticket, partner: Ticket | None) -> Ticket | None:
    """A user leaves the queue: what becomes of their partner's ticket (front of the queue)."""
    if partner is None or ticket.partner != partner.key or partner.partner != ticket.key:
        return None
    return partner.requeued()


def expire(ticket: Ticket) -> Ticket | None:
    """Past the deadline: a seated user goes back to the front; the other loses the ticket."""
    return ticket.requeued() if ticket.seated else None


@attrs.frozen
class MatchmakingConfig:
    """The queue's settings (C{twistd gameproto --matchmaking-*})."""

    window: Window = Window()
    # Seconds each user of a pair has to connect to the match made for them.
    seat_timeout: float = DEFAULT_SEAT_TIMEOUT
    # Seconds between two rounds of the matcher.
    round_interval: float = DEFAULT_ROUND_INTERVAL
