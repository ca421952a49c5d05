"""
A small Twisted application that serves a whole gameproto server below C{/game/}, as
docs/embedding.md describes: the application's own page at C{/}, gameproto's tree at
C{/game} (with a page of its own at C{/game/}, where gameproto's web page goes).  The
end-to-end tests run it as a real process:

    python -m tests.embedded_app [STRPORT]

It logs C{listening on HOST:PORT} once it serves; SIGTERM stops it (gameproto's
WebSockets are closed with 4012 first).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import endpoints, task
from twisted.internet.defer import Deferred
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.static import Data

from gameproto import web
from gameproto.server import GameprotoServer, ServerConfig

APP_PAGE = b"<h1>the application's own page</h1>"
GAME_PAGE = b"<h1>the game's page</h1>"


async def main(reactor: Any, strport: str = "tcp:0:interface=127.0.0.1") -> None:
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    server = GameprotoServer(ServerConfig(port=None, store="memory:"), reactor)
    # A static page at the root of gameproto's tree: served at /game/ below the prefix.
    web.mount(server.root, "/", Data(GAME_PAGE, "text/html"))
    server.startService()
    await server.whenStarted()

    root = Resource()
    root.putChild(b"", Data(APP_PAGE, "text/html"))
    root.putChild(b"game", server.root)
    port = await endpoints.serverFromString(reactor, strport).listen(web.make_site(root, reactor))
    address = port.getHost()
    print(f"listening on {address.host}:{address.port}", flush=True)

    stopped: Deferred[None] = Deferred()

    async def stop() -> None:
        await port.stopListening()
        await server.stopService()
        stopped.callback(None)

    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(stop()))
    await stopped


if __name__ == "__main__":
    task.react(lambda reactor, *argv: Deferred.fromCoroutine(main(reactor, *argv)), sys.argv[1:])
