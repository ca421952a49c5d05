"""
The browser's session: a token in an HttpOnly cookie instead of a header.

A page cannot put C{Authorization} on a WebSocket handshake, and a token that page
scripts can read is a token any injected script can steal.  So the web page logs in
with C{POST /api/session/}, which mints a token like C{POST /api/token/} but hands
it over only as the C{gameproto_token} cookie (HttpOnly, SameSite=Strict, Secure over
HTTPS); C{GET /api/session/} says who is signed in, C{DELETE /api/session/} revokes
the token and clears the cookie.

A cookie rides along with every request the browser makes to this server, including
requests a page of another site triggers.  SameSite=Strict keeps it off cross-site
requests; for pages of the same site but another origin (another port, a sibling
subdomain), REST accepts the cookie only from requests that prove they come from a
page of this server's own origin (L{session_key}).  WebSocket handshakes get the
same guarantee from the origin check every gameproto endpoint makes.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from gameproto.api import AccountsAPI
from gameproto.auth import TOKEN_COOKIE, token_from_cookie
from gameproto.rest import ApiError, JSONRouter, Response
from gameproto.connections import OriginPolicy

# The cookie's lifetime when tokens do not expire: a month of not having to log in.
DEFAULT_MAX_AGE = 30 * 24 * 3600

# The header the page adds to its API calls.  A page of another origin can only add a
# custom header after a CORS preflight, which gameproto never grants.
PAGE_HEADER = "X-Requested-With"


class CrossOriginCookie(ApiError):
    def __init__(self) -> None:
        super().__init__(
            403, "the session cookie is accepted only from pages of this server's own origin"
        )


def _from_own_page(request: IRequest, origins: OriginPolicy) -> bool | None:
    """
    C{True} when the request shows it was made by a page of this server's origin,
    C{False} when it names another origin, C{None} when it says nothing either way.

    Browsers send C{Origin} on every POST, DELETE and WebSocket handshake, but not on a
    same-origin GET; there C{Sec-Fetch-Site} (which scripts cannot set, and which
    browsers send to secure and local origins) or the page's own header proves it.
    """
    origin = _header(request, "origin")
    if origin is not None:
        return origins.allows(origin, _header(request, "host"))
    if _header(request, "sec-fetch-site") == "same-origin":
        return True
    if _header(request, PAGE_HEADER) is not None:
        return True
    return None


def session_key(request: IRequest, origins: OriginPolicy) -> str | None:
    """
    The token key of the session cookie if this request may use it; C{None} when
    there is no usable cookie (which leaves the request unauthenticated).

    @raise CrossOriginCookie: the request carries the cookie from a page of another
        origin.
    """
    if not origins.cookies_allowed:
        return None
    key = token_from_cookie(_header(request, "cookie"))
    if key is None:
        return None
    own_page = _from_own_page(request, origins)
    if own_page is False:
        raise CrossOriginCookie()
    return key if own_page else None


def _header(request: IRequest, name: str) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value if isinstance(value, str) else value.decode("latin-1")


def _mount_path(request: IRequest) -> str:
    """C{/} for a server at the root, C{/game/} when it is mounted at C{/game}."""
    # The router is mounted at /api; what comes before it is the mount prefix.
    prefix = [segment.decode("utf-8", "replace") for segment in request.prepath[:-1]]
    return "/" + "".join(f"{segment}/" for segment in prefix)


def _is_https(request: IRequest) -> bool:
    # Behind a TLS-terminating proxy the request arrives over plain HTTP: the proxy
    # says so with X-Forwarded-Proto (see docs/web.md).
    return bool(request.isSecure()) or _header(request, "x-forwarded-proto") == "https"


def session_cookie(request: IRequest, key: str, max_age: int) -> str:
    attributes = [
        f"{TOKEN_COOKIE}={key}",
        f"Path={_mount_path(request)}",
        f"Max-Age={max_age}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if _is_https(request):
        attributes.append("Secure")
    return "; ".join(attributes)


def cleared_cookie(request: IRequest) -> str:
    return session_cookie(request, "", 0)


class SessionAPI:
    """
    C{POST|GET|DELETE /api/session/}.

    @param token_ttl: the server's C{--token-ttl}; the cookie lives as long as the token
        (L{DEFAULT_MAX_AGE} when tokens never expire).
    """

    def __init__(
        self, accounts_api: AccountsAPI, origins: OriginPolicy, token_ttl: float | None = None
    ) -> None:
        self.accounts_api = accounts_api
        self.origins = origins
        self.max_age = DEFAULT_MAX_AGE if token_ttl is None else int(token_ttl)

    def install(self, router: JSONRouter) -> None:
        router.add("POST", "/api/session", self.log_in)
        router.add("GET", "/api/session", self.current)
        router.add("DELETE", "/api/session", self.log_out)

    def _refuse_other_origins(self, request: IRequest) -> None:
        # Logging a visitor into someone else's account is an attack too.
        if _from_own_page(request, self.origins) is False:
            raise CrossOriginCookie()

    async def log_in(self, request: IRequest) -> Response:
        """C{{"username", "password"}} → 200 with the user and the cookie; 400 otherwise."""
        self._refuse_other_origins(request)
        if not self.origins.cookies_allowed:
            raise ApiError(
                403, "sessions are off: this server allows every origin (--allowed-origin '*')"
            )
        key = await self.accounts_api.log_in(request)
        accounts = self.accounts_api.accounts
        user = await accounts.user_for_token(key)
        assert user is not None  # just minted
        return Response(
            200,
            {"user": await self.accounts_api.user_json(user)},
            {"Set-Cookie": session_cookie(request, key, self.max_age)},
        )

    async def current(self, request: IRequest) -> Response:
        """
        200 C{{"user": user}} while the cookie is valid, else 200 C{{"user": null}}: a
        visitor who is not signed in is not an error to the page that asks.
        """
        key = session_key(request, self.origins)
        user = await self.accounts_api.accounts.user_for_token(key)
        body: dict[str, Any] = {"user": None}
        headers: dict[str, str] = {}
        if user is not None:
            body["user"] = await self.accounts_api.user_json(user)
        elif key is not None:
            headers["Set-Cookie"] = cleared_cookie(request)  # revoked or expired
        return Response(200, body, headers)

    async def log_out(self, request: IRequest) -> Response:
        """Revoke the cookie's token (if any) and clear the cookie: 204 either way."""
        self._refuse_other_origins(request)
        key = session_key(request, self.origins)
        if key is not None:
            await self.accounts_api.accounts.revoke(key)
        return Response(204, headers={"Set-Cookie": cleared_cookie(request)})
