"""
The registry of the matches of one node and their game loops.

L{MatchService} owns every ongoing match: who holds which role, which sockets are
connected, the L{PongGame} and its tick loop.  It writes each change of a match
through to the store (so the REST API, which reads the store, and a restarted
server see it), records the completed match with the Elo change in one store
operation, and knows where every user is (L{MatchService.whereabouts}).

Sockets talk to the service through a L{Seat}; the service talks back to them
through the L{MatchSocket} methods, which are inputs of each connection's state
machine (gameproto.match.protocol).

One status frame per tick is encoded once and sent to every socket of the match
as an Autobahn prepared message.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timezone
from typing import Any, Iterator, Protocol

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameproto import wire
from gameproto.match import frames
from gameproto.match.elo import rate
from gameproto.match.frames import Refusal, Role
from gameproto.match.pong import PaddleCommand, PongGame, PongRules, Side
from gameproto.store import IStore, MatchOutcome, NoSuchMatch, OngoingMatch

DEFAULT_TICK = 0.01
DEFAULT_LOBBY_TIMEOUT = 600.0
MAX_SPECTATORS = 1000
_LIST_PAGE = 1000
# Tick lateness samples kept for the log line of each match and for benchmarks.
_LATENESS_SAMPLES = 100_000


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class JoinRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.error)
        self.refusal = refusal


class AlreadyInMatch(Exception):
    """A user who holds a role in a match cannot host another one."""


class NotTheHost(Exception):
    """Only the host may delete a match."""


class MatchStarted(Exception):
    """A started match cannot be deleted."""


class MatchSocket(Protocol):
    """What the service needs from a connection (gameproto.match.protocol.MatchProtocol)."""

    def sendObject(self, message: Any) -> bool: ...

    def sendPrepared(self, prepared: Any) -> None: ...

    def prepare(self, payload: bytes) -> Any: ...

    def gameStarted(self) -> None: ...

    def matchOver(self) -> None: ...

    def farewell(self, prepared: Any) -> None: ...

    def replaced(self) -> None: ...


@attrs.define(eq=False)
class LiveMatch:
    """An ongoing match of this node: its record, its sockets and, once started, its game."""

    record: OngoingMatch
    host: MatchSocket | None = None
    challenger: MatchSocket | None = None
    spectators: dict[str, MatchSocket] = attrs.Factory(dict)  # by lower-cased username
    game: PongGame | None = None
    loop: LoopingCall | None = None
    lobby_timer: IDelayedCall | None = None
    ended: bool = False
    ticks: int = 0
    lateness: deque[float] = attrs.Factory(lambda: deque(maxlen=_LATENESS_SAMPLES))

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def running(self) -> bool:
        return self.game is not None and not self.ended

    def sockets(self) -> Iterator[MatchSocket]:
        if self.host is not None:
            yield self.host
        if self.challenger is not None:
            yield self.challenger
        yield from list(self.spectators.values())

    def player_sockets(self) -> Iterator[MatchSocket]:
        if self.host is not None:
            yield self.host
        if self.challenger is not None:
            yield self.challenger


@attrs.define(eq=False)
class Seat:
    """One connection's place in a match: what its state machine may ask of the match."""

    service: MatchService
    match: LiveMatch
    role: Role
    username: str
    socket: MatchSocket
    # Whether joining changed the lobby, so everyone hears of it, or not, so only
    # the joiner gets the current state.
    lobby_changed: bool = False

    @property
    def current(self) -> bool:
        """Whether this seat's socket is still the one that holds the role."""
        m = self.match
        if self.role is Role.HOST:
            return m.host is self.socket
        if self.role is Role.CHALLENGER:
            return m.challenger is self.socket
        return m.spectators.get(self.username.lower()) is self.socket

    def welcome(self) -> None:
        """After the success frame: the lobby (to all if it changed), then init if running."""
        self.service._welcome(self)

    def ready(self) -> None:
        self.service._challenger_ready(self)

    def start_match(self) -> bool:
        """Start the game; C{False} if the challenger is absent or not ready."""
        return self.service._start_match(self)

    def command(self, command: PaddleCommand) -> None:
        game = self.match.game
        if game is not None and self.match.running and self.current:
            side = Side.LEFT if self.role is Role.HOST else Side.RIGHT
            game.queue_command(side, command)

    def leave(self) -> None:
        self.service._leave(self)


