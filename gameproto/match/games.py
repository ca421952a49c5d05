"""
The games this node runs: the start (the lease claimed, the record marked
started), each one's tick loop, its frames (through the sink, to
every socket on every node), its end (the result stored with the Elo change
through the directory) and the log lines with its tick lateness.

One status frame per tick is encoded once; the sink prepares it once for all the
sockets here and publishes it once for the other nodes.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameproto import wire
from gameproto.match import frames, lobby
from gameproto.match.directory import Changed, IMatchDirectory, RoleChange, RoleOp, Step, update
from gameproto.match.elo import rate
from gameproto.match.live import LiveMatch, Seat
from gameproto.match.lobby import StartOutcome, StartRefused
from gameproto.match.pong import PaddleCommand, PongGame, PongRules, Side
from gameproto.match.sink import GameOver, GameStarted, IMatchSink
from gameproto.ownership import Ownership
from gameproto.store import CompletedMatch, MatchOutcome, OngoingMatch, StoreError
from gameproto.ticks import TickTimes


class GameRunner:
    """
    Runs the games of the matches this node owns.  C{farewell} ends a match
    everywhere with its last frame; C{track} keeps a background Deferred until it
    is done (the service awaits them at shutdown).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        tick: float,
        rules: PongRules,
        directory: IMatchDirectory,
        ownership: Ownership,
        sink: IMatchSink,
        farewell: Callable[[LiveMatch, dict[str, Any]], None],
        track: Callable[[Deferred[Any]], None],
        now: Callable[[], datetime],
        metrics: Any = None,
        replays: Any = None,
    ) -> None:
        self.clock = clock
        # Records every game run here and keeps its replay (gameproto.match.replay_service).
        self.replays = replays
        # Every tick of every game run here (the shutdown log line, the metrics).
        self.ticks = TickTimes("match", metrics)
        self.tick = tick
        self.rules = rules
        self.directory = directory
        self.ownership = ownership
        self.sink = sink
        self._farewell = farewell
        self._track = track
        self._now = now

    def start(self, seat: Seat) -> Deferred[StartOutcome]:
        """
        The host's C{start_match}: if the challenger is ready, this node claims the
        match's lease, marks the match started in the directory, and runs the game.
        """
        d = Deferred.fromCoroutine(self._start(seat))

        def failed(f: Any) -> StartOutcome:
            if f.check(StoreError):
                self._log.warn("Match {match}: not started, the store is unavailable: {why}",
                               match=seat.match.id, why=f.getErrorMessage())
            else:
                self._log.failure("Match {match}: start", f, match=seat.match.id)
            return StartOutcome.NOTHING

        return d.addErrback(failed)

    async def _start(self, seat: Seat) -> StartOutcome:
        match = seat.match
        record = await self.directory.get(match.id)
        if record is None:
            return StartOutcome.NOTHING
        checked = lobby.start(record, self._now())
        if checked is StartRefused.NOT_READY:
            return StartOutcome.NOT_READY
        if checked is StartRefused.STARTED:
            return StartOutcome.NOTHING
        if not await self.ownership.claim(match.id):
            self._log.warn("Match {match}: its lease is held elsewhere", match=match.id)
            return StartOutcome.NOTHING

        def decide(record: OngoingMatch) -> Step | StartRefused:
            started = lobby.start(record, self._now())
            if isinstance(started, StartRefused):
                return started
            return Step(started, RoleChange(RoleOp.CHECK, seat.username, seat.place))

        result = await update(self.directory, match.id, decide)
        if not isinstance(result, Changed):
            if not match.runs_here:  # not a start of this node's that won meanwhile
                self._track(self.ownership.release(match.id))
            return StartOutcome.NOT_READY if result is StartRefused.NOT_READY else \
                StartOutcome.NOTHING
        assert result.after is not None
        match.owner = True
        match.apply(result.after, result.seq)
        await self.sink.listen_inputs(
            match.id, lambda side, command: self.input(match, side, command))
        self.sink.tell(match.id, GameStarted(result.seq, result.after))
        self.run(match)
        return StartOutcome.STARTED

    def run(self, match: LiveMatch) -> None:
        """Start the game of a match this node owns: init to all, then a status per tick."""
        record = match.record
        match.game = game = PongGame(self.rules)
        self._log.info(
            "Match {match} started on node {node}: {host} against {challenger}",
            match=match.id, node=self.ownership.node_id, host=record.host,
            challenger=record.challenger,
        )
        for socket in match.player_sockets():
            socket.gameStarted()
        if self.replays is not None:
            match.recorder = self.replays.recorder()
        self._frame(match, wire.encode(game.init_frame()))
        match.loop = LoopingCall.withCount(lambda count: self._tick(match, count))
        match.loop.clock = self.clock
        d = match.loop.start(self.tick, now=False)
        d.addErrback(lambda f: self._log.failure("Match {match} loop", f, match=match.id))

    def input(self, match: LiveMatch, side: Side, command: PaddleCommand) -> None:
        """A paddle command for a game run here (from a socket on any node)."""
        if match.running:
            assert match.game is not None
            match.game.queue_command(side, command)

    def _tick(self, match: LiveMatch, count: int) -> None:
        # A late loop runs one step per call (LoopingCall skips the missed calls);
        # how late it is goes to the lateness samples.
        loop = match.loop
        assert loop is not None and match.game is not None
        match.ticks += count
        expected = loop.starttime + match.ticks * loop.interval  # type: ignore[operator]
        late = self.clock.seconds() - expected
        match.lateness.late(late)
        self.ticks.late(late)
        began = time.perf_counter()
        self._frame(match, wire.encode(match.game.step()))
        self.ticks.took(time.perf_counter() - began)
        if match.game.finished:
            self.stop(match)
            self._track(Deferred.fromCoroutine(self._finish(match)))

    def _frame(self, match: LiveMatch, payload: bytes) -> None:
        """A game frame for every socket of the match, and for its replay."""
        if match.recorder is not None:
            match.recorder.frame(payload)
        self.sink.frame(match, payload)

    def stop(self, match: LiveMatch) -> None:
        """Stop the loop; give the lease up if this node holds it."""
        match.stop_loop()
        self.sink.forget_inputs(match.id)
        if match.owner:
            match.owner = False
            self._track(self.ownership.release(match.id))

    async def _finish(self, match: LiveMatch) -> None:
        game = match.game
        assert game is not None and game.winner is not None
        self.sink.tell(match.id, GameOver())
        match.over()
        record = match.record
        assert record.challenger is not None and record.start_timestamp is not None
        names = {Side.LEFT: record.host, Side.RIGHT: record.challenger}
        recorder, match.recorder = match.recorder, None
        outcome = MatchOutcome(
            id=match.id,
            winner=names[game.winner],
            loser=names[game.winner.opponent],
            start_timestamp=record.start_timestamp,
            completion_timestamp=self._now(),
            winner_score=game.scores[game.winner],
            loser_score=game.scores[game.winner.opponent],
        )
        try:
            completed = await self.directory.complete(outcome, rate)
        except Exception:
            self._log.failure("Match {match}: the result could not be stored", match=match.id)
            last: dict[str, Any] = frames.ABORTED_NOT_RECORDED
            try:
                await self.directory.drop(match.id)
            except Exception:
                self._log.failure("Match {match}: dropping it", match=match.id)
        else:
            last = frames.end(completed)
            self._won(completed)
            if recorder is not None:
                # Kept before the end goes out: whoever got the end finds the replay.
                await self.replays.keep(match.id, recorder, wire.encode(last))
        self.report(match, "ended")
        self._farewell(match, last)

    # -- log lines -----------------------------------------------------------------

    def _won(self, completed: CompletedMatch) -> None:
        self._log.info(
            "Match {match} won {winner_score}-{loser_score} by {winner} against {loser}",
            match=completed.id,
            winner=completed.winner,
            loser=completed.loser,
            winner_score=completed.winner_score,
            loser_score=completed.loser_score,
        )

    def report(self, match: LiveMatch, how: str) -> None:
        """The match's end, with its tick lateness (if it ran here)."""
        p50, p99 = match.lateness.percentile(0.5), match.lateness.percentile(0.99)
        if p50 is None or p99 is None:
            return
        self._log.info(
            "Match {match} {how} after {ticks} ticks; tick lateness p50 {p50:.2f} ms,"
            " p99 {p99:.2f} ms",
            match=match.id,
            how=how,
            ticks=match.ticks,
            p50=1000 * p50,
            p99=1000 * p99,
        )

    def report_all(self, matches: Iterable[LiveMatch]) -> None:
        """Tick lateness of every game running here (at shutdown)."""
        running = [m for m in matches if m.running]
        p50, p99 = self.ticks.percentile(0.5), self.ticks.percentile(0.99)
        if running and p50 is not None and p99 is not None:
            self._log.info(
                "Tick lateness of {count} running match(es): p50 {p50:.2f} ms, p99 {p99:.2f} ms"
                " over {ticks} ticks",
                count=len(running),
                p50=1000 * p50,
                p99=1000 * p99,
                ticks=self.ticks.count,
            )
