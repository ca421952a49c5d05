"""
The replay of a completed match, streamed to a spectator on the match endpoint:
C{/ws/game/{id}/?role=spectator[&speed=S]}.

L{ReplayMatchProtocol} is the match endpoint's protocol.  An authenticated
spectator's query string makes it ask the replay service first: a completed match
is streamed from its replay; any other id goes to the live match protocol
(L{MatchProtocol}, unchanged), which answers as it always did.  The stream, after
the usual success frame::

    {"message_type": "replay", "id": 7, "position_ms": 0, "duration_ms": 31250,
     "speed": 1, "truncated": false}
    ... every frame of the match, its exact text, at its original time / speed ...
    {"message_type": "replay_end", "id": 7}          then a close 1000 "replay ended"

C{{"command": "seek", "ms": n}} (0 ≤ n ≤ duration_ms) starts again from the first
frame at or after C{n}, announced by a new C{replay} message.

States of one connection::

    Opening ──refused (bad speed)──────────────────────────────▶ Closed
       │ look                                                    ▲
       ▼                                                         │
    Looking ──refused (no replay, too many streams, store down)──┤
       │ found                 │ live                            │
       ▼                       ▼                                 │
    Streaming ─ended─────▶ Closed ◀── lost, shuttingDown         │
                         Live: every input is the live protocol's ┘

What the client sends while the service looks is held and handled once the
connection knows which it is.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol
from urllib.parse import parse_qsl, urlsplit

import attrs
from automat import TypeMachineBuilder
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gameproto.match import frames
from gameproto.match.frames import Refusal
from gameproto.match.protocol import MatchProtocol, match_id_of
from gameproto.match.replay import MAX_SPEED, MIN_SPEED, Replay, number, parse_speed
from gameproto.match.replay_service import (
    NotCompleted,
    OpenedReplay,
    ReplayService,
    StreamOpening,
)
from gameproto.wire import CloseCode, Malformed

BAD_SPEED = Refusal(
    7, f"bad value in query string. expected: speed from {MIN_SPEED:g} to {MAX_SPEED:g}",
    CloseCode.BAD_REQUEST,
)
# A due time within this of now counts as now (float seconds since the epoch).
_SLACK = 1e-4


def replay_query(uri: str) -> float | Refusal | None:
    """
    The speed a spectator's query string asks for (C{role=spectator}, optionally
    with C{speed=S}), L{BAD_SPEED}, or C{None} for any other query string (the live
    protocol's to judge).
    """
    pairs = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
    values = dict(pairs)
    if len(values) != len(pairs) or values.get("role") != "spectator":
        return None
    if set(values) == {"role"}:
        return 1.0
    if set(values) != {"role", "speed"}:
        return None
    speed = parse_speed(values["speed"])
    return BAD_SPEED if speed is None else speed


def replay_message(record: Any, position_ms: int, speed: float) -> dict[str, Any]:
    return {"message_type": "replay", "id": record.id, "position_ms": position_ms,
            "duration_ms": record.duration_ms, "speed": number(speed), "truncated": record.truncated}


def seek_position(message: dict[str, Any], duration_ms: int) -> int | None:
    """The C{ms} of a seek command if it is an integer from 0 to C{duration_ms}."""
    ms = message.get("ms")
    if isinstance(ms, int) and not isinstance(ms, bool) and 0 <= ms <= duration_ms:
        return ms
    return None


class ReplayPlayer:
    """
    Sends a replay's frames on C{clock} as they were timed, divided by C{speed},
    from a position; C{done} once the last is sent.  Frames that are due together
    go out together (one timer per batch, never a backlog of timers).
    """

    def __init__(self, clock: IReactorTime, replay: Replay, speed: float,
                 send: Callable[[bytes], None], done: Callable[[], None]) -> None:
        self.clock = clock
        self.replay = replay
        self.speed = speed
        self._send = send
        self._done = done
        self._call: IDelayedCall | None = None
        self._frames: Iterator[tuple[int, bytes]] = iter(())
        self._next: tuple[int, bytes] | None = None
        self._origin = 0.0
        self._position = 0
        self._generation = 0

    def play(self, position_ms: int) -> None:
        """(Re)start at the first frame at or after C{position_ms}, now."""
        self.stop()
        self._frames = self.replay.frames(position_ms)
        self._next = next(self._frames, None)
        self._origin = self.clock.seconds()
        self._position = position_ms
        self._run()

    def stop(self) -> None:
        self._generation += 1
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._next = None

    def _run(self) -> None:
        self._call = None
        generation = self._generation
        now = self.clock.seconds()
        while self._next is not None:
            ms, text = self._next
            due = self._origin + (ms - self._position) / 1000 / self.speed
            if due > now + _SLACK:
                self._call = self.clock.callLater(due - now, self._run)
                return
            self._send(text)
            if generation != self._generation:
                return  # stopped by what the send caused
            self._next = next(self._frames, None)
        self._done()


# -- the connection's machine ---------------------------------------------------


class ReplayInputs(Protocol):
    def refused(self, refusal: Refusal) -> None: ...

    def look(self, match_id: str, username: str) -> None: ...

    def found(self, opened: OpenedReplay) -> None: ...

    def live(self) -> None: ...

    def received(self, message: dict[str, Any]) -> None: ...

    def malformed(self, problem: Malformed) -> None: ...

    def rateLimited(self) -> None: ...

    def ended(self) -> None: ...

    def lost(self, code: int | None) -> None: ...

    def shuttingDown(self) -> None: ...


class ReplayConnection(Protocol):
    """What the machine uses of its socket, the live protocol's hooks included."""

    def sendObject(self, message: Any) -> bool: ...

    def sendRecorded(self, text: bytes) -> None: ...

    def closeWith(self, code: CloseCode, reason: str) -> None: ...

    def liveOpened(self) -> None: ...

    def liveReceived(self, message: dict[str, Any]) -> None: ...

    def liveMalformed(self, problem: Malformed) -> None: ...

    def liveRateLimited(self) -> None: ...

    def liveClosed(self, code: int | None) -> None: ...

    def liveShuttingDown(self) -> None: ...


@attrs.define
class ReplayCore:
    connection: ReplayConnection
    replays: ReplayService
    clock: IReactorTime
    speed: float
    opened: OpenedReplay | None = None
    player: ReplayPlayer | None = None
    held: list[Callable[[ReplayInputs], None]] = attrs.Factory(list)

    def send(self, message: Any) -> None:
        self.connection.sendObject(message)

    def finish(self) -> None:
        if self.player is not None:
            self.player.stop()
        if self.opened is not None:
            self.opened.slot.release()


builder = TypeMachineBuilder(ReplayInputs, ReplayCore)
Opening = builder.state("Opening")
Looking = builder.state("Looking")
Streaming = builder.state("Streaming")
Live = builder.state("Live")
Closed = builder.state("Closed")


@Opening.upon(ReplayInputs.refused).to(Closed)
def refuse(inputs: ReplayInputs, core: ReplayCore, refusal: Refusal) -> None:
    core.send(refusal.frame())
    core.connection.closeWith(refusal.close, refusal.error)


Looking.upon(ReplayInputs.refused).to(Closed)(refuse)
Closed.upon(ReplayInputs.refused).loop().returns(None)  # gone while looking


@Opening.upon(ReplayInputs.look).to(Looking)
def look(inputs: ReplayInputs, core: ReplayCore, match_id: str, username: str) -> None:
    def opened(opening: StreamOpening) -> None:
        if isinstance(opening, OpenedReplay):
            inputs.found(opening)
        elif isinstance(opening, NotCompleted):
            inputs.live()
        else:
            inputs.refused(opening)

    def failed(failure: Any) -> None:
        ReplayMatchProtocol._log.failure("Replay stream: opening", failure)
        inputs.refused(frames.UNAVAILABLE)

    core.replays.open_stream(match_id, username).addCallbacks(opened, failed)


def _handle_held(inputs: ReplayInputs, core: ReplayCore) -> None:
    held, core.held = core.held, []
    for replay in held:
        replay(inputs)  # handled in the new state, after this output


@Looking.upon(ReplayInputs.found).to(Streaming)
def start_streaming(inputs: ReplayInputs, core: ReplayCore, opened: OpenedReplay) -> None:
    core.opened = opened
    core.player = ReplayPlayer(core.clock, opened.replay, core.speed,
                               core.connection.sendRecorded, inputs.ended)
    core.send(frames.SUCCESS)
    core.send(replay_message(opened.record, 0, core.speed))
    core.player.play(0)
    _handle_held(inputs, core)


@Closed.upon(ReplayInputs.found).loop()
def gone_meanwhile(inputs: ReplayInputs, core: ReplayCore, opened: OpenedReplay) -> None:
    opened.slot.release()


@Looking.upon(ReplayInputs.live).to(Live)
def go_live(inputs: ReplayInputs, core: ReplayCore) -> None:
    core.connection.liveOpened()
    _handle_held(inputs, core)


Closed.upon(ReplayInputs.live).loop().returns(None)


@Looking.upon(ReplayInputs.received).loop()
def hold(inputs: ReplayInputs, core: ReplayCore, message: dict[str, Any]) -> None:
    core.held.append(lambda machine: machine.received(message))


@Looking.upon(ReplayInputs.malformed).loop()
def hold_malformed(inputs: ReplayInputs, core: ReplayCore, problem: Malformed) -> None:
    core.held.append(lambda machine: machine.malformed(problem))


@Streaming.upon(ReplayInputs.received).loop()
def command(inputs: ReplayInputs, core: ReplayCore, message: dict[str, Any]) -> None:
    assert core.opened is not None and core.player is not None
    if "command" not in message:
        core.send(frames.NO_COMMAND)
        return
    position = seek_position(message, core.opened.record.duration_ms)
    if message["command"] != "seek" or position is None:
        core.send(frames.INVALID_COMMAND)
        return
    core.send(replay_message(core.opened.record, position, core.speed))
    core.player.play(position)


@Streaming.upon(ReplayInputs.malformed).loop()
def invalid(inputs: ReplayInputs, core: ReplayCore, problem: Malformed) -> None:
    core.send(frames.INVALID_COMMAND)


@Streaming.upon(ReplayInputs.rateLimited).loop()
def rate_limited(inputs: ReplayInputs, core: ReplayCore) -> None:
    core.send(frames.RATE_LIMITED)


@Streaming.upon(ReplayInputs.ended).to(Closed)
def ended(inputs: ReplayInputs, core: ReplayCore) -> None:
    assert core.opened is not None
    core.finish()
    core.send({"message_type": "replay_end", "id": core.opened.record.id})
    core.connection.closeWith(CloseCode.NORMAL, "replay ended")


@Streaming.upon(ReplayInputs.lost).to(Closed)
def stop_streaming(inputs: ReplayInputs, core: ReplayCore, code: int | None) -> None:
    core.finish()


def _shutting_down(inputs: ReplayInputs, core: ReplayCore) -> None:
    core.finish()
    core.send(frames.SHUTTING_DOWN)
    core.connection.closeWith(CloseCode.SHUTTING_DOWN, "server shutting down")


for _state in (Opening, Looking, Streaming):
    _state.upon(ReplayInputs.shuttingDown).to(Closed)(_shutting_down)
for _state in (Opening, Looking):
    _state.upon(ReplayInputs.lost).to(Closed).returns(None)
for _state in (Opening, Looking, Closed):
    _state.upon(ReplayInputs.rateLimited).loop().returns(None)
for _input in (ReplayInputs.received, ReplayInputs.malformed, ReplayInputs.lost,
               ReplayInputs.shuttingDown, ReplayInputs.ended):
    Closed.upon(_input).loop().returns(None)


# Live: the live match protocol has the connection.
@Live.upon(ReplayInputs.received).loop()
def live_received(inputs: ReplayInputs, core: ReplayCore, message: dict[str, Any]) -> None:
    core.connection.liveReceived(message)


@Live.upon(ReplayInputs.malformed).loop()
def live_malformed(inputs: ReplayInputs, core: ReplayCore, problem: Malformed) -> None:
    core.connection.liveMalformed(problem)


@Live.upon(ReplayInputs.rateLimited).loop()
def live_rate_limited(inputs: ReplayInputs, core: ReplayCore) -> None:
    core.connection.liveRateLimited()


@Live.upon(ReplayInputs.lost).to(Closed)
def live_lost(inputs: ReplayInputs, core: ReplayCore, code: int | None) -> None:
    core.connection.liveClosed(code)


@Live.upon(ReplayInputs.shuttingDown).loop()
def live_shutting_down(inputs: ReplayInputs, core: ReplayCore) -> None:
    core.connection.liveShuttingDown()


ReplayMachine = builder.build()


# -- the adapter ----------------------------------------------------------------


class ReplayMatchProtocol(MatchProtocol):
    """
    The match endpoint with replays: its factory carries C{replays} (a
    L{ReplayService}) besides the match C{service}.  Connections that are not an
    authenticated spectator's are the live protocol's from the start.
    """

    _log = Logger()
    replay_machine: ReplayInputs | None = None

    def connectionOpened(self) -> None:
        replays = getattr(self.factory, "replays", None)
        speed = replay_query(self.http_request_uri)
        if replays is None or self.user is None or speed is None:
            super().connectionOpened()
            return
        core = ReplayCore(self, replays, self.context.clock, 1.0)
        self.replay_machine = machine = ReplayMachine(core)
        if isinstance(speed, Refusal):
            machine.refused(speed)
            return
        core.speed = speed
        machine.look(match_id_of(self.postpath), self.user.username)

    def objectReceived(self, message: dict[str, Any]) -> None:
        if self.replay_machine is None:
            super().objectReceived(message)
        else:
            self.replay_machine.received(message)

    def malformedFrame(self, problem: Malformed) -> None:
        if self.replay_machine is None:
            super().malformedFrame(problem)
        else:
            self.replay_machine.malformed(problem)

    def rateLimited(self) -> None:
        if self.replay_machine is None:
            super().rateLimited()
        else:
            self.replay_machine.rateLimited()

    def connectionClosed(self, code: int | None) -> None:
        if self.replay_machine is None:
            super().connectionClosed(code)
        else:
            self.replay_machine.lost(code)

    def serverShuttingDown(self) -> None:
        if self.replay_machine is None:
            super().serverShuttingDown()
        else:
            self.replay_machine.shuttingDown()

    # -- what the machine uses -------------------------------------------------

    def sendRecorded(self, text: bytes) -> None:
        """A recorded frame, exactly as it was sent."""
        if self.state == self.STATE_OPEN:
            self.sendMessage(text, isBinary=False)

    def liveOpened(self) -> None:
        MatchProtocol.connectionOpened(self)

    def liveReceived(self, message: dict[str, Any]) -> None:
        MatchProtocol.objectReceived(self, message)

    def liveMalformed(self, problem: Malformed) -> None:
        MatchProtocol.malformedFrame(self, problem)

    def liveRateLimited(self) -> None:
        MatchProtocol.rateLimited(self)

    def liveClosed(self, code: int | None) -> None:
        MatchProtocol.connectionClosed(self, code)

    def liveShuttingDown(self) -> None:
        MatchProtocol.serverShuttingDown(self)
