"""twistd gameproto: options, environment fallback, the plugin."""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

import gameproto
from gameproto import tap
from gameproto.server import GameprotoServer, ServerConfig


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        for name in list(os.environ):
            if name.startswith("GAMEPROTO_"):
                self.patch(os, "environ", {k: v for k, v in os.environ.items()
                                           if not k.startswith("GAMEPROTO_")})
                break

    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        """With no flags and no environment the config is ServerConfig's defaults."""
        self.assertEqual(self.parse().config(), ServerConfig())
        self.assertEqual(ServerConfig().port, "tcp:8000:interface=127.0.0.1")
        self.assertEqual(ServerConfig().store, "sqlite:gameproto.sqlite3")

    def test_documented_limits(self) -> None:
        """
        The defaults of docs/operations.md "Limits" and docs/chat.md "The protocol as
        served", as literals: 64 KiB messages, a 5 s handshake, pings every 30 s answered
        within 10 s, 200 messages/s (burst 400), 1000 connections per address; the chat's
        pingInterval 25 s, pingTimeout 20 s, maxPayload 1000000, 1000 packets/s (burst 2000).
        """
        config = self.parse().config()
        self.assertEqual(
            (config.max_message_size, config.open_handshake_timeout, config.auto_ping_interval,
             config.auto_ping_timeout, config.messages_per_second, config.message_burst,
             config.connections_per_address),
            (65536, 5.0, 30.0, 10.0, 200.0, 400, 1000),
        )
        chat = config.chat_engineio
        self.assertEqual(
            (chat.ping_interval, chat.ping_timeout, chat.max_payload, chat.messages_per_second,
             chat.burst),
            (25.0, 20.0, 1_000_000, 1000.0, 2000),
        )

    def test_flags(self) -> None:
        """Every flag reaches the config, coerced to its type."""
        config = self.parse(
            "--port", "tcp:0", "--store", "memory:", "--token-ttl", "3600",
            "--max-message-size", "1000", "--connections-per-address", "7",
            "--rate-limit", "50", "--rate-burst", "60", "--handshake-timeout", "2",
            "--auto-ping-interval", "20", "--auto-ping-timeout", "5",
            "--allowed-origin", "https://a.example", "--allowed-origin", "*",
        ).config()
        self.assertEqual(
            config,
            ServerConfig(
                port="tcp:0", store="memory:", token_ttl=3600.0, max_message_size=1000,
                connections_per_address=7, messages_per_second=50.0, message_burst=60,
                open_handshake_timeout=2.0, auto_ping_interval=20.0, auto_ping_timeout=5.0,
                allowed_origins=("https://a.example", "*"),
            ),
        )

    def test_environment_fallback(self) -> None:
        """GAMEPROTO_* variables set options; a flag beats the environment."""
        self.patch(os, "environ", {
            "GAMEPROTO_PORT": "tcp:9999", "GAMEPROTO_TOKEN_TTL": "60",
            "GAMEPROTO_ALLOWED_ORIGIN": "https://a.example, https://b.example",
            "GAMEPROTO_STORE": "memory:",
        })
        config = self.parse("--store", "sqlite:x.db").config()
        self.assertEqual(config.port, "tcp:9999")
        self.assertEqual(config.token_ttl, 60.0)
        self.assertEqual(config.store, "sqlite:x.db")
        self.assertEqual(config.allowed_origins, ("https://a.example", "https://b.example"))

    def test_match_options(self) -> None:
        """--match-tick and --match-lobby-timeout reach the config, or come from GAMEPROTO_*."""
        config = self.parse("--match-tick", "0.005", "--match-lobby-timeout", "30").config()
        self.assertEqual((config.match_tick, config.match_lobby_timeout), (0.005, 30.0))
        self.assertEqual((ServerConfig().match_tick, ServerConfig().match_lobby_timeout),
                         (0.01, 600.0))
        self.patch(os, "environ", {"GAMEPROTO_MATCH_TICK": "0.02",
                                   "GAMEPROTO_MATCH_LOBBY_TIMEOUT": "60"})
        config = self.parse().config()
        self.assertEqual((config.match_tick, config.match_lobby_timeout), (0.02, 60.0))
        with self.assertRaises(usage.UsageError):
            self.parse("--match-tick", "0")

    def test_bad_environment(self) -> None:
        """A malformed GAMEPROTO_* value is a usage error naming the variable."""
        self.patch(os, "environ", {"GAMEPROTO_RATE_LIMIT": "fast"})
        with self.assertRaises(usage.UsageError) as e:
            tap.Options()
        self.assertIn("GAMEPROTO_RATE_LIMIT", str(e.exception))

    def test_bad_values(self) -> None:
        """
        Non-positive numbers, unknown log formats and access-log policies and bare origins
        are usage errors.
        """
        for argv in [["--rate-limit", "0"], ["--max-message-size", "x"],
                     ["--log-format", "xml"], ["--allowed-origin", "example.org"],
                     ["--access-log", "verbose"], ["--listen-backlog", "0"],
                     ["--redis", "127.0.0.1:6379"], ["--redis", "redis://h:port/0"]]:
            with self.assertRaises(usage.UsageError, msg=argv):
                self.parse(*argv)

    def test_bad_store(self) -> None:
        """An unknown or incomplete --store is a usage error naming the option."""
        for store in ["mongo://x", "sqlite:", "redis://h:x/0", "redis://h/db"]:
            with self.assertRaises(usage.UsageError) as e:
                self.parse("--store", store)
            self.assertIn("--store", str(e.exception))

    def test_chat_options(self) -> None:
        """The chat's Engine.IO timings and payload limit reach its configuration."""
        config = self.parse("--chat-ping-interval", "0.3", "--chat-ping-timeout", "0.2",
                            "--chat-max-payload", "5000", "--chat-connect-timeout", "1").config()
        self.assertEqual(
            (config.chat_engineio.ping_interval, config.chat_engineio.ping_timeout,
             config.chat_engineio.max_payload, config.chat_connect_timeout),
            (0.3, 0.2, 5000, 1.0),
        )
        self.assertEqual(self.parse().config().chat_engineio.ping_interval, 25.0)

    def test_redis_alias(self) -> None:
        """--redis URL selects the Redis store, as --store URL does."""
        self.assertEqual(self.parse("--redis", "redis://10.0.0.5:6380/2").config().store,
                         "redis://10.0.0.5:6380/2")
        self.assertEqual(self.parse("--store", "redis://h/1").config().store, "redis://h/1")

    def test_make_service(self) -> None:
        """makeService builds a GameprotoServer on the given reactor."""
        from twisted.internet.testing import MemoryReactorClock

        reactor = MemoryReactorClock()
        service = tap.makeService(self.parse("--store", "memory:"), reactor=reactor)
        self.assertIsInstance(service, GameprotoServer)
        self.assertIs(service.reactor, reactor)

    def test_json_logs_through_twistd(self) -> None:
        """--log-format json points twistd's --logger at gameproto's observer."""
        config = ServerOptions()
        config.parseOptions(["gameproto", "--log-format", "json"])
        self.assertEqual(config["logger"].__name__, "json_observer")

    def test_json_logs_respect_explicit_logger(self) -> None:
        """A --logger given to twistd is kept."""
        config = ServerOptions()
        config.parseOptions(["--logger", "twisted.logger.textFileLogObserver",
                             "gameproto", "--log-format", "json"])
        self.assertEqual(config["logger"].__name__, "textFileLogObserver")

    def test_version(self) -> None:
        """
        twistd gameproto --version prints gameproto's version, the one of /healthz, with
        Twisted's, and exits 0 (usage.Options' own --version names only Twisted's).
        """
        from io import StringIO

        from twisted import copyright

        out = StringIO()
        self.patch(sys, "stdout", out)
        config = ServerOptions()
        with self.assertRaises(SystemExit) as exited:
            config.parseOptions(["gameproto", "--version"])
        self.assertEqual(exited.exception.code, 0)
        self.assertEqual(out.getvalue(),
                         f"gameproto {gameproto.__version__} (Twisted {copyright.version})\n")


