"""
The one C{Site} of a gameproto server: every protocol mounted by path next to the
REST API and the health check.

Embedding: another Twisted application builds its own resource tree and calls
L{mount} with the resources it wants (see docs/embedding.md).
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from gameproto import wire
from gameproto.metrics import Metrics


#: The route of a request for a path nothing is mounted at, in the access log.
NOT_FOUND_ROUTE = "(not found)"


class JSONNotFound(Resource):
    """A JSON 404 for every path nothing is mounted at."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.route = NOT_FOUND_ROUTE  # not the path: a client can make up any number
        request.setResponseCode(404)
        request.setHeader("Content-Type", "application/json")
        return wire.encode({"error": "not found"})


class Tree(Resource):
    """
    A resource tree node whose unknown children answer a JSON 404.  The node itself
    (C{/game} when an application mounts the tree at C{/game}) redirects to its
    index page, C{/game/}, when one is mounted at C{""}, and is a JSON 404 otherwise.
    """

    def getChild(self, path: bytes, request: Any) -> IResource:
        return JSONNotFound()

    def render(self, request: Any) -> bytes:
        path, query = (request.uri.split(b"?", 1) + [b""])[:2]
        if b"" not in self.children or path.endswith(b"/"):
            return JSONNotFound().render(request)
        # Relative to the request, as the client spelled it, so that it holds behind a
        # proxy that strips a prefix: /game → ./game/ → /game/.
        location = b"./" + path.rsplit(b"/", 1)[-1] + b"/" + (b"?" + query if query else b"")
        request.setResponseCode(301)
        request.setHeader("Location", location)
        return b""


class Root(Tree):
    """
    The top of gameproto's tree.  Mounted below a prefix (C{/game}), a request for the
    prefix itself is sent to C{/game/}, where the web page is: the page's relative
    links only resolve from there (see L{Tree.render}).
    """


def mount(root: Resource, path: str, resource: IResource) -> None:
    """
    Put C{resource} at C{path} (C{/ws/game}), creating the nodes in between.  A leaf
    resource sees the whole remaining path, so C{/ws/game/{id}/} is served by the
    resource mounted at C{/ws/game}.
    """
    segments = [s.encode("utf-8") for s in path.strip("/").split("/")]
    node = root
    for segment in segments[:-1]:
        child = node.children.get(segment)
        if child is None:
            child = Tree()
            node.putChild(segment, child)
        node = child
    node.putChild(segments[-1], resource)


class WebSocketEndpoint(WebSocketResource):
    """
    A WebSocket resource that tells each connection the path below the resource:
    C{protocol.postpath}, the percent-decoded segments Twisted has not consumed
    (C{(b"12", b"")} for C{/ws/game/12/} with the resource at C{/ws/game}).  A protocol
    reads its path parameters there, never from the whole request path, so that it
    works wherever an application mounts the tree (C{/game/ws/game/12/}).
    """

    def render(self, request: Any) -> Any:
        below = _WithPostpath(self._factory, tuple(request.postpath))
        return WebSocketResource(below).render(request)


@attrs.frozen
class _WithPostpath:
    """The factory of one request: Autobahn's resource asks it for the protocol only."""

    factory: WebSocketServerFactory
    postpath: tuple[bytes, ...]

    def buildProtocol(self, address: Any) -> Any:
        protocol = self.factory.buildProtocol(address)
        if protocol is not None:
            protocol.postpath = self.postpath
        return protocol


class GameprotoRequest(Request):
    """
    A request whose C{Server} header names gameproto without a Twisted version, and
    that knows what the access log says of it: the C{route} that served it (a
    template such as C{/api/matches/{id}}, set by the resource that matched), the
    authenticated C{user}, if any, and whether it is an Engine.IO session's poll
    (C{transport_poll}).
    """

    route: str | None = None
    user: str | None = None
    began: float | None = None
    transport_poll = False

    def process(self) -> None:
        self.began = time.monotonic()
        super().process()

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        # Every response sets several headers: the length test spares most of them the rest.
        if len(name) == 6 and name.lower() in (b"server", "server"):
            value = b"gameproto"
        super().setHeader(name, value)


#: The longest path and user agent the access log keeps (a client chooses them).
MAX_LOGGED = 256


def _clipped(value: bytes | None) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", "replace")
    return text if len(text) <= MAX_LOGGED else text[:MAX_LOGGED] + "..."


# A namespace of its own, for log shippers to route on (a Logger on the class would
# take the class's name).
_access_log = Logger(namespace="gameproto.access")

ACCESS_LOG_POLICIES = ("requests", "all", "off")
"""
What the access log records: C{requests}, every request but the answered polls of
Engine.IO sessions (L{GameprotoRequest.transport_poll}); C{all}, those too; C{off},
nothing.  Polls are a transport's traffic, as a WebSocket's frames are: a chat room
over long-polling makes one per member for every message, and logging each was a
quarter of the server's time under 200 polling members.  The metrics count every
request whatever the policy.
"""


class GameprotoSite(Site):
    """
    A site whose access log is one structured event per request (one JSON object per
    line with C{--log-format json}): method, path (without the query string), route,
    status, bytes, duration, client address, user and user agent.  WebSocket
    connections are not requests that finish: they are logged when they close.
    """

    #: Where requests are counted (gameproto.metrics), if anywhere.
    metrics: Metrics | None = None
    #: Which requests are logged: one of L{ACCESS_LOG_POLICIES}.
    access_log = "requests"

    def log(self, request: Any) -> None:
        began = getattr(request, "began", None)
        seconds = time.monotonic() - began if began is not None else None
        address = request.getClientAddress()
        route = getattr(request, "route", None)
        if route is None:  # a resource that is not a router: where it is mounted
            route = "/" + "/".join(_clipped(s) or "" for s in request.prepath)
        method = request.method.decode("ascii", "replace")
        if self.metrics is not None:
            self.metrics.request_answered(method, route, request.code, seconds)
        policy = self.access_log
        if policy == "off" or (policy == "requests" and request.transport_poll
                               and request.code < 400):
            return
        user = getattr(request, "user", None)
        _access_log.info(
            "{client} " + ("{user}" if user else "-")
            + ' "{method} {path}" {status} {bytes} {duration_ms}ms',
            method=method,
            path=_clipped(request.path),
            route=route,
            status=request.code,
            bytes=request.sentLength,
            duration_ms=round(seconds * 1000, 1) if seconds is not None else None,
            client=getattr(address, "host", None),
            user=user,
            user_agent=_clipped(request.getHeader(b"user-agent")),
        )


def make_site(root: Resource, reactor: Any, metrics: Metrics | None = None,
              access_log: str = "requests") -> Site:
    """
    The site of C{root}: gameproto's request class, no tracebacks to clients, an access
    log (C{access_log}: one of L{ACCESS_LOG_POLICIES}) and, with C{metrics}, requests
    counted there.
    """
    if access_log not in ACCESS_LOG_POLICIES:
        raise ValueError(f"access_log: expected one of {ACCESS_LOG_POLICIES}")
    # Bodies are the handlers' to read (JSON, whatever the Content-Type): parsing a form
    # body into request.args would answer a malformed multipart body with a bare 400.
    site = GameprotoSite(root, reactor=reactor, parsePOSTFormSubmission=False)
    site.metrics = metrics
    site.access_log = access_log
    site.requestFactory = GameprotoRequest
    # A bug's traceback is logged, never shown to the client.
    site.displayTracebacks = False
    return site
