"""
The engine channel of a run: the program's requests to the game engine (its fd 3, one JSON
line each) and the engine's replies (its fd 4), relayed by L{EngineChannel}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import orjson
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto.processor.budget import RunTime
from gameproto.processor.limits import RunLimits

#: C{on_engine(call_id, command)}: the reply, or a Deferred of it.
EngineHandler = Callable[[int, Any], Any]

ENGINE_TIMEOUT_REPLY = {"error": "engine call timed out"}


class EngineCallError(Exception):
    """Raised by an engine handler: the program's call is answered C{{"error": str(e)}}."""


@attrs.define
class _Call:
    """The engine call in flight (the SDK makes one at a time)."""

    call_id: int
    started: float
    deferred: Deferred[Any] | None = None
    answered: bool = False


class EngineChannel:
    """
    Relays the program's engine calls to C{on_engine}, one at a time and in order, and
    writes each reply with C{write_reply}.  Ids count from 1.

    Calls are relayed only between L{relay} (the program started) and L{hold} (it is
    being stopped); requests read before are kept until then.  A reply is still written
    while the program is being stopped, and none once the channel is L{close}d.

    C{before_call} runs before each call is relayed (to read the output the program
    printed before it, see L{gameproto.processor.output_lines.OutputLines.drain}).
    C{on_flood} is called once if the requests waiting in the channel go over
    C{limits.engine_channel} bytes: nothing more is read then.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        limits: RunLimits,
        on_engine: EngineHandler,
        write_reply: Callable[[bytes], None],
        time: RunTime,
        before_call: Callable[[], None] | None,
        on_flood: Callable[[], None],
        run: str,
    ) -> None:
        self._clock = clock
        self._capacity = limits.engine_channel
        self._timeout = limits.engine_call_timeout
        self._on_engine = on_engine
        self._write_reply = write_reply
        self._time = time
        self._before_call = before_call
        self._on_flood = on_flood
        self._run = run
        self._buffer = b""
        self._requests: deque[bytes] = deque()
        self._call: _Call | None = None
        self._timer: IDelayedCall | None = None
        self._relaying = False
        self._flooded = False
        self._pumping = False
        #: How many calls were relayed.
        self.calls = 0

    # -- the run's lifecycle -----------------------------------------------------------

    def relay(self) -> None:
        """The program runs: its calls may be relayed (L{pump} relays those waiting)."""
        self._relaying = True

    def hold(self) -> None:
        """The program is being stopped: no call is relayed any more."""
        self._relaying = False

    def close(self) -> None:
        """The run is over: the call in flight is cancelled, its timer goes."""
        self._relaying = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        call, self._call = self._call, None
        if call is not None:
            call.answered = True
            if call.deferred is not None:
                call.deferred.cancel()  # lets a relaying protocol forget the call id

    # -- requests ----------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        """C{data} read from the program's requests (fd 3)."""
        if self._flooded:
            return
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        self._requests.extend(lines)
        pending = len(self._buffer) + sum(len(line) for line in self._requests)
        if pending > self._capacity:
            # Either one request line larger than any engine message, or requests written
            # without waiting for replies: the SDK does neither.
            self._requests.clear()
            self._buffer = b""
            self._flooded = True
            self._on_flood()
            return
        self.pump()

    def pump(self) -> None:
        """Relay the waiting requests, one call at a time, while the program runs."""
        # A loop, not recursion: a handler answering synchronously must not nest one frame
        # per queued request.
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._call is None and self._requests and self._relaying:
                self._dispatch(self._requests.popleft())
        finally:
            self._pumping = False

    def _dispatch(self, line: bytes) -> None:
        try:
            command = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._send({"error": "invalid JSON in engine request"})
            return
        self._time.engine_call()
        if self._before_call is not None:
            self._before_call()
            if not self._relaying:  # the output read went over the output limit
                return
        self.calls += 1
        call = _Call(self.calls, self._clock.seconds())
        self._call = call
        if self._timer is None:
            # One timer for every call (see Budget): set for this call's deadline, or
            # earlier for a call answered since, and looking again when it fires.
            self._timer = self._clock.callLater(self._timeout, self._check_call_time)
        try:
            reply = self._on_engine(call.call_id, command)
        except Exception:
            self._failed(Failure(), call)
            return
        if not isinstance(reply, Deferred):
            self._answer(reply, call)  # most engines answer at once: no Deferred to run
            return
        call.deferred = reply
        reply.addCallbacks(self._answer, self._failed, callbackArgs=(call,), errbackArgs=(call,))

    # -- replies -----------------------------------------------------------------------

    def _check_call_time(self) -> None:
        self._timer = None
        call = self._call
        if call is None or call.answered:
            return
        left = call.started + self._timeout - self._clock.seconds()
        if left > 0:
            self._timer = self._clock.callLater(left, self._check_call_time)
        else:
            self._timed_out(call)

    def _failed(self, failure: Failure, call: _Call) -> None:
        if call.answered:
            return  # cancelled after the timeout, or at the end of the run
        if failure.check(EngineCallError):
            reply = {"error": str(failure.value)}
        elif failure.check(CancelledError):
            reply = {"error": "engine call cancelled"}
        else:
            self._log.failure("engine handler failed", failure, run=self._run, call=call.call_id)
            reply = {"error": "engine failure"}
        self._answer(reply, call)

    def _timed_out(self, call: _Call) -> None:
        self._log.info("engine call {call} of {run} timed out", call=call.call_id, run=self._run)
        self._answer(ENGINE_TIMEOUT_REPLY, call)
        if call.deferred is not None:
            call.deferred.cancel()

    def _answer(self, reply: Any, call: _Call) -> None:
        if call.answered or call is not self._call:
            return
        call.answered = True
        self._call = None
        self._send(reply)
        self._time.program_runs()
        self.pump()

    def _send(self, reply: Any) -> None:
        try:
            data = orjson.dumps(reply)
        except TypeError:  # orjson's JSONEncodeError: a lone surrogate, a huge integer
            data = orjson.dumps({"error": "engine reply is not valid JSON"})
        self._write_reply(data + b"\n")
