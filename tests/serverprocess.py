"""
A real C{twistd --pidfile= -n gameproto} process for end-to-end tests and benchmarks:
started on port 0, its port read from the "listening on HOST:PORT" log line, stopped
with SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred

_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


def twistd_path() -> str:
    """The twistd script of the running Python (next to sys.executable)."""
    return os.path.join(os.path.dirname(sys.executable), "twistd")


class ServerProcess(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.port: int | None = None
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[int | None] = Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if self.port is None:
            found = _LISTENING.search(self.output)
            if found:
                self.port = int(found.group(1))
                self.listening.callback(self.port)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        if not self.listening.called:
            self.listening.errback(
                RuntimeError("the server exited before listening:\n" + self.output.decode("utf-8", "replace"))
            )
        self.ended.callback(self.exit_code)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> Deferred[int | None]:
        """SIGTERM, then the exit code once the process is gone."""
        if not self.ended.called:
            try:
                self.transport.signalProcess("TERM")
            except Exception:  # already exited
                pass
        return self.ended

    def log(self) -> str:
        return self.output.decode("utf-8", "replace")


def start_server(reactor: Any, store_path: str, *options: str, cwd: str | None = None) -> ServerProcess:
    """Spawn the server; await C{.listening} for its port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEPROTO_")}
    args = [
        twistd_path(),
        "--pidfile=",
        "-n",
        "gameproto",
        "--port",
        "tcp:0:interface=127.0.0.1",
        "--store",
        f"sqlite:{store_path}",
        *options,
    ]
    server = ServerProcess()
    reactor.spawnProcess(server, args[0], args, env=env, path=cwd)
    return server


__all__ = ["ServerProcess", "start_server", "twistd_path", "signal"]
