"""
The matchmaking part of the REST API, for the authenticated user:

- C{POST /api/matchmaking/}: queue (201 with the ticket; 409 with the ticket held
  already; 400 if the user holds a role in a match);
- C{GET /api/matchmaking/}: the ticket (404 if none);
- C{DELETE /api/matchmaking/}: leave the queue (204; 404 if not in it).

A ticket: C{{"state": "waiting"|"matched", "since", "match_id": int|null, "role":
"host"|"challenger"|null}}.  A pair whose match is being created shows as
waiting: it has no match yet.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from twisted.web.iweb import IRequest

from gameproto.matchmaking.rules import Ticket, TicketState
from gameproto.matchmaking.service import AlreadyQueued, InAMatch, MatchmakingService
from gameproto.rest import ApiError, JSONRouter, Response, read_json, timestamp
from gameproto.store import User


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    matched = ticket.state is TicketState.MATCHED
    return {
        "state": "matched" if matched else "waiting",
        "since": timestamp(datetime.fromtimestamp(ticket.since, timezone.utc)),
        "match_id": ticket.match_id if matched else None,
        "role": ticket.role.value if matched and ticket.role is not None else None,
    }


class MatchmakingAPI:
    def __init__(self, service: MatchmakingService) -> None:
        self.service = service

    def install(self, router: JSONRouter) -> None:
        router.add("POST", "/api/matchmaking", self.join, authenticated=True)
        router.add("GET", "/api/matchmaking", self.get, authenticated=True)
        router.add("DELETE", "/api/matchmaking", self.leave, authenticated=True)

    async def join(self, request: IRequest, user: User) -> Response:
        read_json(request, empty={})  # no fields; an empty body counts as {}
        try:
            ticket = await self.service.join(user.username)
        except AlreadyQueued as e:
            return Response(409, {"error": "you are already in the queue",
                                  "ticket": ticket_json(e.ticket)})
        except InAMatch:
            raise ApiError(400, "you are already in a match") from None
        return Response(201, ticket_json(ticket))

    async def get(self, request: IRequest, user: User) -> Response:
        ticket = await self.service.ticket(user.username)
        if ticket is None:
            raise ApiError(404, "you are not in the queue")
        return Response(200, ticket_json(ticket))

    async def leave(self, request: IRequest, user: User) -> Response:
        if not await self.service.leave(user.username):
            raise ApiError(404, "you are not in the queue")
        return Response(204)
