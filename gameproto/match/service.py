"""
Every ongoing match, on one node or many: one class, three seams.

- The B{directory} (L{IMatchDirectory}) knows where each match is and who holds
  which role; every change is a compare-and-set of the record with one user's
  role, decided by the pure lobby rules (gameproto.match.lobby).  A single node's
  is in memory, written through to the store; several nodes share Redis.
- B{Ownership} (L{gameproto.ownership.Ownership}) says which node runs a game: the
  node that receives C{start_match} claims the match's lease and renews it every
  second; every node checks the leases of the started matches it does not run, so
  that a match whose node died is dropped (no result, roles freed) and its sockets
  here get C{aborted} and a close 1000.  An outage alone aborts nothing.
- The B{sink} (L{IMatchSink}) carries the game frames to every socket of the
  match, and this node's changes to the other nodes (none on a single node).

Sockets talk to the service through their L{Seat}; the service drives them
through the L{MatchSocket} methods, inputs of each connection's state machine.
Joining is asynchronous everywhere (the directory answers with a Deferred, at
once on a single node).  The status frame of each tick is encoded once and sent
to every socket as one prepared message.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import Any, Callable

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from gameproto import wire
from gameproto.match import frames, lobby
from gameproto.match.directory import (
    Changed,
    Conflict,
    IMatchDirectory,
    Place,
    RoleChange,
    RoleOp,
    SeatRef,
    Step,
    update,
)
from gameproto.match.frames import Refusal, Role
from gameproto.match.games import GameRunner
from gameproto.match.lobby import (  # the service's refusals and answers
    AlreadyInMatch,
    JoinRefused,
    MatchStarted,
    NotTheHost,
    StartOutcome,
)
from gameproto.match.live import LiveMatch, Seat
from gameproto.match.local_directory import LocalMatchDirectory
from gameproto.match.pong import PaddleCommand, PongGame, PongRules
from gameproto.match.sink import (
    Farewell,
    GameFrame,
    GameOver,
    GameStarted,
    IMatchSink,
    LobbyChanged,
    LocalSink,
    MatchEvent,
    SeatTaken,
    deliver,
)
from gameproto.match.watch import DISCOVER_INTERVAL, WATCH_INTERVAL, LobbyTimers, OwnerWatch
from gameproto.ownership import LEASE_RENEW_INTERVAL, Ownership
from gameproto.store import IStore, OngoingMatch, StoreError

DEFAULT_TICK = 0.01
DEFAULT_LOBBY_TIMEOUT = 600.0
MAX_SPECTATORS = 1000


class MatchService(Service):
    """
    Every match, on this node and (through the seams) on the others.  Without a
    directory, ownership and sink it serves a single node.  C{startService}
    returns a Deferred that fires once the directory is ready.
    """

    name = "match"
    _log = Logger()

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        directory: IMatchDirectory | None = None,
        ownership: Ownership | None = None,
        sink: IMatchSink | None = None,
        tick: float = DEFAULT_TICK,
        lobby_timeout: float = DEFAULT_LOBBY_TIMEOUT,
        max_spectators: int = MAX_SPECTATORS,
        rules: PongRules | None = None,
        renew_interval: float = LEASE_RENEW_INTERVAL,
        watch_interval: float = WATCH_INTERVAL,
        discover_interval: float = DISCOVER_INTERVAL,
        metrics: Any = None,
        replays: Any = None,
    ) -> None:
        self.store = store  # what the REST API reads
        self.clock = clock
        self.directory: IMatchDirectory = directory or LocalMatchDirectory(store)
        self.ownership = ownership or Ownership.local(clock, "match")
        self.sink: IMatchSink = sink or LocalSink()
        self.tick = tick
        self.max_spectators = max_spectators
        self.rules = attrs.evolve(rules or PongRules(), dt=tick)
        self._init_frame = PongGame(self.rules).init_frame()
        self.matches: dict[int, LiveMatch] = {}  # those with sockets here, or run here
        self._seat_numbers = itertools.count(1)
        self._joining: dict[int, int] = {}  # joins in progress, by match
        self._pending: set[Deferred[Any]] = set()
        # Called with (match id, username, role) each time a socket here takes a seat:
        # how matchmaking learns that a matched user showed up.
        self.seat_taken: list[Callable[[int, str, Role], None]] = []
        # Asked (record, username) before a challenger's seat is taken; a
        # Refusal keeps them out: how matchmaking holds a matched pair's seat for
        # the challenger it chose.
        self.challenger_admission: list[
            Callable[[OngoingMatch, str], Deferred[Refusal | None]]] = []
        self.games = GameRunner(clock, tick, self.rules, self.directory, self.ownership,
                                self.sink, self._farewell, self._track, self.now, metrics,
                                replays=replays)
        self.lobby_timers = LobbyTimers(clock, self.directory, lobby_timeout, self._deleted,
                                        self._track)
        self.owners = OwnerWatch(
            clock, self.ownership, self.directory,
            running=lambda: [m.id for m in self.matches.values() if m.owner and m.running],
            runs_here=lambda match_id: (match_id in self.matches
                                        and self.matches[match_id].runs_here),
            lost=self.lost,
            renew_interval=renew_interval, watch_interval=watch_interval,
            discover_interval=discover_interval,
        )

    @property
    def node_id(self) -> str:
        return self.ownership.node_id

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    # -- lifecycle ---------------------------------------------------------------

    def startService(self) -> Deferred[None]:  # type: ignore[override]
        super().startService()
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        await self.directory.open()
        records = await self.directory.matches(None)
        for record in records:
            if record.is_started:
                self.owners.watch(record.id)
            else:
                self.lobby_timers.arm(record.id)
        started = sum(1 for r in records if r.is_started)
        self._log.info(
            "Node {node}: {waiting} match(es) waiting for players; {started} started one(s)"
            " watched (dropped unless a live node runs them)",
            node=self.node_id, waiting=len(records) - started, started=started,
        )
        await self.owners.start()

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self.owners.stop()
        self.lobby_timers.cancel_all()
        self.games.report_all(self.matches.values())
        for match in list(self.matches.values()):
            if match.owner and not match.ended:
                # The other nodes' sockets hear at once that the game is gone.
                self.sink.tell(match.id, Farewell(frames.ABORTED_LOST))
            if match.running:
                # A running game cannot survive the process: dropped, no result.
                self.games.stop(match)
                match.ended = True
                self.games.report(match, "dropped at shutdown")
                await self._quietly(self.directory.drop(match.id))
        for d in list(self._pending):
            await self._quietly(d)
        await self._quietly(self.sink.drained())
        for match_id in list(self.matches):
            self.sink.forget(match_id)
        self.matches.clear()
        await self._quietly(self.directory.close())

    async def _quietly(self, d: Deferred[Any]) -> None:
        try:
            await d
        except Exception:
            self._log.failure("Match service: a write at shutdown")

    # -- queries -----------------------------------------------------------------

    def whereabouts(self, username: str) -> Deferred[tuple[int | None, str | None]]:
        """The match and role C{username} holds now, on any node, or C{(None, None)}."""

        def where(place: Place | None) -> tuple[int | None, str | None]:
            return (None, None) if place is None else (place.match_id, place.role.value)

        return self.directory.place(username).addCallback(where)


    # -- REST operations ---------------------------------------------------------

    async def create_match(self, host: str) -> OngoingMatch:
        """A new match hosted by C{host}; L{AlreadyInMatch} if they hold a role already."""
        record = await self.directory.create(host, self.now())
        if record is None:
            raise AlreadyInMatch(host)
        self.lobby_timers.arm(record.id)
        self._log.info("Match {match} created by {host}", match=record.id, host=host)
        return record

    async def delete_match(self, match_id: int, username: str) -> bool:
        """
        Delete an unstarted match for its host: every socket, on every node, gets
        code 4 and a close 1000.  C{False} if there is no such match;
        L{NotTheHost}, L{MatchStarted} otherwise.
        """

        def decide(record: OngoingMatch) -> Step:
            lobby.check_delete(record, username)
            return Step(None)

        result = await update(self.directory, match_id, decide)
        if not isinstance(result, Changed):
            return False
        self._deleted(result.before, "deleted by its host")
        return True

    # -- joining -----------------------------------------------------------------

    def join(self, match_id: str, username: str, role: Role, socket: Any) -> Deferred[Seat]:
        """
        Admit C{socket} of C{username} to match C{match_id} (the path segment) as
        C{role}: fails with L{JoinRefused} (codes 5, 8, 9 in DESIGN order; 10 if
        the shared store is unavailable).  The same user in the same role replaces
        its older socket, on whatever node (closed with 4009).
        """
        return ensureDeferred(self._join(match_id, username, role, socket))

    async def _join(self, raw_id: str, username: str, role: Role, socket: Any) -> Seat:
        match_id = wire.parse_id(raw_id)
        if match_id is None:
            raise JoinRefused(frames.NO_SUCH_MATCH)
        ref = SeatRef(self.node_id, next(self._seat_numbers))
        place = Place(match_id, role, ref)

        def decide(record: OngoingMatch) -> Step | Refusal:
            known = self.matches.get(record.id)
            if known is not None and known.ended:
                return frames.NO_SUCH_MATCH  # its result is being stored
            joined = lobby.join(record, username, role, self.max_spectators)
            if isinstance(joined, Refusal):
                return joined
            # Known here before the change, so that no change another node tells
            # meanwhile is dropped for want of a match to apply it to.
            self._local_match(record)
            return Step(joined, RoleChange(RoleOp.TAKE, username, place))

        self._joining[match_id] = self._joining.get(match_id, 0) + 1
        try:
            if role is Role.CHALLENGER:
                await self._admit_challenger(match_id, username)
            await self.sink.listen(match_id, lambda event: self._heard(match_id, event))
            result = await update(self.directory, match_id, decide)
            if isinstance(result, Refusal):
                raise JoinRefused(result)
            if result is Conflict.GONE:
                raise JoinRefused(frames.NO_SUCH_MATCH)
            if isinstance(result, Conflict):
                raise JoinRefused(frames.ALREADY_ELSEWHERE)
            return self._seated(result, username, role, socket, ref)
        except StoreError:
            self._log.warn("Match {match}: a socket could not join: the store is unavailable",
                           match=match_id)
            raise JoinRefused(frames.UNAVAILABLE) from None
        finally:
            self._joining[match_id] -= 1
            if not self._joining[match_id]:
                del self._joining[match_id]
                match = self.matches.get(match_id)
                if match is not None:
                    self._detach_if_idle(match)
                else:
                    self.sink.forget(match_id)

    async def _admit_challenger(self, match_id: int, username: str) -> None:
        if not self.challenger_admission:
            return
        record = await self.directory.get(match_id)
        if record is None:
            return  # the join's own step answers for a missing match
        for admit in self.challenger_admission:
            refusal = await admit(record, username)
            if refusal is not None:
                raise JoinRefused(refusal)

    def _seated(self, changed: Changed, username: str, role: Role, socket: Any,
                ref: SeatRef) -> Seat:
        assert changed.after is not None
        match = self._local_match(changed.before)
        match.apply(changed.after, changed.seq)
        seat = Seat(match, role, username, socket, ref,
                    lobby_changed=changed.after != changed.before)
        old = match.take(seat)
        if role is Role.HOST:
            self.lobby_timers.cancel(match.id)
        if seat.lobby_changed:
            self.sink.tell(match.id, LobbyChanged(changed.seq, changed.after))
        self.sink.tell(match.id, SeatTaken(username.lower(), role, ref))
        for hook in self.seat_taken:
            hook(match.id, username, role)
        if changed.after.is_started:
            self.owners.watch(match.id)  # the game runs elsewhere: its node is watched
        if old is not None and old.socket is not socket:
            old.socket.replaced()
        return seat

    def welcome(self, seat: Seat) -> None:
        """After the success frame: the lobby (to all if it changed), then init if running."""
        match = seat.match
        if seat.lobby_changed:
            match.send_lobby()
        else:
            seat.socket.sendObject(frames.lobby(match.record))
        if match.record.is_started and not match.ended:
            seat.socket.sendObject(self._init_frame)

    def leave(self, seat: Seat) -> None:
        """The seat's socket is gone: give its role back (or keep it, with no socket)."""
        if seat.current:
            seat.match.vacate(seat)
            self._track(ensureDeferred(self._release(seat)))

    async def _release(self, seat: Seat) -> None:
        match = seat.match

        def decide(record: OngoingMatch) -> Step:
            after, leaving = lobby.leave(record, seat.username, seat.role)
            op = RoleOp.RELEASE if leaving is lobby.Leaving.FREED else RoleOp.VACATE
            return Step(after, RoleChange(op, seat.username, seat.place))

        try:
            result = await update(self.directory, match.id, decide)
            # Not changed: gone, or a newer socket holds the seat: nothing to free.
            if isinstance(result, Changed):
                if seat.role is Role.HOST and not result.before.is_started:
                    self.lobby_timers.arm(match.id)
                self._lobby_changed(match, result)
        except StoreError as e:
            # The seat stays taken; the same user may connect again to take it back.
            self._log.warn("Match {match}: {user} left, but the store is unavailable: {why}",
                           match=match.id, user=seat.username, why=str(e))
        finally:
            self._detach_if_idle(match)

    # -- the lobby -----------------------------------------------------------------

    def ready(self, seat: Seat) -> None:
        if seat.current and not seat.match.record.is_started:
            self._track(ensureDeferred(self._ready(seat)))

    async def _ready(self, seat: Seat) -> None:
        def decide(record: OngoingMatch) -> Step | None:
            after = lobby.ready(record)
            if after is None:
                return None
            return Step(after, RoleChange(RoleOp.CHECK, seat.username, seat.place))

        result = await update(self.directory, seat.match.id, decide)
        if isinstance(result, Changed):
            self._lobby_changed(seat.match, result)

    def start_match(self, seat: Seat) -> Deferred[StartOutcome]:
        """The host starts the game, which this node then runs."""
        if not seat.current:
            return succeed(StartOutcome.NOTHING)
        return self.games.start(seat)

    def paddle(self, seat: Seat, command: PaddleCommand) -> None:
        """A player's paddle command, for the game wherever it runs."""
        match = seat.match
        if not seat.current:
            return
        if match.game is not None:
            match.game.queue_command(seat.side, command)
        elif match.record.is_started:
            self.sink.forward(match.id, seat.side, command)

    def _lobby_changed(self, match: LiveMatch, changed: Changed) -> None:
        """A change made here: told to the other nodes, sent to the sockets here."""
        if changed.after is None or changed.after == changed.before:
            return
        self.sink.tell(match.id, LobbyChanged(changed.seq, changed.after))
        if match.apply(changed.after, changed.seq):
            match.send_lobby()

    # -- the end of a match ----------------------------------------------------------

    def _farewell(self, match: LiveMatch, last: dict[str, Any]) -> None:
        """The match is over everywhere: C{last} to every socket on every node."""
        self.sink.tell(match.id, Farewell(last))
        self._end_here(match, last)

    def _deleted(self, record: OngoingMatch, why: str) -> None:
        """An unstarted match was deleted: code 4 and close 1000 on every node."""
        self.sink.tell(record.id, Farewell(frames.MATCH_ENDED))
        self.lobby_timers.cancel(record.id)
        match = self.matches.get(record.id)
        if match is not None:
            self._end_here(match, frames.MATCH_ENDED)
        self._log.info("Match {match} removed: {why}", match=record.id, why=why)

    def _end_here(self, match: LiveMatch, last: dict[str, Any]) -> None:
        """C{last} to this node's sockets of the match, then close 1000."""
        match.over()
        self.games.stop(match)
        self.owners.unwatch(match.id)
        self.lobby_timers.cancel(match.id)
        if self.matches.get(match.id) is match:
            del self.matches[match.id]
            self.sink.forget(match.id)
        match.farewell(last)

    async def lost(self, match_id: int) -> None:
        """The node running the match is gone: drop it, tell this node's sockets."""
        self.owners.unwatch(match_id)
        match = self.matches.get(match_id)
        if match is not None:
            self.games.report(match, "lost")
            match.owner = False  # the lease is another node's tombstone now
            self._end_here(match, frames.ABORTED_LOST)
        try:
            if await self.directory.drop(match_id):
                self._log.info("Match {match} dropped: no live node runs it", match=match_id)
        except StoreError:
            self.owners.watch(match_id)  # try again later

    # -- what the other nodes tell -------------------------------------------------

    def _heard(self, match_id: int, event: MatchEvent) -> None:
        match = self.matches.get(match_id)
        if match is None:
            return
        if isinstance(event, GameFrame):
            deliver(match.sockets(), event.payload)
        elif isinstance(event, LobbyChanged):
            if match.apply(event.record, event.seq):
                match.send_lobby()
        elif isinstance(event, SeatTaken):
            seat = match.seats.get((event.username, event.role))
            if seat is not None and seat.ref != event.seat:
                match.vacate(seat)
                seat.socket.replaced()
                self._detach_if_idle(match)
        elif isinstance(event, GameStarted):
            match.apply(event.record, event.seq)
            for socket in match.player_sockets():
                socket.gameStarted()
            self.owners.watch(match_id)
        elif isinstance(event, GameOver):
            match.over()
        else:
            self._end_here(match, event.last)

    # -- plumbing ------------------------------------------------------------------

    def _local_match(self, record: OngoingMatch) -> LiveMatch:
        match = self.matches.get(record.id)
        if match is None or match.ended:
            match = self.matches[record.id] = LiveMatch(record)
        return match

    def _detach_if_idle(self, match: LiveMatch) -> None:
        """Forget a match with nothing of it here: no socket, no join, no game."""
        if (self.matches.get(match.id) is not match or match.seats or match.runs_here
                or self._joining.get(match.id)):
            return
        del self.matches[match.id]
        self.sink.forget(match.id)

    def _track(self, d: Deferred[Any]) -> None:
        self._pending.add(d)

        def done(result: Any) -> Any:
            self._pending.discard(d)
            return result

        d.addBoth(done)
        d.addErrback(lambda f: self._log.failure("Match service", f))


__all__ = ["AlreadyInMatch", "JoinRefused", "MatchService", "MatchStarted", "NotTheHost",
           "StartOutcome"]
