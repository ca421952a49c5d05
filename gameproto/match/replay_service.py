"""
Replays of completed matches, on every node: recorded by the node that runs a
game (L{ReplayService.recorder}), kept in the store next to the completed match
before its C{end} frame goes out (L{ReplayService.keep}), deleted once older than
the retention (a prune every hour, on every node: the store's prune is
idempotent), and opened for the replay streams that this node serves, within its
limits (L{ReplayService.open_stream}).

The store holds the encoded bytes (gameproto.match.replay); nothing here depends
on where the match was played, so any node serves the replay of any match.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Union

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameproto import wire
from gameproto.match import frames
from gameproto.match.frames import Refusal
from gameproto.match.replay import Replay, ReplayCorrupt, ReplayLimits, ReplayRecorder
from gameproto.store import IStore, ReplayRecord, StoreError
from gameproto.wire import CloseCode

PRUNE_INTERVAL = 3600.0

# The refusals of a replay stream (after the match protocol's own checks).
NO_REPLAY = Refusal(5, "no replay of this match", CloseCode.NOT_FOUND)
TOO_MANY_STREAMS = Refusal(11, "too many replay streams, try again later", CloseCode.BUSY)


class NotCompleted:
    """The match is not a completed one: the live match protocol decides."""


NOT_COMPLETED = NotCompleted()


@attrs.define(eq=False)
class StreamSlot:
    """One replay stream counted against the node's and its user's limits."""

    service: "ReplayService"
    user: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.service._released(self)


@attrs.frozen
class OpenedReplay:
    """A replay ready to stream: its record, its frames, the slot it holds."""

    record: ReplayRecord
    replay: Replay
    slot: StreamSlot


StreamOpening = Union[OpenedReplay, Refusal, NotCompleted]


class ReplayService(Service):
    """The replays of a node; C{tick} is the games' tick in seconds."""

    name = "replays"
    _log = Logger()

    def __init__(self, store: IStore, clock: IReactorTime, limits: ReplayLimits = ReplayLimits(),
                 tick: float = 0.01, prune_interval: float = PRUNE_INTERVAL) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits
        self.tick = tick
        self.streams = 0
        self.streams_of: dict[str, int] = {}  # by user name, lower-cased
        self._pending: set[Deferred[Any]] = set()
        self._pruning = LoopingCall(self._prune_in_background)
        self._pruning.clock = clock
        self._prune_interval = min(prune_interval, limits.retention)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    # -- lifecycle ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._pruning.start(self._prune_interval, now=True)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        if self._pruning.running:
            self._pruning.stop()
        return ensureDeferred(self._drain())

    async def _drain(self) -> None:
        for d in list(self._pending):
            try:
                await d
            except Exception:  # logged where it failed
                pass

    # -- recording -----------------------------------------------------------------

    def recorder(self) -> ReplayRecorder:
        """A recorder for a game starting now."""
        return ReplayRecorder(self.clock, self.limits.max_size)

    def keep(self, match_id: int, recorder: ReplayRecorder, last: bytes) -> Deferred[bool]:
        """
        Finish C{recorder} with the match's last frame and keep the replay in the
        store (the completed match is there already).  Never fails: a replay that
        cannot be kept is logged, and the match simply has none.
        """
        return self._track(ensureDeferred(self._keep(match_id, recorder, last)))

    async def _keep(self, match_id: int, recorder: ReplayRecorder, last: bytes) -> bool:
        recording = recorder.finish(last)
        record = ReplayRecord(
            id=match_id, recorded=self.now(), tick_ms=self.tick * 1000,
            duration_ms=recording.duration_ms, truncated=recording.truncated,
            data=recording.data,
        )
        try:
            await self.store.save_replay(record)
        except Exception:
            self._log.failure("Match {match}: its replay could not be kept", match=match_id)
            return False
        self._log.info(
            "Match {match}: replay kept, {frames} frames over {duration_ms} ms in {size} bytes"
            "{truncated}",
            match=match_id, frames=recording.frames, duration_ms=recording.duration_ms,
            size=len(recording.data),
            truncated=" (truncated at the size limit)" if recording.truncated else "",
        )
        return True

    # -- retention -----------------------------------------------------------------

    def prune(self) -> Deferred[int]:
        """Delete the replays older than the retention; how many were deleted."""
        before = self.now() - timedelta(seconds=self.limits.retention)
        return self.store.prune_replays(before)

    def _prune_in_background(self) -> None:
        def pruned(count: int) -> None:
            if count:
                self._log.info("Replays: {count} older than the retention deleted", count=count)

        def failed(f: Any) -> None:
            if f.check(StoreError):
                self._log.warn("Replays: not pruned, the store is unavailable: {why}",
                               why=f.getErrorMessage())
            else:
                self._log.failure("Replays: pruning", f)

        self._track(self.prune().addCallbacks(pruned, failed))

    # -- streams -------------------------------------------------------------------

    def open_stream(self, raw_id: str, username: str) -> Deferred[StreamOpening]:
        """
        The replay of completed match C{raw_id} (the URL's segment) for a stream to
        C{username}: L{OpenedReplay} (holding a stream slot until released), a
        L{Refusal}, or L{NOT_COMPLETED} if no completed match has this id.
        """
        return ensureDeferred(self._open_stream(raw_id, username))

    async def _open_stream(self, raw_id: str, username: str) -> StreamOpening:
        match_id = wire.parse_id(raw_id)
        if match_id is None:
            return NOT_COMPLETED
        try:
            if await self.store.get_completed_match(match_id) is None:
                return NOT_COMPLETED
            record = await self.store.get_replay(match_id)
        except StoreError as e:
            self._log.warn("Replay of match {match}: the store is unavailable: {why}",
                           match=match_id, why=str(e))
            return frames.UNAVAILABLE
        if record is None:
            return NO_REPLAY
        try:
            replay = Replay(record.data)
        except ReplayCorrupt as e:
            self._log.error("Replay of match {match} is unreadable: {why}", match=match_id,
                            why=str(e))
            return NO_REPLAY
        slot = self._take_slot(username)
        if slot is None:
            return TOO_MANY_STREAMS
        return OpenedReplay(record, replay, slot)

    def _take_slot(self, username: str) -> StreamSlot | None:
        user = username.lower()
        if (self.streams >= self.limits.max_streams
                or self.streams_of.get(user, 0) >= self.limits.max_streams_per_user):
            return None
        self.streams += 1
        self.streams_of[user] = self.streams_of.get(user, 0) + 1
        return StreamSlot(self, user)

    def _released(self, slot: StreamSlot) -> None:
        self.streams -= 1
        left = self.streams_of[slot.user] - 1
        if left:
            self.streams_of[slot.user] = left
        else:
            del self.streams_of[slot.user]

    # -- plumbing ------------------------------------------------------------------

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        self._pending.add(d)

        def done(result: Any) -> Any:
            self._pending.discard(d)
            return result

        return d.addBoth(done)
