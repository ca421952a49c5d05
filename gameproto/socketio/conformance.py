"""
The server the official Engine.IO and Socket.IO protocol test suites expect:

    python -m gameproto.socketio.conformance --port 3000

- C{/engine.io/}: a bare Engine.IO app that echoes every message;
- C{/socket.io/}: Socket.IO with the namespaces C{/} and C{/custom}, which on connect
  emit C{auth} with the CONNECT payload, answer C{message} with C{message-back} (same
  arguments) and acknowledge C{message-with-ack} with its arguments; any other
  namespace is refused with C{{"message": "Invalid namespace"}};
- pingInterval 300 ms, pingTimeout 200 ms, connectTimeout 1000 ms, maxPayload
  1000000, CORS for every origin.

It is also what the interop tests use for binary events (L{conformance_site}).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage
from twisted.web.server import Site

from gameproto import wire, web
from gameproto.socketio.engineio import EngineIOConfig, Session
from gameproto.socketio.namespace import Socket
from gameproto.socketio.server import SocketIOServer, mount_socketio

CONFORMANCE_CONFIG = EngineIOConfig(
    ping_interval=0.3, ping_timeout=0.2, max_payload=1_000_000
)
CONNECT_TIMEOUT = 1.0


class EchoApp:
    """An Engine.IO app that sends every message back as it came."""

    def session_opened(self, session: Session) -> None:
        pass

    def message_received(self, session: Session, data: str | bytes) -> None:
        session.send(data)

    def session_closed(self, session: Session, reason: str) -> None:
        pass


def conformance_socketio(clock: IReactorTime) -> SocketIOServer:
    sio = SocketIOServer(clock, connect_timeout=CONNECT_TIMEOUT)
    for name in ("/", "/custom"):
        namespace = sio.of(name)

        @namespace.on_connect
        def connect(socket: Socket, auth: dict[str, Any]) -> None:
            socket.emit("auth", auth)

        @namespace.on("message")
        def message(socket: Socket, *args: Any) -> None:
            socket.emit("message-back", *args)

        @namespace.on("message-with-ack")
        def message_with_ack(socket: Socket, *args: Any) -> tuple[Any, ...]:
            return args

    return sio


def open_context(clock: Any) -> wire.WireContext:
    """A context that allows every origin and authenticates nobody."""
    return wire.WireContext(
        clock=clock,
        connections=wire.Connections(wire.ServerLimits(), clock),
        origins=wire.OriginPolicy.from_list(["*"]),
        authenticate=lambda request, cookies_allowed: succeed(None),
    )


def conformance_site(reactor: Any, context: wire.WireContext | None = None) -> Site:
    """The conformance server's Site, on C{reactor} (a real reactor: it serves TCP)."""
    if context is None:
        context = open_context(reactor)
    root = web.Tree()
    mount_socketio(root, "/engine.io/", EchoApp(), context, reactor, CONFORMANCE_CONFIG)
    mount_socketio(
        root, "/socket.io/", conformance_socketio(reactor), context, reactor, CONFORMANCE_CONFIG
    )
    return web.make_site(root, reactor)


class Options(usage.Options):
    optParameters = [
        ["port", "p", 3000, "TCP port to listen on (0: any free port).", int],
        ["interface", "i", "127.0.0.1", "Address to listen on."],
    ]


def main(argv: list[str]) -> None:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        raise SystemExit(f"{e}\n{options}")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    port = reactor.listenTCP(  # type: ignore[attr-defined]
        options["port"], conformance_site(reactor), interface=options["interface"]
    )
    # One line on stdout, for scripts and tests that start it on port 0.
    address = port.getHost()
    print(f"listening on {address.host}:{address.port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
