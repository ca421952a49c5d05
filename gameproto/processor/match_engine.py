"""
The match engine (C{"engine": "match"}): a run's program plays Pong.

The program takes one seat, host or challenger, in a match of this server as the run's
user, with the rules a human's WebSocket has: the engine is a match connection
(L{gameproto.match.protocol}'s state machine, driven through the match service) whose
frames are kept for the program instead of written to a socket.

  - C{send({"command": "up"})} (C{ready}, C{start_match}, C{down}, C{fup}, C{fdown}): the
    message a WebSocket client would send, under the same per-connection rate limit.  The
    reply is the error frame the WebSocket would get in answer (C{{"error", "code"}}), or
    C{{"status": "ok"}}.  A dropped message (over the rate) gets the rate-limit error each
    time; past the grace the seat is lost, as the WebSocket is closed with 4008.
  - C{{"type": "GetFrame"}}: the latest frame of the match (C{lobby}, C{init},
    C{status}, C{end}, C{aborted}: what the WebSocket got last), or C{null} before any.
  - C{{"type": "WaitFrame", "timeout_ms": n}}: the latest frame if the program has not
    read it yet, else the next one, or C{null} after C{n} ms.
  - C{{"type": "GetSeat"}}: C{{"match": id, "role": role}} or C{null}.
  - C{{"type": "Matchmake", "timeout_ms": n}}: queue for an opponent through the
    server's matchmaking (a callable C{username -> Deferred[(match_id, role)]}; cancelling
    the Deferred leaves the queue), then take the seat it found: the reply is the seat,
    or C{null} after C{n} ms while still queued (calling again goes on waiting).

One seat per run.  Once the seat is gone (the match ended, or it was replaced, deleted,
shut down, lost to the rate limit) every command gets C{{"error": "seat closed: ...",
"close_code": n}} (what the WebSocket would have been closed with), the frames still
unread are still given, and the run is stopped after L{MatchSeats.over_grace} seconds if
the program has not ended by itself.  The end of the run gives the seat back as a closed
WebSocket would (a challenger before the start frees the slot; a started player's role
stays theirs) and leaves the matchmaking queue.
"""

from __future__ import annotations

import enum
from typing import Any, Callable

import attrs
import orjson
from autobahn.websocket.protocol import PreparedMessage
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto.limits import KiB, EndpointLimits, RateLimiter, RateVerdict
from gameproto.match import frames
from gameproto.match.frames import Role
from gameproto.match.lobby import StartOutcome
from gameproto.match.protocol import MatchCore, MatchInputs, MatchMachine, feed_command
from gameproto.match.service import MatchService
from gameproto import wire
from gameproto.wire import CloseCode

#: C{username -> Deferred[(match_id, "host" | "challenger")]}; cancelling leaves the queue.
Matchmake = Callable[[str], "Deferred[tuple[int, str]]"]

OK = {"status": "ok"}
MATCHMAKING_UNAVAILABLE = {"error": "matchmaking is not available"}
NO_SEAT = {"error": "no seat: this run has no seat in a match (send Matchmake first)"}
REQUESTS = ("GetFrame", "WaitFrame", "GetSeat", "Matchmake")


@attrs.frozen
class MatchSeats:
    """
    What the match engine needs of the server.

    @ivar service: the match service whose matches programs play.
    @ivar limits: the match endpoint's limits: its message rate applies to a program's
        commands as to a socket's messages.
    @ivar rate_limit_grace: seconds over the rate before the seat is lost (the
        WebSocket's close 4008).
    @ivar matchmake: the server's matchmaking, or None (C{Matchmake} is then refused).
    @ivar over_grace: seconds between the loss of the seat and the stop of a run that
        has not ended by itself (time to read the last frame and print the result).
    """

    service: MatchService
    limits: EndpointLimits = EndpointLimits(64 * KiB)
    rate_limit_grace: float = 5.0
    matchmake: Matchmake | None = None
    over_grace: float = 2.0

    def limiter(self, clock: IReactorTime) -> RateLimiter | None:
        if self.limits.messages_per_second is None:
            return None
        return RateLimiter.per_second(
            self.limits.messages_per_second, self.limits.burst, self.rate_limit_grace, clock
        )


class Phase(enum.Enum):
    """Where the run is with its seat."""

    UNSEATED = "unseated"  # no seat yet (matchmaking may find one)
    QUEUED = "queued"  # waiting for matchmaking
    JOINING = "joining"  # the match service is admitting the seat
    SEATED = "seated"
    CLOSED = "closed"  # the seat is gone: no other in this run
    OVER = "over"  # the run is over


