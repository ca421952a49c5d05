"""
The heartbeat of one Engine.IO v4 session: the server pings, the client answers with
a pong, and a client that does not answer in time is gone.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Heartbeat:
    """
    Pings every C{interval} seconds after the last pong (the first one C{interval}
    after L{start}); C{timed_out} is called when a ping has had no pong for
    C{timeout} seconds.  The timers follow the official server's, which its test
    suites time to the millisecond.
    """

    def __init__(
        self,
        clock: IReactorTime,
        interval: float,
        timeout: float,
        send_ping: Callable[[], None],
        timed_out: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._timeout = timeout
        self._send_ping = send_ping
        self._timed_out = timed_out
        self._ping_call: IDelayedCall | None = None
        self._pong_call: IDelayedCall | None = None
        self._deadline_refreshed = False

    def start(self) -> None:
        self._ping_call = self._clock.callLater(self._interval, self._ping)

    def pong(self) -> None:
        """The client's pong: the next ping is due C{interval} from now."""
        if self._pong_call is None:
            return
        self._pong_call.cancel()
        self._pong_call = None
        self.start()

    def activity(self) -> None:
        """
        Any other packet from the client.  As the official server: traffic proves the
        client alive, once per ping, so a client busy sending over a slow link is not
        cut off for a late pong.
        """
        if self._pong_call is not None and not self._deadline_refreshed:
            self._deadline_refreshed = True
            self._pong_call.reset(self._timeout)

    def stop(self) -> None:
        for call in (self._ping_call, self._pong_call):
            if call is not None and call.active():
                call.cancel()
        self._ping_call = self._pong_call = None

    def _ping(self) -> None:
        self._ping_call = None
        self._deadline_refreshed = False
        self._send_ping()
        # The deadline starts when the ping is queued, even if no GET can carry it
        # yet: a polling client that stops polling is as dead as a silent one.
        self._pong_call = self._clock.callLater(self._timeout, self._pong_missed)

    def _pong_missed(self) -> None:
        self._pong_call = None
        self._timed_out()
