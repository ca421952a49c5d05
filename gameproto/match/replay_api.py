"""
C{GET /api/completed_matches/{id}/replay/}: the replay of a completed match, every
frame as the players got it (its exact text) with its time in milliseconds since
the first::

    {"id": 7, "tick_ms": 10, "duration_ms": 31250, "truncated": false,
     "frames": [{"ms": 0, "frame": "{\\"message_type\\":\\"init\\",...}"}, ...]}

404 C{no such match} if no completed match has the id, C{no replay of this match}
if it has none (pruned, or it could not be kept).  Needs a token, like every
match route.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from gameproto import wire
from gameproto.api import AccountsAPI
from gameproto.match.replay import Replay, number
from gameproto.match.replay_service import ReplayService
from gameproto.rest import ApiError, JSONRouter, Response
from gameproto.store import ReplayRecord


def replay_json(record: ReplayRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "tick_ms": number(record.tick_ms),
        "duration_ms": record.duration_ms,
        "truncated": record.truncated,
        "frames": [{"ms": ms, "frame": text.decode("utf-8")}
                   for ms, text in Replay(record.data).frames()],
    }


class ReplayAPI:
    def __init__(self, replays: ReplayService, accounts_api: AccountsAPI) -> None:
        self.replays = replays
        self.accounts_api = accounts_api

    def install(self, router: JSONRouter) -> None:
        router.add("GET", "/api/completed_matches/{match_id}/replay", self.get_replay)

    async def get_replay(self, request: IRequest, match_id: str) -> Response:
        await self.accounts_api.require_user(request)
        parsed = wire.parse_id(match_id)
        if parsed is None:
            raise ApiError(404, "no such match")
        store = self.replays.store
        record = await store.get_replay(parsed)
        if record is None:
            if await store.get_completed_match(parsed) is None:
                raise ApiError(404, "no such match")
            raise ApiError(404, "no replay of this match")
        return Response(200, replay_json(record))
