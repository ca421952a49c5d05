"""
The REST calls a bot needs, on C{twisted.web.client.Agent}: JSON in, JSON out.

    api = RestClient(reactor, "http://127.0.0.1:8000")
    await api.sign_up("ann", "password1")
    me = api.as_user(await api.token("ann", "password1"))
    match = await me.create_match()
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import attrs
import orjson
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers


class RestError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body


@attrs.define
class RestClient:
    reactor: Any
    base: str
    token_key: str | None = None
    agent: Agent = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.agent = Agent(self.reactor)

    def as_user(self, token: str) -> "RestClient":
        return RestClient(self.reactor, self.base, token)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request: C{(status, decoded JSON body or None)}."""
        headers = Headers({b"Accept": [b"application/json"]})
        if self.token_key is not None:
            headers.addRawHeader(b"Authorization", f"Token {self.token_key}".encode("ascii"))
        producer = None
        if body is not None:
            headers.addRawHeader(b"Content-Type", b"application/json")
            producer = FileBodyProducer(BytesIO(orjson.dumps(body)))
        url = (self.base.rstrip("/") + path).encode("utf-8")
        response = await self.agent.request(method.encode("ascii"), url, headers, producer)
        raw = await readBody(response)
        return response.code, (orjson.loads(raw) if raw else None)

    async def _expect(self, status: int, method: str, path: str, body: Any = None) -> Any:
        code, decoded = await self.call(method, path, body)
        if code != status:
            raise RestError(code, decoded)
        return decoded

    async def sign_up(self, username: str, password: str) -> Any:
        return await self._expect(
            201, "POST", "/api/users/sign_up/", {"username": username, "password": password}
        )

    async def token(self, username: str, password: str) -> str:
        body = await self._expect(
            200, "POST", "/api/token/", {"username": username, "password": password}
        )
        return body["token"]

    async def user(self, username: str) -> Any:
        return await self._expect(200, "GET", f"/api/users/{username}/")

    async def create_match(self) -> Any:
        return await self._expect(201, "POST", "/api/ongoing_matches/")

    async def ongoing_match(self, match_id: int) -> Any:
        return await self._expect(200, "GET", f"/api/ongoing_matches/{match_id}/")

    async def completed_match(self, match_id: int) -> Any:
        return await self._expect(200, "GET", f"/api/completed_matches/{match_id}/")
