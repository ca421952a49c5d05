"""
The arena part of the REST API (DESIGN.md §4 "arena"):

  - C{POST /api/arenas/} C{{"id"?, "config"?}} → 201 with the arena;
  - C{GET /api/arenas/} → the arenas, C{?limit=}/C{?offset=};
  - C{GET /api/arenas/{id}/} → the arena; C{DELETE /api/arenas/{id}/} → 204 (owner only).

An arena is C{{"id", "owner", "config" (every key), "players" (ids in the arena, in
registration order), "started", "controller_connected"}}.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from gameproto.api import AccountsAPI
from gameproto.arena.config import ArenaConfig, ArenaConfigError
from gameproto.arena.service import ArenaError, ArenaService
from gameproto.rest import ApiError, JSONRouter, Response, page, read_json

_BODY_KEYS = ("id", "config")


class ArenasAPI:
    def __init__(self, arenas: ArenaService, accounts_api: AccountsAPI) -> None:
        self.arenas = arenas
        self.accounts_api = accounts_api

    def install(self, router: JSONRouter) -> None:
        router.add("POST", "/api/arenas", self.create)
        router.add("GET", "/api/arenas", self.list)
        router.add("GET", "/api/arenas/{arena_id}", self.get)
        router.add("DELETE", "/api/arenas/{arena_id}", self.delete)

    async def create(self, request: IRequest) -> Response:
        user = await self.accounts_api.require_creator(request)
        body = read_json(request, empty={})
        for key in body:
            if key not in _BODY_KEYS:
                raise ApiError(400, f"unknown field; expected {' or '.join(_BODY_KEYS)}",
                               field=str(key))
        arena_id = body.get("id")
        if arena_id is not None and not isinstance(arena_id, str):
            raise ApiError(400, "the id must be a string", field="id")
        try:
            config = ArenaConfig.from_dict(body.get("config", {}))
        except ArenaConfigError as e:
            raise ApiError(400, f"config: {e}", field=e.key) from None
        try:
            arena = await self.arenas.create(user.username, config, arena_id)
        except ArenaError as e:
            raise ApiError(e.status, e.message, field=e.field) from None
        return Response(201, arena.asjson())

    async def list(self, request: IRequest) -> Response:
        await self.accounts_api.require_user(request)
        limit, offset = page(request)
        return Response(200, await self.arenas.describe_all(limit, offset))

    async def get(self, request: IRequest, arena_id: str) -> Response:
        await self.accounts_api.require_user(request)
        arena = await self.arenas.describe(arena_id)
        if arena is None:
            raise ApiError(404, "no such arena")
        return Response(200, arena)

    async def delete(self, request: IRequest, arena_id: str) -> Response:
        user = await self.accounts_api.require_user(request)
        try:
            await self.arenas.delete(arena_id, user.username)
        except KeyError:
            raise ApiError(404, "no such arena") from None
        except ArenaError as e:
            raise ApiError(e.status, e.message) from None
        return Response(204)
