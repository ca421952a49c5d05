"""
The listening port's backlog: C{--listen-backlog} and the strports descriptions it is
added to (gameproto.listening).
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import tap
from gameproto.listening import DEFAULT_BACKLOG, with_backlog
from gameproto.server import GameprotoServer, ServerConfig


class WithBacklogTests(SynchronousTestCase):
    def test_added_to_tcp_ssl_and_unix(self) -> None:
        self.assertEqual(with_backlog("tcp:8000:interface=127.0.0.1", 511),
                         "tcp:8000:interface=127.0.0.1:backlog=511")
        self.assertEqual(with_backlog("tcp6:8000", 100), "tcp6:8000:backlog=100")
        self.assertEqual(with_backlog("ssl:8443:privateKey=k.pem", 7),
                         "ssl:8443:privateKey=k.pem:backlog=7")
        self.assertEqual(with_backlog("unix:/run/gameproto.sock", 9),
                         "unix:/run/gameproto.sock:backlog=9")
        self.assertEqual(with_backlog("TCP:80"), f"TCP:80:backlog={DEFAULT_BACKLOG}")

    def test_a_backlog_of_the_descriptions_own_is_kept(self) -> None:
        self.assertEqual(with_backlog("tcp:8000:backlog=20", 511), "tcp:8000:backlog=20")
        self.assertEqual(with_backlog("tcp:8000:backlog=20:interface=::1", 511),
                         "tcp:8000:backlog=20:interface=::1")

    def test_other_endpoint_types_are_left_alone(self) -> None:
        """An endpoint plugin's arguments are its own: C{backlog} may mean nothing to it."""
        self.assertEqual(with_backlog("systemd:domain=INET:index=0", 511),
                         "systemd:domain=INET:index=0")

    def test_an_escaped_colon_is_not_an_argument(self) -> None:
        """C{\\:backlog=} is part of a path, not a backlog."""
        self.assertEqual(with_backlog(r"unix:/tmp/a\:backlog=3", 511),
                         r"unix:/tmp/a\:backlog=3:backlog=511")


class ServerListensWithBacklogTests(SynchronousTestCase):
    def listened(self, config: ServerConfig) -> tuple:
        reactor = MemoryReactorClock()
        server = GameprotoServer(config, reactor=reactor)
        server.startService()
        self.addCleanup(server.stopService)
        [listening] = reactor.tcpServers
        return listening

    def test_default(self) -> None:
        """The public port listens with a backlog of 511 unless told otherwise."""
        port, _factory, backlog, interface = self.listened(
            ServerConfig(port="tcp:8123:interface=127.0.0.1", store="memory:"))
        self.assertEqual((port, backlog, interface), (8123, 511, "127.0.0.1"))

    def test_option(self) -> None:
        options = tap.Options()
        options.parseOptions(["--port", "tcp:8124", "--store", "memory:",
                              "--listen-backlog", "2048"])
        self.assertEqual(self.listened(options.config())[2], 2048)

    def test_description_wins(self) -> None:
        options = tap.Options()
        options.parseOptions(["--port", "tcp:8125:backlog=64", "--store", "memory:",
                              "--listen-backlog", "2048"])
        self.assertEqual(self.listened(options.config())[2], 64)
