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
from typing import Any, Awaitable, Callable

import attrs
from twisted.internet.defer import ensureDeferred
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
    status: int
    body: Any = None
    headers: dict[str, str] = attrs.field(factory=dict)


Handler = Callable[..., Awaitable[Response]]


@attrs.frozen
class Route:
    method: bytes
    pattern: re.Pattern[str]
    handler: Handler


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
    A leaf resource that dispatches on the full request path.  Mount it at each
    top-level segment it serves (C{api}, C{healthz}); handlers are coroutines
    C{handler(request, **path_params) -> Response} that raise L{ApiError}.
    """

    isLeaf = True
    _log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self._routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        self._routes.append(Route(method.encode("ascii"), _compile(template), handler))

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
            d = ensureDeferred(route.handler(request, **match.groupdict()))
            d.addErrback(self._failed, request)
            d.addCallback(lambda response: self._write(request, response))
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
        return ApiError(500, "internal error")

    def _write(self, request: IRequest, outcome: Response | ApiError) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        if isinstance(outcome, ApiError):
            outcome = Response(outcome.status, outcome.body(), outcome.headers)
        request.setResponseCode(outcome.status)
        for name, value in outcome.headers.items():
            request.setHeader(name, value)
        if outcome.status == 204 or outcome.body is None:
            request.finish()
            return
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        request.write(wire.encode(outcome.body))
        request.finish()
