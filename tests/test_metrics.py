"""
The metrics endpoint of a real server (C{--metrics-port}): served on its own port and
nowhere else, in the Prometheus text format, and its counters move when each protocol
is driven over the network.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from gameproto.client import arena as arena_client
from gameproto.client import match as match_client
from gameproto.client import processor as processor_client
from gameproto.client.rest import RestClient
from gameproto.metrics import Metrics
from tests.nodes import Node, stop_on_cleanup
from tests.processor_support import HELLO, require_root, run_uids
from tests.support import wait_for

_METRICS_AT = re.compile(r"metrics on http://[^:]+:(\d+)/metrics")


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    raw = Headers({k: [v] for k, v in (headers or {}).items()})
    response = await Agent(reactor).request(b"GET", url.encode(), raw)
    return response.code, await readBody(response)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class MetricsEndpointTests(TestCase):
    timeout = 120

    def setUp(self) -> Deferred[None]:
        require_root()  # the processor's runs are among what is counted
        runs = tempfile.mkdtemp(prefix="gameproto-metrics-runs-")
        self.addCleanup(shutil.rmtree, runs, True)
        uids = run_uids()
        self.node = stop_on_cleanup(self, Node(
            "--store", "memory:", "--metrics-port", "tcp:0:interface=127.0.0.1",
            "--processor-dir", runs, "--processor-uids", f"{uids[0]}-{uids[-1]}"))
        self.sockets: list[Any] = []
        self.addCleanup(self._drop_sockets)
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        await self.node.start()
        found = _METRICS_AT.search(self.node.text())
        assert found is not None, self.node.text()
        self.metrics_url = f"http://127.0.0.1:{found.group(1)}/metrics"

    def _drop_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    async def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        code, body = await get(self.metrics_url)
        self.assertEqual(code, 200)
        return samples(body)

    def test_counters_move_with_each_protocol(self) -> Deferred[None]:
        async def scenario() -> None:
            before = await self.scrape()
            self.assertEqual(before[("gameproto_games_running", (("game", "match"),))], 0)
            # The public port has no /metrics.
            code, _ = await get(self.node.url("/metrics"))
            self.assertEqual(code, 404)

            api = RestClient(reactor, self.node.http)
            await api.sign_up("ann", "password1")
            token = await api.token("ann", "password1")
            created = await RestClient(reactor, self.node.http, token).create_match()
            host = await match_client.connect(reactor, self.node.ws, token, created["id"], "host")
            self.sockets.append(host)
            await host.next_frame(10)
            host.command("start_match")  # refused: there is no challenger yet
            await host.next_frame(10)
            # A challenger readies and the game starts: the match's loop ticks.
            await api.sign_up("cole", "password1")
            cole = await api.token("cole", "password1")
            challenger = await match_client.connect(reactor, self.node.ws, cole, created["id"],
                                                    "challenger")
            self.sockets.append(challenger)
            challenger.command("ready")
            await host.wait_for(lambda f: f.get("challenger_ready") is True, 10)
            host.command("start_match")
            await host.wait_for_type("status", 10)
            # Past the match's burst of 400 commands: some are dropped, and counted.
            for _ in range(450):
                challenger.command("up")
            await challenger.wait_for(lambda f: f.get("code") == 2 and "rate" in f["error"], 10)
            player = await arena_client.connect(reactor, self.node.ws, "default", "player", token)
            self.sockets.append(player)
            await player.register()
            runner = await processor_client.connect(reactor, self.node.ws, token)
            outcome = await runner.run("python", HELLO["python"])
            self.assertEqual(outcome.close_code, 1000)
            code, _ = await get(self.node.url("/socket.io/?EIO=4&transport=polling"))
            self.assertEqual(code, 200)
            code, _ = await get(self.node.url("/socket.io/?EIO=4&transport=polling"),
                                {"Origin": "http://elsewhere.example"})
            self.assertEqual(code, 403)

            after = await self.scrape()
            open_ = "gameproto_connections_open"
            self.assertEqual(after[(open_, (("protocol", "match"), ("transport", "websocket")))], 2)
            self.assertEqual(after[(open_, (("protocol", "arena"), ("transport", "websocket")))], 1)
            self.assertEqual(after[(open_, (("protocol", "chat"), ("transport", "polling")))], 1)
            self.assertEqual(
                after[(open_, (("protocol", "processor"), ("transport", "websocket")))], 0)
            for protocol in ("match", "arena", "processor"):
                for direction in ("in", "out"):
                    key = ("gameproto_messages_total",
                           (("direction", direction), ("protocol", protocol)))
                    self.assertGreater(after[key], 0, key)
            self.assertGreater(after[("gameproto_message_bytes_total",
                                      (("direction", "out"), ("protocol", "chat")))], 0)
            self.assertEqual(after[("gameproto_websocket_closes_total",
                                    (("code", "1000"), ("protocol", "processor")))], 1)
            self.assertEqual(after[("gameproto_handshake_refusals_total",
                                    (("protocol", "chat"), ("reason", "origin")))], 1)
            self.assertEqual(after[("gameproto_processor_runs_total", (("reason", "exit 0"),))], 1)
            self.assertEqual(after[("gameproto_processor_spawn_seconds_count", ())], 1)
            self.assertEqual(after[("gameproto_http_requests_total", (
                ("method", "POST"), ("route", "/api/users/sign_up"), ("status", "201")))], 2)
            for game in ("arena", "match"):
                self.assertGreater(after[("gameproto_tick_duration_seconds_count",
                                          (("game", game),))], 0, game)
                self.assertGreater(after[("gameproto_tick_lateness_seconds_count",
                                          (("game", game),))], 0, game)
            self.assertEqual(after[("gameproto_games_running", (("game", "match"),))], 1)
            self.assertGreater(after[("gameproto_rate_limited_total",
                                      (("limit", "messages"), ("protocol", "match")))], 0)
            self.assertGreater(after[("gameproto_reactor_delayed_calls", ())], 0)
            self.assertGreater(after[("gameproto_store_operation_duration_seconds_count",
                                      (("backend", "memory"), ("operation", "create_user")))], 0)
            self.assertGreater(after[("process_open_fds", ())], 0)
            for socket in (host, challenger, player):
                socket.close()
            self.assertEqual(await self.node.stop(), 0, self.node.text())

        return ensureDeferred(scenario())


class RedisCommandMetricsTests(TestCase):
    """On Redis, the commands of the node's pool and of the bus are timed as well as the store's."""

    timeout = 60

    def test_node_and_bus_commands_are_timed(self) -> Deferred[None]:
        async def scenario() -> None:
            from tests.redisserver import started_redis

            redis = await started_redis(self)
            node = stop_on_cleanup(self, Node("--redis", redis.url,
                                              "--metrics-port", "tcp:0:interface=127.0.0.1"))
            await node.start()
            found = _METRICS_AT.search(node.text())
            assert found is not None, node.text()
            metrics_url = f"http://127.0.0.1:{found.group(1)}/metrics"

            api = RestClient(reactor, node.http)
            await api.sign_up("ann", "password1")
            token = await api.token("ann", "password1")
            created = await RestClient(reactor, node.http, token).create_match()
            host = await match_client.connect(reactor, node.ws, token, created["id"], "host")
            await host.next_frame(10)

            counts: dict[str, dict[str, float]] = {}

            async def scrape() -> None:
                code, body = await get(metrics_url)
                self.assertEqual(code, 200)
                counts.clear()
                for (name, labels), value in samples(body).items():
                    if name == "gameproto_store_operation_duration_seconds_count":
                        label = dict(labels)
                        counts.setdefault(label["backend"], {})[label["operation"]] = value

            # A command is counted once its reply is in: the lobby frame's publication
            # may still be on its way when the frame has arrived.
            await wait_for(lambda: sum(counts.get("redis-bus", {}).values()) > 0, 10,
                           action=scrape)
            # The store's calls by method; the node's and the bus's by Redis command.
            self.assertGreater(counts["redis"]["create_user"], 0)
            self.assertGreater(counts["redis-node"]["SET"], 0)  # the heartbeat, at least
            self.assertGreater(sum(counts["redis-node"].values()), counts["redis-node"]["SET"])
            self.assertGreater(sum(counts["redis-bus"].values()), 0, counts)
            self.assertTrue(all(op.isupper() for op in counts["redis-node"]), counts)
            host.dropConnection(abort=True)
            self.assertEqual(await node.stop(), 0, node.text())

        return ensureDeferred(scenario())


class RequestMetricsTests(SynchronousTestCase):
    """L{Metrics.request_answered}: what a request adds to the HTTP series."""

    def sample(self, metrics: Metrics, name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    def test_counted_with_duration(self) -> None:
        metrics = Metrics(process=False)
        for _ in range(3):
            metrics.request_answered("GET", "/healthz", 200, 0.002)
        metrics.request_answered("GET", "/healthz", 503, None)
        self.assertEqual(self.sample(metrics, "gameproto_http_requests_total",
                                     method="GET", route="/healthz", status="200"), 3)
        self.assertEqual(self.sample(metrics, "gameproto_http_requests_total",
                                     method="GET", route="/healthz", status="503"), 1)
        self.assertEqual(self.sample(metrics, "gameproto_http_request_duration_seconds_count",
                                     method="GET", route="/healthz"), 3)

    def test_unknown_methods_are_other(self) -> None:
        """A client's own methods share one series: their names would grow the registry."""
        metrics = Metrics(process=False)
        for name in ("FOO", "BAR", "get", "X" * 100):
            metrics.request_answered(name, "/healthz", 405, 0.001)
        self.assertEqual(self.sample(metrics, "gameproto_http_requests_total",
                                     method="other", route="/healthz", status="405"), 4)
        self.assertIsNone(self.sample(metrics, "gameproto_http_requests_total",
                                      method="FOO", route="/healthz", status="405"))
