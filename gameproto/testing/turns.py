"""
Reading a server as an event-loop client does: one message per turn of its loop, the
server's timed calls run one reactor turn at a time.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from gameproto.testing.websocket import WebSocketClient


class ReactorTurnClock(Clock):
    """
    A C{Clock} whose C{advance} runs timed calls as one turn of a reactor does: the
    calls due when it starts.  A call that one of them makes waits for the next
    C{advance}, even with no delay (C{Clock} would run it at once), as a reactor
    runs it only after its next I/O step.
    """

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        self._sortCalls()
        due = [call for call in self.calls if call.getTime() <= self.seconds()]
        for call in due:
            # An earlier call may have cancelled or postponed it.
            if call in self.calls and call.getTime() <= self.seconds():
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


class OneMessagePerTurnClient:
    """
    A client that handles one WebSocket message per turn of its event loop, as the
    official socket.io-protocol test-suite does: it awaits a message, and the other
    messages that came in the same read are lost, their listener not set yet.

    The server runs on a L{ReactorTurnClock}.  A turn of a Twisted reactor runs the
    timed calls that are due, then its I/O step sends what was written: each read
    here follows C{clock.advance(0)}.
    """

    def __init__(self, ws: WebSocketClient, clock: ReactorTurnClock) -> None:
        self.ws = ws
        self.clock = clock
        self.lost: list[str | bytes] = []

    def next_message(self, timeout: float = 5.0, step: float = 0.01) -> str | bytes | None:
        """
        The first message of the next read that has any (C{None} after C{timeout}
        seconds of the clock); the rest of that read goes to L{lost}.
        """
        waited = 0.0
        while True:
            self.clock.advance(0)
            messages = self.ws.messages()
            if messages:
                self.lost.extend(messages[1:])
                return messages[0]
            if waited >= timeout or self.ws.closed:
                return None
            self.clock.advance(step)
            waited += step
