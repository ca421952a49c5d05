"""
The match part of the REST API (DESIGN.md §2 and §4 "match"):

- C{POST /api/ongoing_matches/}: a new match, the caller its host (201; 400 if the
  caller already holds a role in a match);
- C{GET /api/ongoing_matches/?is_full=&is_started=}: ongoing matches by id;
- C{GET|DELETE /api/ongoing_matches/{id}/}: one match; delete by its host before
  the start (204; 403 for anyone else, 409 once started);
- C{GET /api/completed_matches/?user=&winner=&loser=}: newest first;
- C{GET /api/completed_matches/{id}/}.

Every route needs a token.  Reads come from the store, which the match service
keeps up to date.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from gameproto import wire
from gameproto.api import AccountsAPI
from gameproto.match import frames
from gameproto.match.lobby import AlreadyInMatch, MatchStarted, NotTheHost
from gameproto.match.service import MatchService
from gameproto.store import IStore
from gameproto.rest import (
    ApiError,
    JSONRouter,
    Response,
    boolean_param,
    page,
    query_param,
    read_json,
)


def _match_id(raw: str) -> int:
    match_id = wire.parse_id(raw)
    if match_id is None:
        raise ApiError(404, "no such match")
    return match_id


class MatchAPI:
    def __init__(self, service: MatchService, accounts_api: AccountsAPI) -> None:
        self.service = service
        self.accounts_api = accounts_api

    @property
    def store(self) -> IStore:
        return self.service.store

    def install(self, router: JSONRouter) -> None:
        router.add("POST", "/api/ongoing_matches", self.create_match)
        router.add("GET", "/api/ongoing_matches", self.list_ongoing)
        router.add("GET", "/api/ongoing_matches/{match_id}", self.get_ongoing)
        router.add("DELETE", "/api/ongoing_matches/{match_id}", self.delete_ongoing)
        router.add("GET", "/api/completed_matches", self.list_completed)
        router.add("GET", "/api/completed_matches/{match_id}", self.get_completed)

    async def create_match(self, request: IRequest) -> Response:
        user = await self.accounts_api.require_creator(request)
        read_json(request, empty={})  # no fields; an empty body counts as {}
        try:
            match = await self.service.create_match(user.username)
        except AlreadyInMatch:
            raise ApiError(400, "you are already in a match") from None
        return Response(201, frames.ongoing_json(match))

    async def list_ongoing(self, request: IRequest) -> Response:
        await self.accounts_api.require_user(request)
        is_full = boolean_param(request, "is_full")
        is_started = boolean_param(request, "is_started")
        limit, offset = page(request)
        matches = await self.store.list_ongoing_matches(is_full, is_started, limit, offset)
        return Response(200, [frames.ongoing_json(m) for m in matches])

    async def get_ongoing(self, request: IRequest, match_id: str) -> Response:
        await self.accounts_api.require_user(request)
        match = await self.store.get_ongoing_match(_match_id(match_id))
        if match is None:
            raise ApiError(404, "no such match")
        return Response(200, frames.ongoing_json(match))

    async def delete_ongoing(self, request: IRequest, match_id: str) -> Response:
        user = await self.accounts_api.require_user(request)
        try:
            deleted = await self.service.delete_match(_match_id(match_id), user.username)
        except NotTheHost:
            raise ApiError(403, "only the host may delete a match") from None
        except MatchStarted:
            raise ApiError(409, "the match has started") from None
        if not deleted:
            raise ApiError(404, "no such match")
        return Response(204)

    async def list_completed(self, request: IRequest) -> Response:
        await self.accounts_api.require_user(request)
        filters = {name: query_param(request, name) for name in ("user", "winner", "loser")}
        limit, offset = page(request)
        matches = await self.store.list_completed_matches(
            filters["user"], filters["winner"], filters["loser"], limit, offset
        )
        return Response(200, [frames.completed_json(m) for m in matches])

    async def get_completed(self, request: IRequest, match_id: str) -> Response:
        await self.accounts_api.require_user(request)
        match = await self.store.get_completed_match(_match_id(match_id))
        if match is None:
            raise ApiError(404, "no such match")
        return Response(200, frames.completed_json(match))
