"""
C{/ws/matchmaking/}: where a queued user hears what becomes of their ticket.

The server speaks, the client listens (text frames of JSON objects):

- C{{"type": "matched", "match_id", "role": "host"|"challenger"}}: connect to the
  match in that role now (at once on connecting if the ticket is matched already);
- C{{"type": "requeued"}}: the opponent did not connect in time, or left: back at
  the front of the queue;
- C{{"type": "removed", "reason"}}: the ticket is gone (the user did not connect
  to the match in time);
- C{{"type": "error", "message"}}: unauthenticated (then close 4001), or the client
  sent something (nothing is expected; the connection stays open).

Queueing and leaving are REST calls (C{/api/matchmaking/}); this socket only
listens, so one user may hold several.
"""

from __future__ import annotations

from typing import Any, Callable

from autobahn.twisted.resource import WebSocketResource

from gameproto import wire
from gameproto.matchmaking.rules import TicketState
from gameproto.matchmaking.service import MatchmakingService, matched_event


class MatchmakingProtocol(wire.JSONProtocol):
    endpoint = "matchmaking"
    metrics_protocol = "matchmaking"

    _stop_listening: Callable[[], None] | None = None
    _told_match: int | None = None

    @property
    def service(self) -> MatchmakingService:
        return self.factory.service

    def connectionOpened(self) -> None:
        if self.user is None:
            self.sendObject({"type": "error", "message": "unauthenticated"})
            self.closeWith(wire.CloseCode.UNAUTHENTICATED, "unauthenticated")
            return
        self._stop_listening = self.service.listen(self.user.username, self.event)
        d = self.service.ticket(self.user.username)

        def current(ticket: Any) -> None:
            if ticket is not None and ticket.state is TicketState.MATCHED:
                self.event(matched_event(ticket))

        d.addCallbacks(current, lambda f: self._log.warn(
            "matchmaking: reading a ticket: {why}", why=f.getErrorMessage()))

    def event(self, event: dict[str, Any]) -> None:
        if event["type"] == "matched":
            if self._told_match == event["match_id"]:
                return  # heard twice: on connecting and from the matcher
            self._told_match = event["match_id"]
        if self.state == self.STATE_OPEN:
            self.sendObject(event)

    def objectReceived(self, message: dict[str, Any]) -> None:
        self.sendObject({"type": "error", "message": "this socket only listens"})

    def malformedFrame(self, problem: wire.Malformed) -> None:
        self.sendObject({"type": "error", "message": "this socket only listens"})

    def connectionClosed(self, code: int | None) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None


def matchmaking_resource(service: MatchmakingService, limits: wire.EndpointLimits,
                         context: wire.WireContext) -> WebSocketResource:
    """The resource to mount at C{/ws/matchmaking}."""
    return WebSocketResource(wire.make_factory(MatchmakingProtocol, limits, context,
                                               service=service))