class PluginTests(SynchronousTestCase):
    def test_plugin_found(self) -> None:
        """twistd finds the gameproto service maker with its options."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("gameproto", makers)
        self.assertIs(makers["gameproto"].options, tap.Options)

    def test_plugin_installs_no_reactor(self) -> None:
        """Importing the plugin module installs no reactor and imports no autobahn or txredisapi."""
        code = (
            "import sys, twisted.plugins.gameproto_plugin as p; "
            "bad = [m for m in ('twisted.internet.reactor', 'autobahn', 'txredisapi') "
            "if m in sys.modules]; print(bad)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.stdout.strip(), "[]", out.stderr)


class ArenaOptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(os, "environ", {k: v for k, v in os.environ.items()
                                   if not k.startswith("GAMEPROTO_")})

    def test_arena_defaults(self) -> None:
        """Without flags the default arena has no owner and arenas are reaped after 600 s."""
        options = tap.Options()
        options.parseOptions([])
        config = options.config()
        self.assertEqual((config.arena_owner, config.arena_idle_timeout), (None, 600.0))

    def test_arena_flags_and_environment(self) -> None:
        """--arena-owner and --arena-idle-timeout, with GAMEPROTO_* fallbacks; flags win."""
        options = tap.Options()
        options.parseOptions(["--arena-owner", "ann", "--arena-idle-timeout", "30"])
        config = options.config()
        self.assertEqual((config.arena_owner, config.arena_idle_timeout), ("ann", 30.0))
        self.patch(os, "environ", {"GAMEPROTO_ARENA_OWNER": "bob",
                                   "GAMEPROTO_ARENA_IDLE_TIMEOUT": "5"})
        options = tap.Options()
        options.parseOptions([])
        config = options.config()
        self.assertEqual((config.arena_owner, config.arena_idle_timeout), ("bob", 5.0))
        options = tap.Options()
        options.parseOptions(["--arena-owner", "carl"])
        self.assertEqual(options.config().arena_owner, "carl")

    def test_arena_idle_timeout_positive(self) -> None:
        """A non-positive idle timeout is a usage error."""
        with self.assertRaises(usage.UsageError):
            tap.Options().parseOptions(["--arena-idle-timeout", "0"])

    def test_server_uses_arena_options(self) -> None:
        """makeService hands the options to the arena service."""
        from twisted.internet.task import Clock

        options = tap.Options()
        options.parseOptions(["--store", "memory:", "--arena-owner", "ann",
                              "--arena-idle-timeout", "42"])
        server = tap.makeService(options, reactor=Clock())
        self.assertEqual(server.arenas.default_owner, "ann")
        self.assertEqual(server.arenas.idle_timeout, 42.0)


class ProcessorOptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(os, "environ", {k: v for k, v in os.environ.items()
                                   if not k.startswith("GAMEPROTO_")})

    def config(self, *argv: str) -> ServerConfig:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options.config()

    def test_processor_defaults(self) -> None:
        """Without flags: authenticated users only, /tmp/gameproto-runs, uids 60000-60063, DESIGN.md's limits."""
        from gameproto.processor.sandbox import RunLimits

        config = self.config()
        self.assertFalse(config.processor_anonymous)
        self.assertEqual(config.processor_dir, "/tmp/gameproto-runs")
        self.assertEqual(config.processor_uids, range(60000, 60064))
        self.assertEqual(config.processor_interpreters, ())
        self.assertIsNone(config.processor_max_runs)
        self.assertEqual(config.processor_max_message_size, 1024 * 1024)
        self.assertEqual(config.processor_limits, RunLimits())

    def test_processor_flags(self) -> None:
        """Every processor flag reaches the config; sizes take KiB/MiB units."""
        from gameproto.processor.sandbox import RunLimits

        config = self.config(
            "--processor-anonymous", "--processor-dir", "/srv/runs",
            "--processor-uids", "70000-70009", "--processor-python", "/opt/py/bin/python3",
            "--processor-php", "/usr/local/bin/php", "--processor-max-runs", "3",
            "--processor-time-limit", "2.5", "--processor-session-limit", "60",
            "--processor-cpu-limit", "2", "--processor-memory-limit", "128MiB",
            "--processor-process-limit", "16", "--processor-file-size-limit", "64KiB",
            "--processor-dir-size-limit", "4MiB", "--processor-output-limit", "100000",
            "--processor-code-limit", "10k", "--processor-engine-timeout", "3",
            "--processor-max-message-size", "2MiB",
        )
        self.assertTrue(config.processor_anonymous)
        self.assertEqual(config.processor_dir, "/srv/runs")
        self.assertEqual(config.processor_uids, range(70000, 70010))
        self.assertEqual(config.processor_interpreters,
                         (("python", "/opt/py/bin/python3"), ("php", "/usr/local/bin/php")))
        self.assertEqual(config.processor_max_runs, 3)
        self.assertEqual(config.processor_max_message_size, 2 * 1024 * 1024)
        self.assertEqual(config.processor_limits, RunLimits(
            program_time=2.5, session_time=60.0, cpu_time=2, memory=128 * 1024 * 1024,
            processes=16, file_size=64 * 1024, run_dir_size=4 * 1024 * 1024, output=100000,
            code=10 * 1024, engine_call_timeout=3.0,
        ))

    def test_processor_environment(self) -> None:
        """GAMEPROTO_PROCESSOR_* variables set the options, the flag too; flags win."""
        self.patch(os, "environ", {
            "GAMEPROTO_PROCESSOR_ANONYMOUS": "true",
            "GAMEPROTO_PROCESSOR_DIR": "/srv/env-runs",
            "GAMEPROTO_PROCESSOR_UIDS": "80000-80001",
            "GAMEPROTO_PROCESSOR_RUBY": "/opt/ruby",
            "GAMEPROTO_PROCESSOR_MEMORY_LIMIT": "64MiB",
            "GAMEPROTO_PROCESSOR_TIME_LIMIT": "4",
        })
        config = self.config("--processor-time-limit", "6")
        self.assertTrue(config.processor_anonymous)
        self.assertEqual(config.processor_dir, "/srv/env-runs")
        self.assertEqual(config.processor_uids, range(80000, 80002))
        self.assertEqual(config.processor_interpreters, (("ruby", "/opt/ruby"),))
        self.assertEqual(config.processor_limits.memory, 64 * 1024 * 1024)
        self.assertEqual(config.processor_limits.program_time, 6.0)
        self.patch(os, "environ", {"GAMEPROTO_PROCESSOR_ANONYMOUS": "0"})
        self.assertFalse(self.config().processor_anonymous)

    def test_processor_bad_values(self) -> None:
        """Bad uid ranges, sizes, counts and flag values are usage errors, flags or environment."""
        for argv in (["--processor-uids", "60063-60000"], ["--processor-uids", "abc"],
                     ["--processor-memory-limit", "lots"], ["--processor-memory-limit", "0"],
                     ["--processor-max-runs", "0"], ["--processor-cpu-limit", "1.5"],
                     ["--processor-time-limit", "-1"]):
            with self.assertRaises(usage.UsageError, msg=argv):
                tap.Options().parseOptions(argv)
        for name, value in (("GAMEPROTO_PROCESSOR_ANONYMOUS", "maybe"),
                            ("GAMEPROTO_PROCESSOR_OUTPUT_LIMIT", "1TB")):
            self.patch(os, "environ", {name: value})
            with self.assertRaises(usage.UsageError, msg=name):
                tap.Options()

    def test_server_uses_processor_options(self) -> None:
        """makeService mounts /ws/processor and hands the options to the processor service."""
        from twisted.internet.task import Clock

        options = tap.Options()
        options.parseOptions(["--store", "memory:", "--processor-dir", "/srv/runs",
                              "--processor-max-runs", "5", "--processor-cpu-limit", "3"])
        server = tap.makeService(options, reactor=Clock())
        self.assertEqual(server.processor.config.run_base, "/srv/runs")
        self.assertEqual(server.processor.max_runs, 5)
        self.assertEqual(server.processor.limits.cpu_time, 3)
        self.assertIn(b"processor", server.root.children[b"ws"].children)
