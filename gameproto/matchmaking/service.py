"""
L{MatchmakingService}: the queue of users waiting for an opponent, on one node or
many, and the matches it makes through the match service.

One node pairs at a time: the node holding the matcher's lease
(C{gp:matchmaking:matcher:lease}, L{gameproto.ownership}; a single node always
holds its own).  Every node tries to take or renew it each round
(C{round_interval}, 1 s); a node that dies loses it within the lease TTL (3 s)
and the next round of another node takes over.  Why a lease-held matcher rather
than one Lua script that pairs: the pairing rules stay the Python of
L{gameproto.matchmaking.rules}, the same on one node and many and tested without
I/O, and the match of each pair must be created by the match service anyway, which
no script can do.  What must be atomic is atomic: each pair's two tickets change
in one script, fenced by the lease (L{gameproto.matchmaking.redis_queue}).

A round of the matcher, in order:

  1. pairs whose deadline passed with a user not seated: the seated one goes back
     to the front of the queue, the other loses the ticket, the match is deleted;
  2. pairs held by a matcher that died between holding them and committing their
     match: committed to the match it created (the host holds the host role of
     an unstarted match), or released to the queue;
  3. new pairs (L{rules.pairs}): each held (C{claim}), its match created, then
     committed; a user who left meanwhile makes the commit fail, and the match is
     deleted.

Users hear of it on C{/ws/matchmaking/} and through L{MatchmakingService.matched}:
the node making a change publishes it on the bus channel C{matchmaking}, and every
node passes it to its own listeners.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameproto import wire
from gameproto.bus import IBus, Subscription
from gameproto.match import frames
from gameproto.match.frames import Refusal, Role
from gameproto.match.lobby import AlreadyInMatch, MatchStarted, NotTheHost
from gameproto.match.service import MatchService
from gameproto.matchmaking import rules
from gameproto.matchmaking.queue import IMatchQueue, LocalMatchQueue
from gameproto.matchmaking.rules import (
    MatchmakingConfig,
    MatchRole,
    Ticket,
    TicketState,
    user_key,
)
from gameproto.ownership import Ownership
from gameproto.store import IStore, OngoingMatch, StoreError

CHANNEL = "matchmaking"
MATCHER = "matcher"

# Why a ticket was removed, as its user is told.
NO_SHOW = "you did not connect to the match in time"
IN_A_MATCH = "you joined a match yourself"

Listener = Callable[[dict[str, Any]], None]


class AlreadyQueued(Exception):
    """The user has a ticket already (it is C{ticket})."""

    def __init__(self, ticket: Ticket) -> None:
        super().__init__(ticket.username)
        self.ticket = ticket


class InAMatch(Exception):
    """A user who holds a role in a match cannot queue for another."""


class MatchmakingService(Service):
    name = "matchmaking"
    _log = Logger()

    def __init__(
        self,
        matches: MatchService,
        store: IStore,
        clock: IReactorTime,
        bus: IBus,
        queue: IMatchQueue | None = None,
        ownership: Ownership | None = None,
        config: MatchmakingConfig = MatchmakingConfig(),
    ) -> None:
        self.matches = matches
        self.store = store
        self.clock = clock
        self.bus = bus
        self.queue: IMatchQueue = queue or LocalMatchQueue()
        self.ownership = ownership or Ownership.local(clock, "matchmaking")
        self.config = config
        self._listeners: dict[str, list[Listener]] = {}
        self._subscription: Subscription | None = None
        self._loop: LoopingCall | None = None
        self._round_running = False
        self._matcher = False
        self._pending: set[Deferred[Any]] = set()

    @property
    def node_id(self) -> str:
        return self.ownership.node_id

    # -- lifecycle ---------------------------------------------------------------

    def startService(self) -> Deferred[None]:  # type: ignore[override]
        super().startService()
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        await self.queue.open()
        self._subscription = await self.bus.subscribe(CHANNEL, self._heard)
        self.matches.seat_taken.append(self._seat_taken)
        self.matches.challenger_admission.append(self._admit_challenger)
        self._loop = LoopingCall(self._round)
        self._loop.clock = self.clock
        self._loop.start(self.config.round_interval, now=True)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._seat_taken in self.matches.seat_taken:
            self.matches.seat_taken.remove(self._seat_taken)
        if self._admit_challenger in self.matches.challenger_admission:
            self.matches.challenger_admission.remove(self._admit_challenger)
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        for d in list(self._pending):
            await d
        if self._matcher:
            await self.ownership.release(MATCHER)
        await self.queue.close()

    # -- the users' operations -----------------------------------------------------

    def now(self) -> float:
        # Milliseconds: what survives a round trip through every queue's encoding.
        return round(self.clock.seconds(), 3)

    async def join(self, username: str) -> Ticket:
        """
        Queue C{username} with their rating now: L{AlreadyQueued} if they have a
        ticket, L{InAMatch} if they hold a role in a match.
        """
        existing = await self.queue.get(user_key(username))
        if existing is not None:
            raise AlreadyQueued(existing)
        match_id, _ = await self.matches.whereabouts(username)
        if match_id is not None:
            raise InAMatch(username)
        user = await self.store.get_user(username)
        if user is None:
            raise StoreError(f"no user {username!r}")  # an authenticated user is never gone
        joined = await self.queue.join(Ticket(user.username, user.elo, self.now()))
        if not joined.created:
            raise AlreadyQueued(joined.ticket)
        self._log.info("Matchmaking: {user} queued (Elo {elo})", user=user.username,
                       elo=user.elo)
        return joined.ticket

    def ticket(self, username: str) -> Deferred[Ticket | None]:
        return self.queue.get(user_key(username))

    async def leave(self, username: str) -> bool:
        """Leave the queue (C{False}: not in it); a matched partner goes back to the front."""
        left = await self.queue.leave(user_key(username))
        if left is None:
            return False
        if left.ticket.state is TicketState.MATCHED and left.ticket.match_id is not None:
            await self._drop_match(left.ticket.match_id)
        if left.requeued is not None:
            self._tell(left.requeued.key, {"type": "requeued"})
        return True

    def matched(self, username: str) -> Deferred[tuple[int, str]]:
        """
        Queue C{username} (or keep their ticket) and fire with C{(match_id, role)}
        once they are matched; the user then has the seat timeout to connect to the
        match.  Cancelling the Deferred leaves the queue.  Fails with L{InAMatch}.
        """
        key = user_key(username)

        def heard(event: dict[str, Any]) -> None:
            if event["type"] == "matched" and not result.called:
                stop_listening()
                result.callback((event["match_id"], event["role"]))

        def cancelled(_: Deferred[Any]) -> None:
            stop_listening()
            self._track(ensureDeferred(self.leave(username)))

        result: Deferred[tuple[int, str]] = Deferred(cancelled)
        stop_listening = self.listen(username, heard)

        async def queue() -> None:
            try:
                ticket = await self.join(username)
            except AlreadyQueued as e:
                ticket = e.ticket
            if result.called:  # cancelled while queueing: leave after all
                await self.leave(username)
                return
            if ticket.state is TicketState.MATCHED and ticket.role is not None:
                heard(matched_event(ticket))

        def failed(failure: Any) -> None:
            if not result.called:
                stop_listening()
                result.errback(failure)

        ensureDeferred(queue()).addErrback(failed)
        return result

    def listen(self, username: str, listener: Listener) -> Callable[[], None]:
        """Call C{listener(event)} with each event of C{username}'s ticket; returns the stop."""
        key = user_key(username)
        self._listeners.setdefault(key, []).append(listener)

        def stop() -> None:
            listeners = self._listeners.get(key, [])
            if listener in listeners:
                listeners.remove(listener)
            if not listeners:
                self._listeners.pop(key, None)

        return stop

    # -- the matcher -----------------------------------------------------------------

    def _round(self) -> None:
        if self._round_running:
            return
        self._round_running = True
        d = ensureDeferred(self.round())

        def done(_: Any) -> None:
            self._round_running = False

        self._track(d)
        d.addBoth(done)

    async def round(self) -> None:
        """One round: take or renew the lease, then (holding it) pair."""
        try:
            held = await self.ownership.claim(MATCHER)
        except StoreError as e:
            self._log.warn("Matchmaking: the matcher's lease: {why}", why=str(e))
            return
        if held != self._matcher:
            self._matcher = held
            self._log.info("Matchmaking: node {node} {what} the matcher", node=self.node_id,
                           what="is" if held else "is no longer")
        if not held:
            return
        try:
            await self._pair_all()
        except StoreError as e:
            self._log.warn("Matchmaking: a round failed: {why}", why=str(e))

    async def _pair_all(self) -> None:
        tickets = await self.queue.all()
        by_key = {t.key: t for t in tickets}
        now = self.clock.seconds()
        for ticket in tickets:
            if ticket.role is not MatchRole.HOST or ticket.partner not in by_key:
                continue
            partner = by_key[ticket.partner]
            if (ticket.state is TicketState.MATCHED and ticket.deadline is not None
                    and ticket.deadline <= now):
                await self._expire(ticket, partner)
            elif ticket.state is TicketState.PAIRING:
                # Rounds never overlap on a node: a held pair now is a dead matcher's.
                await self._recover(ticket, partner)
        for pair in rules.pairs(tickets, now, self.config.window):
            await self._make(pair.host, pair.challenger)

    async def _make(self, host: Ticket, challenger: Ticket) -> None:
        for ticket in (host, challenger):
            match_id, _ = await self.matches.whereabouts(ticket.username)
            if match_id is not None:
                await self._remove(ticket, IN_A_MATCH)
                return
        if not await self.queue.claim(host.key, challenger.key, self.node_id):
            return
        try:
            record = await self.matches.create_match(host.username)
        except AlreadyInMatch:
            # A role taken since the check: next round decides.
            await self.queue.release(host.key, challenger.key, self.node_id)
            return
        except BaseException:
            await self.queue.release(host.key, challenger.key, self.node_id)
            raise
        await self._commit(host, challenger, record.id)

    async def _commit(self, host: Ticket, challenger: Ticket, match_id: int) -> None:
        deadline = round(self.clock.seconds() + self.config.seat_timeout, 3)
        if not await self.queue.commit(host.key, challenger.key, match_id, deadline,
                                       self.node_id):
            # A user left meanwhile (their partner is back in the queue), or the lease
            # was lost: the match is nobody's.
            await self._drop_match(match_id)
            await self.queue.release(host.key, challenger.key, self.node_id)
            return
        self._log.info("Matchmaking: match {match}: {host} ({host_elo}) hosts {challenger}"
                       " ({challenger_elo})", match=match_id, host=host.username,
                       host_elo=host.elo, challenger=challenger.username,
                       challenger_elo=challenger.elo)
        for ticket, role in ((host, MatchRole.HOST), (challenger, MatchRole.CHALLENGER)):
            self._tell(ticket.key, {"type": "matched", "match_id": match_id, "role": role.value})

    async def _recover(self, host: Ticket, challenger: Ticket) -> None:
        place = await self.matches.directory.place(host.username)
        if place is not None and place.role is Role.HOST:
            record = await self.matches.directory.get(place.match_id)
            if (record is not None and not record.is_started
                    and user_key(record.challenger or challenger.username) == challenger.key):
                await self._commit(host, challenger, record.id)
                return
        await self.queue.release(host.key, challenger.key, self.node_id)

    async def _expire(self, host: Ticket, challenger: Ticket) -> None:
        assert host.match_id is not None
        expired = await self.queue.expire(host.key, challenger.key, host.match_id, self.node_id)
        if expired is None:
            return  # both took their seats meanwhile, or someone left
        await self._drop_match(host.match_id)
        for ticket in expired.removed:
            self._log.info("Matchmaking: {user} did not connect to match {match} in time",
                           user=ticket.username, match=host.match_id)
            self._tell(ticket.key, {"type": "removed", "reason": NO_SHOW})
        for ticket in expired.requeued:
            self._tell(ticket.key, {"type": "requeued"})

    async def _remove(self, ticket: Ticket, reason: str) -> None:
        left = await self.queue.leave(ticket.key)
        if left is not None:
            self._tell(ticket.key, {"type": "removed", "reason": reason})
            if left.requeued is not None:
                self._tell(left.requeued.key, {"type": "requeued"})

    async def _drop_match(self, match_id: int) -> None:
        """Delete the unstarted match made for a pair (gone or started already: nothing)."""
        record = await self.matches.directory.get(match_id)
        if record is None:
            return
        try:
            await self.matches.delete_match(match_id, record.host)
        except (MatchStarted, NotTheHost):
            pass

    # -- seats and events -------------------------------------------------------------

    def _admit_challenger(self, record: OngoingMatch, username: str
                          ) -> Deferred[Refusal | None]:
        """
        The challenger's seat of a match made for a pair is its challenger's until
        the pair's tickets are done: anyone else is told the match is full.  (While
        the pair is held, before the match is committed, the host's ticket has no
        match id yet; a host can hold one unstarted match only, so it is this one.)
        """
        def decide(host: Ticket | None) -> Refusal | None:
            if (host is None or host.role is not MatchRole.HOST
                    or host.state not in (TicketState.PAIRING, TicketState.MATCHED)
                    or host.match_id not in (None, record.id)):
                return None
            return None if host.partner == user_key(username) else frames.ALREADY_ELSEWHERE

        return self.queue.get(user_key(record.host)).addCallback(decide)

    def _seat_taken(self, match_id: int, username: str, role: Role) -> None:
        if role in (Role.HOST, Role.CHALLENGER):
            d = self.queue.seated(user_key(username), match_id)
            d.addErrback(lambda f: self._log.warn(
                "Matchmaking: {user} took a seat, unrecorded: {why}", user=username,
                why=f.getErrorMessage()))
            self._track(d)

    def _tell(self, key: str, event: dict[str, Any]) -> None:
        d = self.bus.publish(CHANNEL, wire.encode({"user": key, "event": event}).decode())
        d.addErrback(lambda f: self._log.warn("Matchmaking: telling {user}: {why}", user=key,
                                              why=f.getErrorMessage()))

    def _heard(self, message: str) -> None:
        decoded = wire.decode(message)
        for listener in list(self._listeners.get(decoded["user"], ())):
            listener(decoded["event"])

    def _track(self, d: Deferred[Any]) -> None:
        self._pending.add(d)

        def done(result: Any) -> Any:
            self._pending.discard(d)
            return result

        d.addBoth(done)
        d.addErrback(lambda f: None if f.check(CancelledError)
                     else self._log.failure("Matchmaking", f))


def matched_event(ticket: Ticket) -> dict[str, Any]:
    assert ticket.role is not None
    return {"type": "matched", "match_id": ticket.match_id, "role": ticket.role.value}
