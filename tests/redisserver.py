"""
A real redis-server for tests, on a free port of its own (never the machine's 6379),
started and stopped with the test's reactor.  Tests may stop and restart it on the
same port to simulate an outage.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from tests.support import require_tool

READY = b"Ready to accept connections"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _RedisProtocol(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.ready.called and READY in self.output:
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"redis-server exited:\n{self.output.decode()}"))
        self.ended.callback(None)


class RedisServer:
    def __init__(self) -> None:
        self.executable = require_tool("redis-server")
        self.port = free_port()
        self._protocol: _RedisProtocol | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Deferred[None]:
        protocol = self._protocol = _RedisProtocol()
        argv = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice"]
        reactor.spawnProcess(protocol, self.executable, argv, env={})
        return protocol.ready.addTimeout(20, reactor)

    async def get(self, key: str) -> str | None:
        """The string at C{key} in database 0, read with a client of the test's own."""
        import txredisapi

        connection = await txredisapi.Connection("127.0.0.1", self.port, reconnect=False)
        try:
            value: str | None = await connection.get(key)
            return value
        finally:
            await connection.disconnect()

    async def contents(self) -> str:
        """Every key of every database and its value, as text, for a test to search."""
        import txredisapi

        out = []
        for db in range(16):
            connection = await txredisapi.Connection("127.0.0.1", self.port, dbid=db,
                                                     reconnect=False)
            try:
                for key in await connection.keys("*"):
                    kind = await connection.type(key)
                    value: Any
                    if kind == "string":
                        value = await connection.get(key)
                    elif kind == "hash":
                        value = await connection.hgetall(key)
                    elif kind == "list":
                        value = await connection.lrange(key, 0, -1)
                    elif kind == "set":
                        value = await connection.smembers(key)
                    elif kind == "zset":
                        value = await connection.zrange(key, 0, -1, withscores=True)
                    else:
                        raise AssertionError(f"{key}: a {kind} the dump cannot read")
                    out.append(f"{db} {key!r} {value!r}")
            finally:
                await connection.disconnect()
        return "\n".join(out)

    def stop(self) -> Deferred[None]:
        protocol = self._protocol
        if protocol is None or protocol.ended.called:
            return Deferred.fromCoroutine(_none())
        protocol.transport.signalProcess("KILL")
        return protocol.ended


async def _none() -> None:
    return None


async def started_redis(testcase: Any) -> RedisServer:
    """A running redis-server, stopped when C{testcase} ends."""
    server = RedisServer()
    await server.start()
    testcase.addCleanup(server.stop)
    return server