def seat_closed(code: int, reason: str) -> dict[str, Any]:
    return {"error": f"seat closed: {reason}", "close_code": code}


class MatchEngine:
    """
    One run's seat in a match.  It is the seat's match connection: the match machine's
    C{Connection} and the service's C{MatchSocket}.

    @param done: called once, L{MatchSeats.over_grace} after the seat is lost, to stop
        the run.
    @param max_wait: the longest C{WaitFrame} or C{Matchmake}, in seconds.
    """

    _log = Logger()

    def __init__(self, seats: MatchSeats, username: str, clock: IReactorTime,
                 max_wait: float, done: Callable[[], None]) -> None:
        self._seats = seats
        self.username = username
        self._clock = clock
        self._max_wait_ms = int(max_wait * 1000)
        self._done = done
        self._limiter = seats.limiter(clock)
        self.phase = Phase.UNSEATED
        self.seat: dict[str, Any] | None = None  # {"match": id, "role": role}
        self._machine: MatchInputs | None = None
        self._joined: Deferred[dict[str, Any] | None] | None = None
        self._refusal: dict[str, Any] | None = None
        self._closed: dict[str, Any] | None = None
        # The latest frame: an encoded one (a broadcast) or a message; read or not.
        self._frame: Any = None
        self._unread = False
        self._captured: list[Any] | None = None
        self._start: tuple[int, Deferred[Any]] | None = None
        self._wait: tuple[int, Deferred[Any], IDelayedCall] | None = None
        self._queue: Deferred[tuple[int, str]] | None = None
        self._matchmaking: tuple[int, Deferred[Any], IDelayedCall] | None = None
        self._matchmade: dict[str, Any] | None = None  # a refused matchmade seat, untold
        self._done_timer: IDelayedCall | None = None
        #: Frames received (broadcast or not), and frames the program read.
        self.frames_received = 0
        self.frames_read = 0

    def __repr__(self) -> str:
        return f"<MatchEngine {self.username} {self.phase.value} {self.seat}>"

    # -- taking a seat -----------------------------------------------------------

    def take_seat(self, match_id: str, role: Role) -> Deferred[dict[str, Any] | None]:
        """
        Join match C{match_id} as C{role}, as a WebSocket would: fires with C{None} once
        seated, or with the refusal frame (C{{"error", "code"}}) the WebSocket would get.
        """
        assert self.phase in (Phase.UNSEATED, Phase.QUEUED), self.phase
        self.phase = Phase.JOINING
        self._refusal = None
        self.seat = {"match": wire.parse_id(match_id), "role": role.value}
        joined = self._joined = Deferred()
        self._machine = MatchMachine(MatchCore(self, self._seats.service,
                                               on_start=self._start_answered))
        self._machine.join(match_id, self.username, role)
        return joined

    def _seated(self) -> None:
        self.phase = Phase.SEATED
        self._log.info("Match {match}: a processor run of {user} took the {role} seat",
                       match=self.seat and self.seat["match"], user=self.username,
                       role=self.seat and self.seat["role"])
        self._fire_joined(None)

    def _refused(self, refusal: dict[str, Any]) -> None:
        self.phase = Phase.UNSEATED
        self.seat = None
        self._machine = None
        self._fire_joined(refusal)

    def _fire_joined(self, outcome: dict[str, Any] | None) -> None:
        joined, self._joined = self._joined, None
        if joined is not None:
            joined.callback(outcome)

    # -- engine calls --------------------------------------------------------------

    def call(self, call_id: int, command: Any) -> Any:
        if self.phase is Phase.OVER:
            return seat_closed(CloseCode.NORMAL, "the run is over")
        kind = command.get("type") if isinstance(command, dict) else None
        if kind is None:
            return self._command(call_id, command)
        if kind == "GetFrame":
            return self._read() if self._frame is not None else None
        if kind == "WaitFrame":
            return self._wait_frame(call_id, command)
        if kind == "GetSeat":
            return self.seat if self.phase in (Phase.SEATED, Phase.CLOSED) else None
        if kind == "Matchmake":
            return self._matchmake(call_id, command)
        shown = kind if isinstance(kind, str) else orjson.dumps(kind).decode()
        return {"error": f"unknown request type: {shown[:50]} (expected one of "
                         f"{', '.join(REQUESTS)}, or a match command)"}

    def _timeout(self, command: dict[str, Any]) -> float | None:
        """The call's C{timeout_ms} in seconds (the longest if absent); None if invalid."""
        timeout = command.get("timeout_ms", self._max_wait_ms)
        if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                or not 0 <= timeout <= self._max_wait_ms):
            return None
        return timeout / 1000

    def _bad_timeout(self, kind: str) -> dict[str, Any]:
        return {"error": f"{kind} takes timeout_ms from 0 to {self._max_wait_ms}"}

    # -- commands: the WebSocket's messages ---------------------------------------------

    def _command(self, call_id: int, command: Any) -> Any:
        if self.phase is Phase.CLOSED:
            assert self._closed is not None
            return self._closed
        if self.phase is not Phase.SEATED or self._machine is None:
            return NO_SEAT
        if self._limiter is not None:
            verdict = self._limiter.check()
            if verdict is RateVerdict.CLOSE:
                self._lose(CloseCode.RATE_LIMITED, "rate limit exceeded")
                self._machine.lost()  # as the closed WebSocket's seat: given back
                assert self._closed is not None
                return self._closed
            if verdict is not RateVerdict.ALLOW:
                return frames.RATE_LIMITED
        start: Deferred[Any] | None = None
        if _is_start(command):
            # The service answers a host's start later (L{_start_answered}).
            start = Deferred(lambda _: self.cancelled(call_id))
            self._start = (call_id, start)
        self._captured = captured = []
        try:
            if isinstance(command, dict):
                feed_command(self._machine, command)
            else:  # what a frame that is not a JSON object gets
                self._machine.invalidCommand()
        finally:
            self._captured = None
        if captured:
            self._start = None
            return captured[0]
        if start is not None and (start.called or self._start is not None):
            return start
        self._start = None
        if self.phase is Phase.CLOSED:
            assert self._closed is not None
            return self._closed
        return OK

    def _start_answered(self, outcome: StartOutcome) -> None:
        start, self._start = self._start, None
        if start is None:
            return
        # Code 3, as the WebSocket hears it; anything else sends the WebSocket nothing.
        start[1].callback(frames.CHALLENGER_NOT_READY if outcome is StartOutcome.NOT_READY
                          else OK)

    # -- frames -------------------------------------------------------------------

    def _read(self) -> Any:
        self._unread = False
        self.frames_read += 1
        frame = self._frame
        return orjson.Fragment(frame) if isinstance(frame, bytes) else frame

    def _new_frame(self, frame: Any) -> None:
        self._frame = frame
        self._unread = True
        self.frames_received += 1
        if self._wait is not None:
            _, reply, timer = self._wait
            self._wait = None
            if timer.active():
                timer.cancel()
            reply.callback(self._read())

    def _wait_frame(self, call_id: int, command: dict[str, Any]) -> Any:
        timeout = self._timeout(command)
        if timeout is None:
            return self._bad_timeout("WaitFrame")
        if self._unread:
            return self._read()
        if self.phase is Phase.CLOSED:
            return self._closed
        if self.phase is not Phase.SEATED:
            return NO_SEAT
        reply: Deferred[Any] = Deferred(lambda _: self.cancelled(call_id))
        self._wait = (call_id, reply, self._clock.callLater(timeout, self._wait_over, call_id))
        return reply

    def _wait_over(self, call_id: int) -> None:
        if self._wait is not None and self._wait[0] == call_id:
            reply = self._wait[1]
            self._wait = None
            reply.callback(None)

    # -- matchmaking -----------------------------------------------------------------

    def _matchmake(self, call_id: int, command: dict[str, Any]) -> Any:
        timeout = self._timeout(command)
        if timeout is None:
            return self._bad_timeout("Matchmake")
        if self.phase is Phase.SEATED:
            return self.seat
        if self.phase is Phase.CLOSED:
            return self._closed
        refused, self._matchmade = self._matchmade, None
        if refused is not None:
            return refused
        matchmake = self._seats.matchmake
        if matchmake is None:
            return MATCHMAKING_UNAVAILABLE
        if self.phase is Phase.UNSEATED:
            self.phase = Phase.QUEUED
            self._queue = queue = matchmake(self.username)
            queue.addCallbacks(self._paired, self._not_paired)
            if self.phase is not Phase.QUEUED:  # paired at once
                return self._matchmake(call_id, command)
        reply: Deferred[Any] = Deferred(lambda _: self.cancelled(call_id))
        timer = self._clock.callLater(timeout, self._matchmaking_over, call_id)
        self._matchmaking = (call_id, reply, timer)
        return reply

    def _paired(self, seat: tuple[int, str]) -> None:
        self._queue = None
        if self.phase is not Phase.QUEUED:
            return  # the run is over
        match_id, role = seat
        joined = self.take_seat(str(match_id), Role(role))

        def told(refusal: dict[str, Any] | None) -> None:
            self._tell_matchmade(self.seat if refusal is None else refusal)

        joined.addCallback(told)

    def _not_paired(self, failure: Failure) -> None:
        self._queue = None
        if self.phase is not Phase.QUEUED:
            return
        if not failure.check(CancelledError):
            self._log.failure("Matchmaking for {user}", failure, user=self.username)
        self.phase = Phase.UNSEATED
        self._tell_matchmade({"error": "matchmaking failed"})

    def _tell_matchmade(self, reply: dict[str, Any] | None) -> None:
        waiting, self._matchmaking = self._matchmaking, None
        if waiting is None:
            if reply is not None and "error" in reply:
                self._matchmade = reply  # for the next Matchmake
            return
        _, deferred, timer = waiting
        if timer.active():
            timer.cancel()
        deferred.callback(reply)

    def _matchmaking_over(self, call_id: int) -> None:
        if self._matchmaking is not None and self._matchmaking[0] == call_id:
            reply = self._matchmaking[1]
            self._matchmaking = None
            reply.callback(None)  # still queued: the next Matchmake waits on

    # -- the runner's side -------------------------------------------------------------

    def result(self, call_id: int, message: Any) -> bool:
        return False  # nothing is relayed to the WebSocket client

    def cancelled(self, call_id: int) -> None:
        if self._start is not None and self._start[0] == call_id:
            self._start = None
        for name in ("_wait", "_matchmaking"):
            pending = getattr(self, name)
            if pending is not None and pending[0] == call_id:
                setattr(self, name, None)
                if pending[2].active():
                    pending[2].cancel()

    def close(self) -> None:
        """The run is over (or never started): the seat and the queue are given back."""
        if self.phase is Phase.OVER:
            return
        for pending in (self._wait, self._matchmaking):
            if pending is not None:
                self.cancelled(pending[0])
        self._start = None
        if self._done_timer is not None and self._done_timer.active():
            self._done_timer.cancel()
        self._done_timer = None
        phase, self.phase = self.phase, Phase.OVER
        queue, self._queue = self._queue, None
        if queue is not None:
            queue.cancel()  # leaves the matchmaking queue
        if self._machine is not None:
            # As a WebSocket that goes away: the seat is given back (at once, or when a
            # join under way ends); nothing if the seat is gone already.
            self._machine.lost()
        if phase is Phase.JOINING:
            self._fire_joined(seat_closed(CloseCode.NORMAL, "the run is over"))

    # -- the match connection: what the match machine and the service call ------------------

    def sendObject(self, message: Any) -> bool:
        if isinstance(message, dict) and "message_type" in message:
            self._new_frame(message)
        elif self.phase is Phase.JOINING:
            if message == frames.SUCCESS:
                self._seated()
            else:
                self._refusal = message  # the close follows
        elif self._captured is not None:
            self._captured.append(message)
        # Anything else answers nobody now: the answer to a start (code 3) is told by
        # the service's outcome; the shutdown's code 4 comes with the close.
        return True

    def prepare(self, payload: bytes) -> Any:
        # What Autobahn's server factory makes: the sockets of the match share it.
        return PreparedMessage(payload, False, False, False)

    def sendPrepared(self, prepared: Any) -> None:
        if self.phase is not Phase.OVER:
            self._new_frame(prepared.payload)

    def closeWith(self, code: CloseCode, reason: str) -> None:
        if self.phase is Phase.JOINING:
            self._refused(self._refusal or seat_closed(int(code), reason))
        elif self.phase is Phase.SEATED:
            self._lose(int(code), reason)

    def gameStarted(self) -> None:
        if self._machine is not None:
            self._machine.gameStarted()

    def matchOver(self) -> None:
        if self._machine is not None:
            self._machine.matchOver()

    def farewell(self, prepared: Any) -> None:
        if self._machine is not None:
            self._machine.farewell(prepared)

    def replaced(self) -> None:
        if self._machine is not None:
            self._machine.replaced()

    # -- the end of the seat ----------------------------------------------------------------

    def _lose(self, code: int, reason: str) -> None:
        self.phase = Phase.CLOSED
        self._closed = seat_closed(code, reason)
        self._log.info("Match {match}: the processor run of {user} left its seat: {why}",
                       match=self.seat and self.seat["match"], user=self.username, why=reason)
        if self._wait is not None:
            _, reply, timer = self._wait
            self._wait = None
            if timer.active():
                timer.cancel()
            reply.callback(self._closed)
        start, self._start = self._start, None
        if start is not None:
            start[1].callback(self._closed)
        self._done_timer = self._clock.callLater(self._seats.over_grace, self._over)

    def _over(self) -> None:
        self._done_timer = None
        if self.phase is Phase.CLOSED:
            self._done()


def _is_start(command: Any) -> bool:
    return isinstance(command, dict) and command.get("command") == "start_match"
