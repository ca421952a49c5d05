"""
The one C{Site} of a gameproto server: every protocol mounted by path next to the
REST API and the health check.

Embedding: another Twisted application builds its own resource tree and calls
L{mount} with the resources it wants (see docs/embedding.md).
"""

from __future__ import annotations

from typing import Any

import attrs
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from gameproto import wire


class JSONNotFound(Resource):
    """A JSON 404 for every path nothing is mounted at."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
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
    """A request whose C{Server} header names gameproto without a Twisted version."""

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        if (name.lower() if isinstance(name, str) else name.lower().decode()) == "server":
            value = b"gameproto"
        super().setHeader(name, value)


def make_site(root: Resource, reactor: Any) -> Site:
    # Bodies are the handlers' to read (JSON, whatever the Content-Type): parsing a form
    # body into request.args would answer a malformed multipart body with a bare 400.
    site = Site(root, reactor=reactor, parsePOSTFormSubmission=False)
    site.requestFactory = GameprotoRequest
    # A bug's traceback is logged, never shown to the client.
    site.displayTracebacks = False
    return site
