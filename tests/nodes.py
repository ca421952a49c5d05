"""
Real server processes for end-to-end tests and benchmarks: C{twistd --pidfile= -n
gameproto ...} started with the test's reactor, its port read from its own log line,
stopped with SIGTERM.  Also a small HTTP JSON client for talking to them.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from gameproto import wire

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
_LISTENING = re.compile(rb"listening on (\S+):(\d+)")
START_TIMEOUT = 30.0


class _NodeProtocol(ProcessProtocol):
    def __init__(self, node: "ServerProcess") -> None:
        self.node = node

    def outReceived(self, data: bytes) -> None:
        self.node.output += data
        if not self.node.listening.called:
            match = _LISTENING.search(self.node.output)
            if match:
                self.node.port = int(match.group(2))
                self.node.listening.callback(self.node.port)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        code = reason.value.exitCode if reason.check(ProcessDone, ProcessTerminated) else None
        self.node.exit_code = code
        self.node.exit_signal = getattr(reason.value, "signal", None)
        if not self.node.listening.called:
            self.node.listening.errback(
                RuntimeError(f"the server exited before listening:\n{self.node.text()}")
            )
        self.node.ended.callback(code)


class OnLoopback:
    """Something listening on 127.0.0.1:C{port}, and its URLs."""

    port: int | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.http + path

    def ws_url(self, path: str) -> str:
        return self.ws + path


class ServerProcess(OnLoopback):
    """
    A server process that logs C{listening on HOST:PORT} once it serves: started
    with the test's reactor, stopped with SIGTERM.  Its environment has no
    C{GAMEPROTO_*} variable unless C{env} says so, so a developer's settings never
    leak into a test.
    """

    def __init__(self, argv: list[str], cwd: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.output = b""
        self.port: int | None = None
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[int | None] = Deferred()
        self.process: Any = None

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    log = text

    def start(self) -> Deferred[int]:
        """Spawn the process; fires with its port once it listens."""
        if self.env is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEPROTO_")}
        else:
            env = dict(self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = reactor.spawnProcess(
            _NodeProtocol(self), self.argv[0], self.argv, env=env, path=self.cwd
        )
        self.listening.addTimeout(START_TIMEOUT, reactor)
        return self.listening

    def signal(self, name: str) -> None:
        if self.exit_code is None and self.exit_signal is None:
            self.process.signalProcess(name)

    def stop(self) -> Deferred[int | None]:
        """SIGTERM, then the exit code once the process is gone."""
        if self.ended.called:
            return Deferred.fromCoroutine(_value(self.exit_code))
        self.signal("TERM")
        return self.ended

    def kill(self) -> Deferred[int | None]:
        if not self.ended.called:
            self.signal("KILL")
        return self.ended


class Node(ServerProcess):
    """One C{twistd --pidfile= -n gameproto} process on a free port of 127.0.0.1."""

    def __init__(self, *options: str, twistd_options: tuple[str, ...] = (),
                 cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        argv = [TWISTD, "--pidfile=", "-n", *twistd_options, "gameproto",
                "--port", "tcp:0:interface=127.0.0.1", *options]
        super().__init__(argv, cwd, env)
        self.options = options


async def _value(value: Any) -> Any:
    return value


async def http_json(method: str, url: str, body: Any = None,
                    token: str | None = None) -> tuple[int, Any]:
    """One request with a JSON body; (status, decoded JSON body or None)."""
    from twisted.web.client import FileBodyProducer
    from io import BytesIO

    headers = Headers({b"Content-Type": [b"application/json"]})
    if token is not None:
        headers.addRawHeader(b"Authorization", f"Token {token}".encode())
    producer = None if body is None else FileBodyProducer(BytesIO(wire.encode(body)))
    response = await Agent(reactor).request(method.encode(), url.encode(), headers, producer)
    raw = await readBody(response)
    return response.code, (wire.decode(raw) if raw else None)


def stop_on_cleanup(testcase: Any, node: Node) -> Node:
    """Make sure the node is gone when the test ends, whatever happened."""
    testcase.addCleanup(node.kill)
    return node


class Lines(ProcessProtocol):
    """A child process's stdout, line by line; C{next_line(i)} waits for line C{i}."""

    def __init__(self) -> None:
        self.buffer = b""
        self.err = b""
        self.lines: list[str] = []
        self.waiting: list[Deferred[None]] = []
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.lines.append(line.decode())
            waiting, self.waiting = self.waiting, []
            for d in waiting:
                d.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.errback(AssertionError("client ended: " + self.err.decode()[-2000:]))
        self.ended.callback(None)

    async def next_line(self, index: int) -> str:
        while len(self.lines) <= index:
            if self.ended.called:
                raise AssertionError("client ended: " + self.err.decode()[-2000:])
            d: Deferred[None] = Deferred()
            self.waiting.append(d)
            await d
        return self.lines[index]


class Nginx(OnLoopback):
    """
    A real nginx on a free port of 127.0.0.1 in front of C{nodes}, with a site file
    of C{deploy/nginx/} whose upstream servers and C{listen} line are replaced by
    these ports.  Everything it writes stays in C{directory}.
    """

    def __init__(self, site: Path, nodes: list[ServerProcess], directory: Path) -> None:
        from tests.redisserver import free_port
        from tests.support import require_tool

        self.executable = require_tool("nginx")
        self.port = free_port()
        self.directory = directory
        text = site.read_text()
        upstreams = re.findall(r"^\s*server 127\.0\.0\.1:\d+", text, re.M)
        if len(upstreams) != len(nodes):
            raise AssertionError(f"{site} has {len(upstreams)} upstream servers, not {len(nodes)}")
        for line, node in zip(upstreams, nodes):
            text = text.replace(line, re.sub(r":\d+$", f":{node.port}", line), 1)
        text, listens = re.subn(r"^(\s*)listen 80;", rf"\1listen 127.0.0.1:{self.port};",
                                text, flags=re.M)
        if listens != 1:
            raise AssertionError(f"{site} has no 'listen 80;' line")
        (directory / "site.conf").write_text(text)
        d = directory
        (d / "nginx.conf").write_text(f"""
user root;
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/site.conf;
}}
""")
        self.process = ServerProcess([self.executable, "-p", str(d), "-c", str(d / "nginx.conf")])

    async def start(self) -> None:
        """Start nginx; return once it accepts connections (it logs no "listening")."""
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        from twisted.internet.error import ConnectError
        from twisted.internet.protocol import Protocol

        from tests.support import wait_for

        self.process.env = dict(os.environ)
        self.process.start().addErrback(lambda _: None)  # it never logs "listening on"
        listening: list[bool] = []

        async def knock() -> None:
            if self.process.ended.called:
                raise AssertionError(f"nginx exited: {self.log()}")
            try:
                connected = await connectProtocol(
                    TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), Protocol())
            except ConnectError:
                return
            connected.transport.loseConnection()
            listening.append(True)

        try:
            await wait_for(lambda: bool(listening), 10, action=knock)
        except AssertionError as e:
            raise AssertionError(f"nginx did not listen on {self.port}: {e}: {self.log()}")

    def log(self) -> str:
        path = self.directory / "error.log"
        return self.process.text() + (path.read_text() if path.exists() else "")

    def stop(self) -> Deferred[int | None]:
        """
        nginx's fast stop (SIGTERM: its graceful SIGQUIT waits for every proxied
        WebSocket to end), then its exit code.
        """
        if not self.process.ended.called:
            self.process.process.signalProcess(signal.SIGTERM)
        return self.process.ended


__all__ = ["Lines", "Nginx", "Node", "ServerProcess", "http_json", "stop_on_cleanup"]
