"""
The match directory of a single node (L{gameproto.match.directory.IMatchDirectory}):
the records and roles in memory, the only copy that counts, written through to the
store in order (the REST API reads the store; a restarted server loads it).

On a single node nobody else can run a match or hold a connection, so L{open}
applies what a restart means: started matches are dropped (their game died with the
process) and unstarted ones keep their host and nobody else.  Every node it serves
is alive (there is one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from gameproto.match import lobby
from gameproto.match.directory import (
    Changed,
    Conflict,
    IMatchDirectory,
    Place,
    RoleOp,
    SeatRef,
    Step,
)
from gameproto.match.frames import Role
from gameproto.store import CompletedMatch, IStore, MatchOutcome, NoSuchMatch, OngoingMatch, Rating

_LIST_PAGE = 1000


@implementer(IMatchDirectory)
class LocalMatchDirectory:
    _log = Logger()

    def __init__(self, store: IStore) -> None:
        self.store = store
        self._records: dict[int, OngoingMatch] = {}
        self._places: dict[str, Place] = {}  # by lower-cased username
        self._creating: set[str] = set()
        self._seq = 0
        self._loaded = False
        self._writes: set[Deferred[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> Deferred[None]:
        return ensureDeferred(self._load())

    async def _load(self) -> None:
        if self._loaded:
            return  # several services may share one directory (tests of several nodes)
        self._loaded = True
        records: list[OngoingMatch] = []
        while True:
            page = await self.store.list_ongoing_matches(None, None, _LIST_PAGE, len(records))
            records += page
            if len(page) < _LIST_PAGE:
                break
        dropped = 0
        for record in records:
            if record.is_started:
                await self.store.delete_ongoing_match(record.id)
                dropped += 1
                continue
            fresh = lobby.restarted(record)
            if fresh != record:
                await self.store.update_ongoing_match(fresh)
            self._records[fresh.id] = fresh
            self._places[fresh.host.lower()] = Place(fresh.id, Role.HOST)
        self._log.info(
            "Matches loaded: {kept} waiting for players, {dropped} started ones dropped",
            kept=len(self._records),
            dropped=dropped,
        )

    async def _close(self) -> None:
        while self._writes:
            try:
                await next(iter(self._writes))
            except Exception:
                pass  # logged where it failed

    def close(self) -> Deferred[None]:
        return ensureDeferred(self._close())

    # -- reads -----------------------------------------------------------------------

    def get(self, match_id: int) -> Deferred[OngoingMatch | None]:
        return succeed(self._records.get(match_id))

    def matches(self, started: bool | None) -> Deferred[list[OngoingMatch]]:
        return succeed([r for _, r in sorted(self._records.items())
                        if started is None or r.is_started == started])

    def _live(self, username: str) -> Place | None:
        place = self._places.get(username.lower())
        return place if place is not None and place.match_id in self._records else None

    def place(self, username: str) -> Deferred[Place | None]:
        return succeed(self._live(username))

    def seat_alive(self, seat: SeatRef) -> Deferred[bool]:
        return succeed(True)

    # -- changes ---------------------------------------------------------------------

    def create(self, host: str, created: datetime) -> Deferred[OngoingMatch | None]:
        return ensureDeferred(self._create(host, created))

    async def _create(self, host: str, created: datetime) -> OngoingMatch | None:
        key = host.lower()
        if self._live(host) is not None or key in self._creating:
            return None
        self._creating.add(key)
        try:
            record = await self.store.create_ongoing_match(host, created)
        finally:
            self._creating.discard(key)
        self._records[record.id] = record
        self._places[key] = Place(record.id, Role.HOST)
        self._seq += 1
        return record

    def change(self, expected: OngoingMatch, step: Step) -> Deferred[Changed | Conflict]:
        current = self._records.get(expected.id)
        if current is None:
            return succeed(Conflict.GONE)
        if current != expected:
            return succeed(Conflict.STALE)
        role = step.role
        if role is not None:
            held = self._live(role.username)
            if role.op is RoleOp.TAKE:
                if held is not None and (held.match_id, held.role) != (
                        role.place.match_id, role.place.role):
                    return succeed(Conflict.ELSEWHERE)
            elif held != role.place:
                return succeed(Conflict.NOT_MINE)
            key = role.username.lower()
            if role.op is RoleOp.TAKE:
                self._places[key] = role.place
            elif role.op is RoleOp.RELEASE:
                del self._places[key]
            elif role.op is RoleOp.VACATE:
                self._places[key] = role.place.vacated()
        self._seq += 1
        if step.record is None:
            self._forget(current.id)
            self._write(self.store.delete_ongoing_match(current.id))
        elif step.record != current:
            self._records[current.id] = step.record
            self._write(self.store.update_ongoing_match(step.record))
        return succeed(Changed(current, step.record, self._seq))

    def complete(self, outcome: MatchOutcome, rate: Rating) -> Deferred[CompletedMatch]:
        d = self.store.complete_match(outcome, rate)

        def completed(match: CompletedMatch) -> CompletedMatch:
            self._forget(outcome.id)
            return match

        return d.addCallback(completed)

    def drop(self, match_id: int) -> Deferred[bool]:
        known = self._forget(match_id)
        d = self.store.delete_ongoing_match(match_id)
        return d.addCallback(lambda deleted: known or deleted)

    def _forget(self, match_id: int) -> bool:
        """Remove the match and free every role in it."""
        if self._records.pop(match_id, None) is None:
            return False
        for key, place in list(self._places.items()):
            if place.match_id == match_id:
                del self._places[key]
        return True

    def _write(self, d: Deferred[Any]) -> None:
        """A write through to the store; writes of one store apply in order."""
        self._writes.add(d)

        def failed(f: Any) -> None:
            if not f.check(NoSuchMatch):  # deleted meanwhile: nothing to keep
                self._log.failure("Writing an ongoing match to the store", f)

        d.addErrback(failed)
        d.addBoth(lambda _: self._writes.discard(d))

