"""
C{twistd gameproto}: L{makeService} turns the parsed L{Options} (gameproto.options)
into the server.  twistd finds both here, through the plugin's C{ServiceMaker}.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.application.service import IService

from gameproto.options import Options
from gameproto.server import GameprotoServer

__all__ = ["Options", "makeService"]


def makeService(options: Options, reactor: Any = None) -> IService:
    """The server C{options} describe, on C{reactor} (the global one, under twistd)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
        reactor.callWhenRunning(_stop_cleanly_on_sigterm, reactor)
    return GameprotoServer(options.config(), reactor)


def _stop_cleanly_on_sigterm(reactor: Any) -> None:
    """
    SIGTERM is how operators ask for a graceful stop, so its end is a success:
    exit status 0.  Twisted's own handler makes the process re-raise SIGTERM on
    itself after the reactor stops, which reports "killed by SIGTERM" to systemd,
    shells and supervisors.  Replaced once the reactor has installed its handlers.
    """

    def stop_once() -> None:
        if not stopping:
            stopping.append(True)
            reactor.stop()

    def stop(signum: int, frame: Any) -> None:
        reactor.callFromThread(stop_once)

    stopping: list[bool] = []

    signal.signal(signal.SIGTERM, stop)
