"""
A small JSON REST layer on C{twisted.web}: a route table, JSON bodies and errors.

Every response is JSON, errors included (C{{"error": text, "field"?: name}}), and
both C{/x} and C{/x/} are served without redirects.  A route table of a dozen
regular expressions does not justify another dependency (klein brings werkzeug),
so it lives here.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from gameproto import wire
from gameproto.store import StoreError

MAX_BODY = 64 * 1024
DEFAULT_PAGE = 100
MAX_PAGE = 1000


class ApiError(Exception):
    """An error response: C{status} with C{{"error": message, "field": field}}."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        body = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


def unauthenticated(message: str = "authentication credentials were not provided") -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Token"})


@attrs.frozen
class Response:
    """A response: C{status}, a JSON C{body} (C{None}: no body) and extra C{headers}."""

    status: int
    body: Any = None
    headers: dict[str, str] = attrs.field(factory=dict)


# handler(request, [user,] **path_params) -> Response | JSON value, or a Deferred or
# coroutine of one; see JSONRouter.
Handler = Callable[..., Any]
# request -> the authenticated user, or a Deferred or coroutine of it; raises ApiError (401).
Authenticate = Callable[[IRequest], Any]


@attrs.frozen
class Route:
    method: bytes
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    authenticated: bool = False


def _compile(template: str) -> re.Pattern[str]:
    """C{/api/users/{username}} → a regex with a named group and an optional slash."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template.rstrip("/"))
    return re.compile(f"{regex}/?\\Z")


def timestamp(value: datetime | None) -> str | None:
    """ISO-8601 UTC with microseconds and C{Z}: C{2026-11-21T21:45:17.000123Z}."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- request helpers -----------------------------------------------------------


def read_json(request: IRequest, empty: Any = None) -> dict[str, Any]:
    """
    The body as a JSON object, whatever the Content-Type.  An empty body is
    C{empty} if given, else an error.
    """
    content = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(content) > MAX_BODY:
        raise ApiError(413, f"request body larger than {MAX_BODY} bytes")
    if not content.strip() and empty is not None:
        return empty
    try:
        body = wire.decode(content)
    except wire.InvalidJSON:
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def query_param(request: IRequest, name: str) -> str | None:
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"{name} is not valid UTF-8", field=name) from None


def page(request: IRequest) -> tuple[int, int]:
    """C{(limit, offset)} from C{?limit=} (default 100, max 1000) and C{?offset=}."""

    def integer(name: str, default: int, low: int, high: int) -> int:
        raw = query_param(request, name)
        if raw is None:
            return default
        value = wire.parse_id(raw)
        if value is None or not low <= value <= high:
            raise ApiError(400, f"{name} must be an integer from {low} to {high}", field=name)
        return value

    return integer("limit", DEFAULT_PAGE, 1, MAX_PAGE), integer("offset", 0, 0, 2**62)


def boolean_param(request: IRequest, name: str) -> bool | None:
    raw = query_param(request, name)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiError(400, f"{name} must be true, false, 1 or 0", field=name)


# -- the router ----------------------------------------------------------------


