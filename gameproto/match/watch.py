"""
What a match service does on a timer, apart from the games themselves.

- L{OwnerWatch}: keeps the leases of the games run here (renewed every second; a
  lost one stops the game here) and checks the node running every other started
  match (those with sockets here, and every started match of the directory, found
  every 3 s).  The rule for a dead holder is L{gameproto.ownership}'s, the same
  for arenas.  On a single node the leases are in memory and nothing else runs.
- L{LobbyTimers}: an unstarted match whose host stays away too long is deleted.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameproto.match.directory import (
    RETRIES,
    Changed,
    Conflict,
    IMatchDirectory,
    RoleChange,
    RoleOp,
    Step,
)
from gameproto.ownership import LEASE_RENEW_INTERVAL, Ownership, Verdict
from gameproto.store import OngoingMatch, StoreError

WATCH_INTERVAL = 0.5
DISCOVER_INTERVAL = 3.0


class OwnerWatch:
    """
    C{running} lists the ids of the games run here; C{runs_here} says whether a
    match is run here; C{lost} drops a match whose node is gone (or whose lease
    this node lost).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        ownership: Ownership,
        directory: IMatchDirectory,
        running: Callable[[], list[int]],
        runs_here: Callable[[int], bool],
        lost: Callable[[int], Awaitable[None]],
        renew_interval: float = LEASE_RENEW_INTERVAL,
        watch_interval: float = WATCH_INTERVAL,
        discover_interval: float = DISCOVER_INTERVAL,
    ) -> None:
        self.clock = clock
        self.ownership = ownership
        self.directory = directory
        self._running = running
        self._runs_here = runs_here
        self._lost = lost
        self.watched: set[int] = set()
        self._busy: set[str] = set()
        self._loops = [
            (LoopingCall(self._guarded, "renew", self.renew), renew_interval),
            (LoopingCall(self._guarded, "watch", self.check), watch_interval),
            (LoopingCall(self._guarded, "discover", self.discover), discover_interval),
        ]

    def start(self) -> Awaitable[None]:
        for loop, interval in self._loops:
            loop.clock = self.clock
            loop.start(interval, now=False)
        return self.check()  # at once: a tombstone drops its match at start-up

    def stop(self) -> None:
        for loop, _ in self._loops:
            if loop.running:
                loop.stop()

    def watch(self, match_id: int) -> None:
        """Check the node running C{match_id} from now on (unless this node runs it)."""
        if not self._runs_here(match_id):
            self.watched.add(match_id)

    def unwatch(self, match_id: int) -> None:
        self.watched.discard(match_id)
        self.ownership.forget(match_id)

    def _guarded(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        if name in self._busy:
            return  # the store is slow: the previous round is still running
        self._busy.add(name)
        d = ensureDeferred(job())
        d.addErrback(lambda f: self._log.failure("Matches: {job}", f, job=name))
        d.addBoth(lambda _: self._busy.discard(name))

    async def renew(self) -> None:
        """Renew the lease of every game run here; a game whose lease is lost stops."""
        for match_id in self._running():
            try:
                held = await self.ownership.renew(match_id)
            except StoreError:
                continue  # an outage alone stops nothing
            if not held and match_id in self._running():
                self._log.warn("Match {match}: the lease was lost (this node was taken for"
                               " dead); the game stops here", match=match_id)
                await self._lost(match_id)

    async def check(self) -> None:
        """Judge the node running every watched match."""
        for match_id in list(self.watched):
            try:
                if await self.directory.get(match_id) is None:
                    self.unwatch(match_id)  # it ended: nothing to drop
                    continue
                holding = await self.ownership.check(match_id)
            except StoreError:
                continue  # an outage alone aborts nothing
            if match_id not in self.watched:
                continue  # ended meanwhile
            if holding.verdict is Verdict.DEAD:
                self._log.warn("Match {match}: its node {node} is lost", match=match_id,
                               node=holding.holder or "(unknown)")
            if holding.verdict in (Verdict.DEAD, Verdict.GONE):
                await self._lost(match_id)

    async def discover(self) -> None:
        """Watch every started match of the directory that is not run here."""
        for record in await self.directory.matches(True):
            self.watch(record.id)


class LobbyTimers:
    """
    An unstarted match whose host has had no socket on any live node for
    C{timeout} seconds is deleted (C{deleted} tells every node).  A node arms the
    timer where the match is created, where its host's socket leaves, and at
    start-up; the host joining on that node cancels it.  At expiry the directory
    decides: a host seated on a live node keeps the match.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        directory: IMatchDirectory,
        timeout: float,
        deleted: Callable[[OngoingMatch, str], None],
        track: Callable[[Deferred[Any]], None],
    ) -> None:
        self.clock = clock
        self.directory = directory
        self.timeout = timeout
        self._deleted = deleted
        self._track = track
        self._timers: dict[int, IDelayedCall] = {}

    def arm(self, match_id: int) -> None:
        self.cancel(match_id)

        def expire() -> None:
            self._timers.pop(match_id, None)
            self._track(Deferred.fromCoroutine(self._expired(match_id)))

        self._timers[match_id] = self.clock.callLater(self.timeout, expire)

    def cancel(self, match_id: int) -> None:
        timer = self._timers.pop(match_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def cancel_all(self) -> None:
        for match_id in list(self._timers):
            self.cancel(match_id)

    async def _expired(self, match_id: int) -> None:
        for _ in range(RETRIES):
            record = await self.directory.get(match_id)
            if record is None or record.is_started:
                return
            place = await self.directory.place(record.host)
            role = None
            if place is not None:
                if place.seat is not None and await self.directory.seat_alive(place.seat):
                    return  # connected: the node of that socket arms a timer when it leaves
                role = RoleChange(RoleOp.CHECK, record.host, place)
            result = await self.directory.change(record, Step(None, role))
            if isinstance(result, Changed):
                self._log.info("Match {match}: no host for too long", match=match_id)
                self._deleted(record, "lobby timeout")
            if result is not Conflict.STALE:
                return