class MatchService(Service):
    """
    Every match of one node.  C{startService} loads the ongoing matches from the
    store (started ones are dropped: their game loop died with the last process)
    and returns a Deferred that fires once the registry is ready.
    """

    name = "match"
    _log = Logger()

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        tick: float = DEFAULT_TICK,
        lobby_timeout: float = DEFAULT_LOBBY_TIMEOUT,
        max_spectators: int = MAX_SPECTATORS,
        rules: PongRules | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.tick = tick
        self.lobby_timeout = lobby_timeout
        self.max_spectators = max_spectators
        self.rules = attrs.evolve(rules or PongRules(), dt=tick)
        self.matches: dict[int, LiveMatch] = {}
        self._where: dict[str, tuple[int, Role]] = {}
        self._creating: set[str] = set()
        self._pending: set[Deferred[Any]] = set()

    # -- lifecycle ---------------------------------------------------------------

    def startService(self) -> Deferred[None]:  # type: ignore[override]
        super().startService()
        return ensureDeferred(self._load())

    async def _load(self) -> None:
        records: list[OngoingMatch] = []
        while True:
            page = await self.store.list_ongoing_matches(None, None, _LIST_PAGE, len(records))
            records += page
            if len(page) < _LIST_PAGE:
                break
        dropped = 0
        for record in records:
            if record.is_started:
                # No node runs its game any more: drop it without a result.
                await self.store.delete_ongoing_match(record.id)
                dropped += 1
                continue
            # Nobody is connected after a restart: only the host keeps a role.
            fresh = attrs.evolve(record, challenger=None, challenger_ready=False, spectators=())
            if fresh != record:
                await self.store.update_ongoing_match(fresh)
            match = LiveMatch(fresh)
            self.matches[match.id] = match
            self._where[fresh.host.lower()] = (match.id, Role.HOST)
            self._arm_lobby_timer(match)
        self._log.info(
            "Matches loaded: {kept} waiting for players, {dropped} started ones dropped",
            kept=len(self.matches),
            dropped=dropped,
        )

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self._report_all()
        for match in list(self.matches.values()):
            if match.lobby_timer is not None and match.lobby_timer.active():
                match.lobby_timer.cancel()
            if match.game is not None:
                # A running game cannot survive the process: dropped, no result.
                self._stop_loop(match)
                match.ended = True
                self._report(match, "dropped at shutdown")
                await self._quietly(self.store.delete_ongoing_match(match.id))
        for d in list(self._pending):
            await self._quietly(d)
        self.matches.clear()
        self._where.clear()

    async def _quietly(self, d: Deferred[Any]) -> None:
        try:
            await d
        except Exception:
            self._log.failure("Match store write at shutdown")

    # -- queries -----------------------------------------------------------------

    def whereabouts(self, username: str) -> tuple[int | None, str | None]:
        """The match and role C{username} holds now, or C{(None, None)}."""
        found = self._where.get(username.lower())
        if found is None:
            return None, None
        return found[0], found[1].value

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def lateness(self) -> list[float]:
        """Tick lateness samples (seconds) of every running match (logged at shutdown)."""
        return [s for m in self.matches.values() if m.running for s in m.lateness]

    # -- REST operations ---------------------------------------------------------

    async def create_match(self, host: str) -> OngoingMatch:
        """A new match hosted by C{host}; L{AlreadyInMatch} if they hold a role already."""
        key = host.lower()
        if key in self._where or key in self._creating:
            raise AlreadyInMatch(host)
        self._creating.add(key)
        try:
            record = await self.store.create_ongoing_match(host, self.now())
        finally:
            self._creating.discard(key)
        match = LiveMatch(record)
        self.matches[record.id] = match
        self._where[key] = (record.id, Role.HOST)
        self._arm_lobby_timer(match)
        self._log.info("Match {match} created by {host}", match=record.id, host=host)
        return record

    async def delete_match(self, match_id: int, username: str) -> bool:
        """
        Delete an unstarted match for its host: every socket gets code 4 and a
        close 1000.  C{False} if there is no such match; L{NotTheHost},
        L{MatchStarted} otherwise.
        """
        match = self.matches.get(match_id)
        if match is None or match.ended:
            return False
        if match.record.host.lower() != username.lower():
            raise NotTheHost(username)
        if match.record.is_started:
            raise MatchStarted(match_id)
        await self._discard(match, "deleted by its host")
        return True

    # -- joining -----------------------------------------------------------------

    def join(self, match_id: str, username: str, role: Role, socket: MatchSocket) -> Seat:
        """
        Admit C{socket} of C{username} to match C{match_id} (the path segment) as
        C{role}: checks 5, 8 and 9 in DESIGN order, or L{JoinRefused}.  The same
        user in the same role replaces its older socket (closed with 4009).
        """
        parsed = wire.parse_id(match_id)
        match = self.matches.get(parsed) if parsed is not None else None
        if match is None or match.ended:
            raise JoinRefused(frames.NO_SUCH_MATCH)
        key = username.lower()
        record = match.record
        if role is Role.HOST and record.host.lower() != key:
            raise JoinRefused(frames.NOT_THE_HOST)
        where = self._where.get(key)
        if where is not None and where != (match.id, role):
            raise JoinRefused(frames.ALREADY_ELSEWHERE)
        if role is Role.CHALLENGER and (record.challenger or key).lower() != key:
            raise JoinRefused(frames.ALREADY_ELSEWHERE)
        if role is Role.SPECTATOR and key not in match.spectators:
            if len(match.spectators) >= self.max_spectators:
                raise JoinRefused(frames.ALREADY_ELSEWHERE)

        seat = Seat(self, match, role, username, socket)
        old: MatchSocket | None
        if role is Role.HOST:
            old, match.host = match.host, socket
            if match.lobby_timer is not None and match.lobby_timer.active():
                match.lobby_timer.cancel()
            match.lobby_timer = None
        elif role is Role.CHALLENGER:
            old, match.challenger = match.challenger, socket
            if not record.is_started:
                # A new socket must say it is ready itself.
                changed = attrs.evolve(record, challenger=username, challenger_ready=False)
                seat.lobby_changed = changed != record
                match.record = changed
        else:
            old = match.spectators.get(key)
            match.spectators[key] = socket
            if old is None:
                match.record = attrs.evolve(record, spectators=record.spectators + (username,))
                seat.lobby_changed = True
        self._where[key] = (match.id, role)
        if seat.lobby_changed:
            self._save(match)
        if old is not None and old is not socket:
            old.replaced()
        return seat

    def _welcome(self, seat: Seat) -> None:
        match = seat.match
        if seat.lobby_changed:
            self._broadcast(match, frames.lobby(match.record))
        else:
            seat.socket.sendObject(frames.lobby(match.record))
        if match.running:
            assert match.game is not None
            seat.socket.sendObject(match.game.init_frame())

    def _leave(self, seat: Seat) -> None:
        match = seat.match
        if match.ended or not seat.current or self.matches.get(match.id) is not match:
            return
        key = seat.username.lower()
        record = match.record
        if seat.role is Role.HOST:
            match.host = None
            if not record.is_started:
                self._arm_lobby_timer(match)
            return
        if seat.role is Role.CHALLENGER:
            match.challenger = None
            if record.is_started:
                return  # the slot stays theirs; the paddle idles until they reconnect
            match.record = attrs.evolve(record, challenger=None, challenger_ready=False)
        else:
            del match.spectators[key]
            match.record = attrs.evolve(
                record, spectators=tuple(s for s in record.spectators if s.lower() != key)
            )
        del self._where[key]
        self._save(match)
        self._broadcast(match, frames.lobby(match.record))

    # -- the lobby ---------------------------------------------------------------

    def _challenger_ready(self, seat: Seat) -> None:
        match = seat.match
        if not seat.current or match.record.is_started or match.record.challenger_ready:
            return
        match.record = attrs.evolve(match.record, challenger_ready=True)
        self._save(match)
        self._broadcast(match, frames.lobby(match.record))

    def _start_match(self, seat: Seat) -> bool:
        match = seat.match
        record = match.record
        if match.challenger is None or not record.challenger_ready:
            return False
        if record.is_started:
            return True
        match.record = attrs.evolve(record, start_timestamp=self.now())
        self._save(match)
        match.game = game = PongGame(self.rules)
        self._log.info(
            "Match {match} started: {host} against {challenger}",
            match=match.id,
            host=record.host,
            challenger=record.challenger,
        )
        for socket in list(match.player_sockets()):
            socket.gameStarted()
        self._broadcast(match, game.init_frame())
        match.loop = LoopingCall.withCount(lambda count: self._tick(match, count))
        match.loop.clock = self.clock
        d = match.loop.start(self.tick, now=False)
        d.addErrback(lambda f: self._log.failure("Match {match} loop", f, match=match.id))
        return True

    def _arm_lobby_timer(self, match: LiveMatch) -> None:
        if match.lobby_timer is not None and match.lobby_timer.active():
            match.lobby_timer.cancel()

        def expire() -> None:
            match.lobby_timer = None
            if match.host is None and not match.record.is_started and not match.ended:
                self._log.info("Match {match}: no host for too long, deleted", match=match.id)
                self._track(ensureDeferred(self._discard(match, "lobby timeout")))

        match.lobby_timer = self.clock.callLater(self.lobby_timeout, expire)

    # -- the game ------------------------------------------------------------------

    def _tick(self, match: LiveMatch, count: int) -> None:
        # A late loop runs one step per call (LoopingCall skips the missed calls);
        # how late it is goes to the lateness samples.
        loop = match.loop
        assert loop is not None and match.game is not None
        match.ticks += count
        expected = loop.starttime + match.ticks * loop.interval  # type: ignore[operator]
        match.lateness.append(max(0.0, self.clock.seconds() - expected))
        status = match.game.step()
        self._broadcast(match, status)
        if match.game.finished:
            self._stop_loop(match)
            self._track(ensureDeferred(self._finish(match)))

    def _stop_loop(self, match: LiveMatch) -> None:
        if match.loop is not None and match.loop.running:
            match.loop.stop()
        match.loop = None

    async def _finish(self, match: LiveMatch) -> None:
        game = match.game
        assert game is not None and game.winner is not None
        match.ended = True
        for socket in list(match.sockets()):
            socket.matchOver()
        record = match.record
        assert record.challenger is not None and record.start_timestamp is not None
        names = {Side.LEFT: record.host, Side.RIGHT: record.challenger}
        outcome = MatchOutcome(
            id=match.id,
            winner=names[game.winner],
            loser=names[game.winner.opponent],
            start_timestamp=record.start_timestamp,
            completion_timestamp=self.now(),
            winner_score=game.scores[game.winner],
            loser_score=game.scores[game.winner.opponent],
        )
        try:
            completed = await self.store.complete_match(outcome, rate)
        except Exception:
            self._log.failure("Match {match}: the result could not be stored", match=match.id)
            last: dict[str, Any] = frames.ABORTED_NOT_RECORDED
            await self._quietly(self.store.delete_ongoing_match(match.id))
        else:
            last = frames.end(completed)
            self._log.info(
                "Match {match} won {winner_score}-{loser_score} by {winner} against {loser}",
                match=match.id,
                winner=completed.winner,
                loser=completed.loser,
                winner_score=completed.winner_score,
                loser_score=completed.loser_score,
            )
        self._report(match, "ended")
        self._farewell(match, last)

    def _report(self, match: LiveMatch, how: str) -> None:
        samples = sorted(match.lateness)
        if not samples:
            return
        self._log.info(
            "Match {match} {how} after {ticks} ticks; tick lateness p50 {p50:.2f} ms,"
            " p99 {p99:.2f} ms",
            match=match.id,
            how=how,
            ticks=match.ticks,
            p50=1000 * _percentile(samples, 0.5),
            p99=1000 * _percentile(samples, 0.99),
        )

    def _report_all(self) -> None:
        samples = sorted(self.lateness())
        if samples:
            self._log.info(
                "Tick lateness of {count} running match(es): p50 {p50:.2f} ms, p99 {p99:.2f} ms"
                " over {ticks} ticks",
                count=sum(1 for m in self.matches.values() if m.running),
                p50=1000 * _percentile(samples, 0.5),
                p99=1000 * _percentile(samples, 0.99),
                ticks=len(samples),
            )

    async def _discard(self, match: LiveMatch, why: str) -> None:
        """Remove a match without a result: code 4 to every socket, close 1000."""
        match.ended = True
        self._stop_loop(match)
        if match.lobby_timer is not None and match.lobby_timer.active():
            match.lobby_timer.cancel()
        for socket in list(match.sockets()):
            socket.matchOver()
        self._farewell(match, frames.MATCH_ENDED)
        await self.store.delete_ongoing_match(match.id)
        self._log.info("Match {match} removed: {why}", match=match.id, why=why)

    def _farewell(self, match: LiveMatch, last: dict[str, Any]) -> None:
        """Send C{last} to every socket of C{match}, close them all, free every role."""
        sockets = list(match.sockets())
        if self.matches.get(match.id) is match:
            del self.matches[match.id]
        for key, (match_id, _) in list(self._where.items()):
            if match_id == match.id:
                del self._where[key]
        if sockets:
            prepared = sockets[0].prepare(wire.encode(last))
            for socket in sockets:
                socket.farewell(prepared)

    # -- plumbing ------------------------------------------------------------------

    def _broadcast(self, match: LiveMatch, message: Any) -> None:
        """Encode C{message} once and send it to every socket of C{match}."""
        sockets = list(match.sockets())
        if not sockets:
            return
        # Any socket's factory frames the message: they all share the endpoint's.
        prepared = sockets[0].prepare(wire.encode(message))
        for socket in sockets:
            socket.sendPrepared(prepared)

    def _save(self, match: LiveMatch) -> None:
        """Write the match's record through; writes of one store apply in order."""
        d = self.store.update_ongoing_match(match.record)

        def failed(f: Any) -> None:
            if not f.check(NoSuchMatch):  # deleted meanwhile: nothing to keep
                self._log.failure("Saving match {match}", f, match=match.id)

        d.addErrback(failed)
        self._track(d)

    def _track(self, d: Deferred[Any]) -> None:
        self._pending.add(d)

        def done(result: Any) -> Any:
            self._pending.discard(d)
            return result

        d.addBoth(done)
        d.addErrback(lambda f: self._log.failure("Match service", f))
