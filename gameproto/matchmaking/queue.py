"""
Where the tickets live, behind L{IMatchQueue}: L{LocalMatchQueue} in memory for
a single node, L{gameproto.matchmaking.redis_queue.RedisMatchQueue} for the nodes
sharing one Redis (the way the chat swaps its local and Redis presence).

Every method is one atomic step applying the transitions of
L{gameproto.matchmaking.rules} to the tickets it names.  The matcher's steps
(C{claim}, C{commit}, C{release}, C{expire}) are fenced by the matcher's lease:
they apply only while C{node} holds it, so that a matcher that stalled and lost
the lease can never pair anyone after another node took over.  A single node's
queue has no other matcher to fence against.
"""

from __future__ import annotations

from typing import Iterable

import attrs
from twisted.internet.defer import Deferred, succeed
from zope.interface import Interface, implementer

from gameproto.matchmaking import rules
from gameproto.matchmaking.rules import Ticket, TicketState


@attrs.frozen
class Joined:
    """The user's ticket, and whether this call queued them (C{False}: it existed)."""

    ticket: Ticket
    created: bool


@attrs.frozen
class Left:
    """The ticket removed, and the partner it sent back to the front of the queue."""

    ticket: Ticket
    requeued: Ticket | None = None


@attrs.frozen
class Expired:
    """A pair past its deadline: who lost the ticket, who went back to the front."""

    removed: tuple[Ticket, ...]
    requeued: tuple[Ticket, ...]


class IMatchQueue(Interface):
    """The tickets; every method answers with a Deferred (failing with
    L{gameproto.store.StoreError} when the shared store is unavailable)."""

    def open() -> "Deferred[None]":
        """Ready to serve."""

    def close() -> "Deferred[None]":
        """Done with it."""

    def join(ticket: Ticket) -> "Deferred[Joined]":
        """Queue C{ticket} unless its user has one already (then that one is answered)."""

    def get(key: str) -> "Deferred[Ticket | None]":
        """The ticket of the user C{key} (lower-cased name)."""

    def all() -> "Deferred[list[Ticket]]":
        """Every ticket, in any state."""

    def leave(key: str) -> "Deferred[Left | None]":
        """Remove the user's ticket (C{None}: none); a partner goes back to the front."""

    def claim(host: str, challenger: str, node: str) -> "Deferred[bool]":
        """Both waiting: hold them as a pair (L{rules.claim})."""

    def commit(host: str, challenger: str, match_id: int, deadline: float,
               node: str) -> "Deferred[bool]":
        """The pair's match exists (L{rules.commit})."""

    def release(host: str, challenger: str, node: str) -> "Deferred[bool]":
        """A held pair that did not become a match: both waiting again."""

    def seated(key: str, match_id: int) -> "Deferred[bool]":
        """
        The user took their seat in C{match_id}.  Once both of a pair have, their
        tickets are done and removed.  C{True} if the ticket was that match's.
        """

    def expire(host: str, challenger: str, match_id: int, node: str
               ) -> "Deferred[Expired | None]":
        """The pair of C{match_id} missed its deadline (L{rules.expire})."""


@implementer(IMatchQueue)
class LocalMatchQueue:
    """The queue of a single node, in memory: a restart empties it."""

    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = {}

    def open(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)

    def join(self, ticket: Ticket) -> Deferred[Joined]:
        existing = self.tickets.get(ticket.key)
        if existing is not None:
            return succeed(Joined(existing, False))
        self.tickets[ticket.key] = ticket
        return succeed(Joined(ticket, True))

    def get(self, key: str) -> Deferred[Ticket | None]:
        return succeed(self.tickets.get(key))

    def all(self) -> Deferred[list[Ticket]]:
        return succeed(list(self.tickets.values()))

    def leave(self, key: str) -> Deferred[Left | None]:
        ticket = self.tickets.pop(key, None)
        if ticket is None:
            return succeed(None)
        partner = self.tickets.get(ticket.partner) if ticket.partner else None
        requeued = rules.leave(ticket, partner)
        self._put([requeued])
        return succeed(Left(ticket, requeued))

    def _pair(self, host: str, challenger: str) -> tuple[Ticket | None, Ticket | None]:
        return self.tickets.get(host), self.tickets.get(challenger)

    def _put(self, tickets: Iterable[Ticket | None]) -> None:
        for ticket in tickets:
            if ticket is not None:
                self.tickets[ticket.key] = ticket

    def claim(self, host: str, challenger: str, node: str) -> Deferred[bool]:
        a, b = self._pair(host, challenger)
        claimed = rules.claim(a, b) if a is not None and b is not None else None
        self._put(claimed or ())
        return succeed(claimed is not None)

    def commit(self, host: str, challenger: str, match_id: int, deadline: float,
               node: str) -> Deferred[bool]:
        a, b = self._pair(host, challenger)
        committed = (rules.commit(a, b, match_id, deadline)
                     if a is not None and b is not None else None)
        self._put(committed or ())
        return succeed(committed is not None)

    def release(self, host: str, challenger: str, node: str) -> Deferred[bool]:
        a, b = self._pair(host, challenger)
        if not rules.partners(a, b, TicketState.PAIRING):
            return succeed(False)
        assert a is not None and b is not None
        self._put([rules.release(a), rules.release(b)])
        return succeed(True)

    def seated(self, key: str, match_id: int) -> Deferred[bool]:
        ticket = self.tickets.get(key)
        seated = rules.seat(ticket, match_id) if ticket is not None else None
        if seated is None:
            return succeed(False)
        partner = self.tickets.get(seated.partner or "")
        if partner is not None and partner.seated and partner.match_id == match_id:
            del self.tickets[key], self.tickets[partner.key]  # done: both are in
        else:
            self._put([seated])
        return succeed(True)

    def expire(self, host: str, challenger: str, match_id: int, node: str
               ) -> Deferred[Expired | None]:
        a, b = self._pair(host, challenger)
        if not rules.partners(a, b, TicketState.MATCHED) or a.match_id != match_id:  # type: ignore[union-attr]
            return succeed(None)
        assert a is not None and b is not None
        removed, requeued = [], []
        for ticket in (a, b):
            after = rules.expire(ticket)
            if after is None:
                del self.tickets[ticket.key]
                removed.append(ticket)
            else:
                self.tickets[ticket.key] = after
                requeued.append(after)
        return succeed(Expired(tuple(removed), tuple(requeued)))
