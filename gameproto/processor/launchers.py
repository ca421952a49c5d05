"""
Starting launchers, and keeping one started ahead of its run.

A launcher is a Python process: its start-up (the interpreter and its imports) is most of
the time between a client's code and its program's first line.  So L{Launchers} keeps a
spare launcher started, blocked on its request: a run takes it, and the next spare starts
while the run goes on.  A run that finds no spare (a burst) starts one of its own.

Because a spare starts before its run uid is chosen, the uid's lock (an flock'd file, see
L{gameproto.processor.uids}) reaches the launcher with the request, over a Unix socket on
fd 7 (C{SCM_RIGHTS}): the launcher then holds the claim until its run's last process is
gone, even if the server dies first.
"""

from __future__ import annotations

import array
import socket
from collections.abc import Mapping

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameproto.processor.launcher.launch_request import CONTROL_FD

_log = Logger(namespace="gameproto.processor.launchers")

#: The launcher's descriptors: 0 request in, 1/2 program output, 3 engine requests, 4
#: engine replies, 5 launcher status.  Twisted's "r" means the server reads.
LAUNCHER_CHILD_FDS: Mapping[int, str] = {0: "w", 1: "r", 2: "r", 3: "r", 4: "w", 5: "r"}


class _Launcher(ProcessProtocol):
    """
    A started launcher, and the protocol of the run it serves once attached: every event
    of the process goes to that protocol (before it, the launcher says nothing, unless it
    dies).
    """

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.protocol: ProcessProtocol | None = None
        self.ended = False
        self._waiting: list[Deferred[None]] = []

    def when_ended(self) -> Deferred[None]:
        if self.ended:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._waiting.append(waiting)
        return waiting

    def attach(self, protocol: ProcessProtocol, lock_fd: int | None) -> IProcessTransport:
        """Serve C{protocol}; raises OSError if the launcher is gone (nothing attached)."""
        if lock_fd is not None:
            rights = array.array("i", [lock_fd])
            self.control.sendmsg([b"L"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        self.control.close()
        self.protocol = protocol
        protocol.makeConnection(self.transport)
        return self.transport  # type: ignore[return-value]

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if self.protocol is not None:
            self.protocol.childDataReceived(childFD, data)

    def childConnectionLost(self, childFD: int) -> None:
        if self.protocol is not None:
            self.protocol.childConnectionLost(childFD)

    def processExited(self, reason: Failure) -> None:
        if self.protocol is not None:
            self.protocol.processExited(reason)

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        if self.protocol is not None:
            self.protocol.processEnded(reason)
        else:
            self.control.close()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)


class Launchers:
    """
    Starts launchers (C{argv}, C{env}) on C{reactor}, keeping C{spares} of them started
    ahead of their runs.
    """

    def __init__(
        self, reactor: IReactorProcess, argv: list[str], env: dict[str, str], spares: int = 0
    ) -> None:
        self._reactor = reactor
        self._argv = argv
        self._env = env
        self._spares = spares
        self._ready: list[_Launcher] = []
        self._stopped = False

    def start(self, protocol: ProcessProtocol, lock_fd: int | None) -> IProcessTransport:
        """
        A launcher serving C{protocol} (its transport is also C{protocol.transport}), with
        the run uid's lock C{lock_fd} handed to it; a spare if one is ready.  Raises what
        C{spawnProcess} raises.
        """
        while self._ready:
            spare = self._ready.pop(0)
            if spare.ended:
                continue
            try:
                transport = spare.attach(protocol, lock_fd)
            except OSError:
                continue  # it died a moment ago: its end is on its way
            self.replenish()
            return transport
        transport = self._spawn().attach(protocol, lock_fd)
        self.replenish()
        return transport

    def replenish(self) -> None:
        """Start spares until C{spares} are ready (a failure is logged; runs start cold)."""
        while not self._stopped and len(self._ready) < self._spares:
            try:
                self._ready.append(self._spawn())
            except Exception:
                _log.failure("cannot start a spare processor launcher")
                return

    def stop(self) -> Deferred[None]:
        """End the spares (each reads the end of its request and exits); fires when gone."""
        self._stopped = True
        spares, self._ready = self._ready, []
        for launcher in spares:
            if not launcher.ended:
                launcher.transport.closeChildFD(0)  # type: ignore[union-attr]
            launcher.control.close()
        return gatherResults([launcher.when_ended() for launcher in spares]).addCallback(
            lambda _: None
        )

    def _spawn(self) -> _Launcher:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        launcher = _Launcher(ours)
        try:
            self._reactor.spawnProcess(
                launcher,
                self._argv[0],
                self._argv,
                env=self._env,
                path="/",
                childFDs={**LAUNCHER_CHILD_FDS, CONTROL_FD: theirs.fileno()},
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return launcher


__all__ = ["LAUNCHER_CHILD_FDS", "Launchers"]
