"""
The account part of the REST API (DESIGN.md §2 and §4): sign-up, tokens, users,
and the health check.  Game-specific routes live with their games, and ask
L{AccountsAPI.require_creator} for the user who creates a match or an arena.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, maybeDeferred
from twisted.web.iweb import IRequest

import gameproto
from gameproto.auth import AccountError, Accounts, InvalidCredentials, token_from_authorization
from gameproto.rest import (
    ApiError,
    JSONRouter,
    Response,
    page,
    query_param,
    read_json,
    timestamp,
    unauthenticated,
)
from gameproto.store import USER_ORDERINGS, User
from gameproto.throttle import Throttle

# Where a user is right now: (ongoing match id, role) or (None, None), or a Deferred
# of it (with several nodes the answer is in Redis).  The match service provides it.
Place = tuple[int | None, str | None]
Whereabouts = Callable[[str], "Place | Deferred[Place]"]


def nowhere(username: str) -> Place:
    return None, None


def no_cookie(request: IRequest) -> str | None:
    return None


class AccountsAPI:
    """
    @param throttle: the rate limits of sign-ups, logins and creations (see
        L{gameproto.throttle}); C{None} for none.
    @param cookie_key: the token key of a request's session cookie, if that request may
        use it (L{gameproto.session.session_key}); by default REST reads no cookie.
    """

    def __init__(
        self,
        accounts: Accounts,
        whereabouts: Whereabouts = nowhere,
        throttle: Throttle | None = None,
        cookie_key: Callable[[IRequest], str | None] = no_cookie,
    ) -> None:
        self.accounts = accounts
        self.whereabouts = whereabouts
        self.throttle = throttle
        self.cookie_key = cookie_key

    def install(self, router: JSONRouter) -> None:
        router.add("POST", "/api/users/sign_up", self.sign_up)
        router.add("GET", "/api/users", self.list_users)
        router.add("GET", "/api/users/{username}", self.get_user)
        router.add("POST", "/api/token", self.obtain_token)
        router.add("DELETE", "/api/token", self.revoke_token)

    async def user_json(self, user: User) -> dict[str, Any]:
        match, role = await maybeDeferred(self.whereabouts, user.username)
        return {
            "username": user.username,
            "date_joined": timestamp(user.date_joined),
            "elo": user.elo,
            "ongoing_match": match,
            "role": role,
        }

    async def require_user(self, request: IRequest) -> User:
        """
        The user of C{Authorization: Token <key>}, or without that header of the web
        page's session cookie.
        """
        header = request.getHeader("authorization")
        key = self.cookie_key(request) if header is None else token_from_authorization(header)
        if header is None and key is None:
            raise unauthenticated()
        user = await self.accounts.user_for_token(key)
        if user is None:
            raise unauthenticated("invalid token")
        request.user = user.username  # type: ignore[attr-defined]  # for the access log
        return user

    async def require_creator(self, request: IRequest) -> User:
        """
        L{require_user}, for a request that creates a match or an arena: it counts
        against the user's and the client address's creation rates (429 over either).
        """
        user = await self.require_user(request)
        if self.throttle is not None:
            self.throttle.creation(request, user.username)
        return user

    # -- routes ----------------------------------------------------------------

    async def sign_up(self, request: IRequest) -> Response:
        if self.throttle is not None:
            self.throttle.sign_up(request)
        body = read_json(request)
        try:
            user = await self.accounts.sign_up(body.get("username"), body.get("password"))
        except AccountError as e:
            raise ApiError(400, e.message, field=e.field) from None
        return Response(201, await self.user_json(user))

    async def obtain_token(self, request: IRequest) -> Response:
        return Response(200, {"token": await self.log_in(request)})

    async def log_in(self, request: IRequest) -> str:
        """
        A new token key for the credentials in C{request}'s JSON body, under the login
        limits (the token route's and the web page's session alike).
        """
        if self.throttle is not None:
            self.throttle.login_attempt(request)
        body = read_json(request)
        for field in ("username", "password"):
            if not isinstance(body.get(field), str):
                raise ApiError(400, "this field is required and must be a string", field=field)
        # Only wrong credentials count against the account: anything else is forgiven.
        forgive = self.throttle.login(body["username"]) if self.throttle is not None else None
        try:
            key = await self.accounts.log_in(body["username"], body["password"])
        except InvalidCredentials:
            raise ApiError(400, "unable to log in with provided credentials") from None
        except BaseException:
            if forgive is not None:
                forgive()
            raise
        if forgive is not None:
            forgive()
        return key

    async def revoke_token(self, request: IRequest) -> Response:
        await self.require_user(request)
        key = token_from_authorization(request.getHeader("authorization"))
        assert key is not None  # require_user accepted it
        await self.accounts.revoke(key)
        return Response(204)

    async def list_users(self, request: IRequest) -> Response:
        await self.require_user(request)
        ordering = query_param(request, "ordering") or "-elo"
        if ordering not in USER_ORDERINGS:
            raise ApiError(
                400, f"ordering must be one of {', '.join(USER_ORDERINGS)}", field="ordering"
            )
        limit, offset = page(request)
        users = await self.accounts.store.list_users(ordering, limit, offset)
        places = [ensureDeferred(self.user_json(user)) for user in users]
        return Response(200, await gatherResults(places, consumeErrors=True))

    async def get_user(self, request: IRequest, username: str) -> Response:
        await self.require_user(request)
        user = await self.accounts.store.get_user(username)
        if user is None:
            raise ApiError(404, "no such user")
        return Response(200, await self.user_json(user))


class HealthAPI:
    """
    C{GET /healthz}: 200 C{"ok"} while the store and the bus answer, 503
    C{"degraded"} otherwise (for a load balancer's health check), within 2 s.  Its
    C{details} say how each part of the server is (the processor's sandbox, for one).
    """

    PROBE_TIMEOUT = 1.5

    def __init__(
        self, store: Any, bus: Any, clock: Any, details: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.details = details

    def install(self, router: JSONRouter) -> None:
        router.add("GET", "/healthz", self.health)

    async def healthy(self) -> bool:
        if not self.bus.connected():
            return False
        probe = self.store.get_user("healthz")
        probe.addTimeout(self.PROBE_TIMEOUT, self.clock)
        try:
            await probe
        except Exception:
            return False
        return True

    async def health(self, request: IRequest) -> Response:
        healthy = await self.healthy()
        return Response(
            200 if healthy else 503,
            {
                "status": "ok" if healthy else "degraded",
                "version": gameproto.__version__,
                "store": self.store.description,
                "bus": self.bus.description,
                "details": self.details() if self.details is not None else {},
            },
        )