class JSONRouter(Resource):
    """
    A leaf resource that dispatches on the path below its parent: mount it at each
    top-level segment it serves (C{api}, C{healthz}), wherever in a tree.

    A handler is called C{handler(request, **path_params)}, or C{handler(request, user,
    **path_params)} for a route added with C{authenticated=True}.  It may be a plain
    function, a coroutine function, or return a Deferred; what it returns is a
    L{Response}, or any other JSON value (sent with 200), or C{None} (204, no body).  An
    L{ApiError} is that error's response, a L{StoreError} a 503; any other exception, or
    a value JSON cannot carry, is logged and answered with the JSON 500, never a
    traceback and never a request left hanging.
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, authenticate: Authenticate | None = None) -> None:
        super().__init__()
        self._routes: list[Route] = []
        # Who is asking, for routes added with authenticated=True (the server sets it
        # to the token check of its accounts).
        self.authenticate = authenticate

    def add(self, method: str, template: str, handler: Handler, *,
            authenticated: bool = False) -> None:
        """
        Serve C{method} on C{template} (C{/api/users/{username}}: path parameters in
        braces; both C{/x} and C{/x/} match).  With C{authenticated}, requests without a
        valid C{Authorization: Token KEY} get the JSON 401 and the handler is not called.
        """
        if authenticated and self.authenticate is None:
            raise ValueError("this router has no way to authenticate a request")
        self._routes.append(
            Route(method.encode("ascii"), template, _compile(template), handler, authenticated)
        )

    def render(self, request: IRequest) -> Any:
        # Match on the path below the mount point's parent, so that the routes work
        # wherever an application mounts the router (/api/... or /game/api/...).
        segments = request.prepath[-1:] + request.postpath
        try:
            # twisted.web has already percent-decoded each segment.
            path = "/" + "/".join(segment.decode("utf-8") for segment in segments)
        except UnicodeDecodeError:
            self._write(request, ApiError(400, "the path is not valid UTF-8"))
            return NOT_DONE_YET
        allowed: list[bytes] = []
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            # The access log and the metrics name the route, never the raw path.
            request.route = route.template  # type: ignore[attr-defined]
            d = Deferred.fromCoroutine(self._answer(route, request, match.groupdict()))
            d.addErrback(self._failed, request)
            d.addCallback(lambda outcome: self._write(request, outcome))
            return NOT_DONE_YET
        if allowed:
            error = ApiError(
                405,
                f"method {request.method.decode('ascii', 'replace')} not allowed",
                headers={"Allow": ", ".join(m.decode("ascii") for m in allowed)},
            )
        else:
            error = ApiError(404, "not found")
        self._write(request, error)
        return NOT_DONE_YET

    async def _answer(self, route: Route, request: IRequest, params: dict[str, str]) -> Response:
        arguments: list[Any] = [request]
        if route.authenticated:
            arguments.append(await maybeDeferred(self.authenticate, request))  # type: ignore[arg-type]
        result = await maybeDeferred(route.handler, *arguments, **params)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(204)
        return Response(200, result)

    def _failed(self, failure: Failure, request: IRequest) -> ApiError:
        if failure.check(ApiError):
            return failure.value
        if failure.check(StoreError):
            self._log.error("Store unavailable: {why}", why=str(failure.value))
            return ApiError(503, "service unavailable, try again shortly")
        self._log.failure(
            "{method} {path} failed",
            failure,
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
        )
        return INTERNAL_ERROR

    def _write(self, request: IRequest, outcome: Response | ApiError) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        headers = request.responseHeaders.copy()
        try:
            self._send(request, outcome)
        except Exception:
            # A handler's response that cannot be sent (a value JSON cannot carry, a
            # status that is not a number...) is a bug of that handler: the JSON 500.
            self._log.failure(
                "{method} {path}: the response could not be sent",
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("utf-8", "replace"),
            )
            if request.startedWriting:
                request.loseConnection()
                return
            request.responseHeaders = headers  # without those of the failed response
            self._send(request, INTERNAL_ERROR)

    def _send(self, request: IRequest, outcome: Response | ApiError) -> None:
        if isinstance(outcome, ApiError):
            outcome = Response(outcome.status, outcome.body(), outcome.headers)
        # Everything that may fail is checked before anything is written.
        if type(outcome.status) is not int or not 100 <= outcome.status <= 599:
            raise ValueError(f"not an HTTP status: {outcome.status!r}")
        body = None
        if outcome.status != 204 and outcome.body is not None:
            body = wire.encode(outcome.body)
        request.setResponseCode(outcome.status)
        for name, value in outcome.headers.items():
            request.setHeader(name, value)
        if body is None:
            request.finish()
            return
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        request.write(body)
        request.finish()


# A bug, whatever it was: the body never carries internals.
INTERNAL_ERROR = ApiError(500, "internal error")
