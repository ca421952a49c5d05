"""
What a running server counts, for Prometheus (C{--metrics-port}, see
docs/operations.md for every metric and what to alert on).

Two kinds of figures, for speed:

- Figures touched for every message (connections, messages and bytes in and out)
  are plain integers on small objects (L{Traffic}, L{OpenConnections}) that the hot
  paths bump with one addition; a collector turns them into metric families when
  Prometheus scrapes.  A C{prometheus_client} counter takes a lock on every
  increment, which a fan-out of hundreds of thousands of frames a second would feel.
- Everything rarer (closes, refusals, ticks, runs, HTTP requests, store calls) uses
  C{prometheus_client}'s own counters and histograms.

Each server has its own L{Metrics} and registry (several servers may share a
process: an embedding application, or tests); nothing is global.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.process_collector import ProcessCollector
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource

#: Tick durations and lateness: a match ticks every 10 ms, an arena every 20 ms.
TICK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
#: HTTP and store latencies.
# The methods counted by name; any other a client sends is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: A processor run's start-up: a launcher, bubblewrap, the interpreter.
SPAWN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Traffic:
    """The messages and bytes of one protocol, both ways; bumped by the hot paths."""

    __slots__ = ("messages_in", "bytes_in", "messages_out", "bytes_out")

    def __init__(self) -> None:
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0

    def received(self, size: int) -> None:
        self.messages_in += 1
        self.bytes_in += size

    def received_batch(self, messages: int, size: int) -> None:
        """C{messages} in one body of C{size} bytes (an Engine.IO polling POST)."""
        self.messages_in += messages
        self.bytes_in += size

    def sent_batch(self, messages: int, size: int) -> None:
        """C{messages} in one body of C{size} bytes (an Engine.IO polling answer)."""
        self.messages_out += messages
        self.bytes_out += size

    def sent(self, size: int, copies: int = 1) -> None:
        """C{copies} messages of C{size} bytes (a frame broadcast to several sockets)."""
        self.messages_out += copies
        self.bytes_out += size * copies


class Metrics:
    """Every figure of one server, and the registry Prometheus reads them from."""

    def __init__(self, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._traffic: dict[str, Traffic] = {}
        self._open: dict[tuple[str, str], int] = {}
        self._gauges: list[tuple[str, str, tuple[str, ...], Callable[[], dict[tuple[str, ...], float]]]] = []
        r.register(_Collector(self))
        if process:
            ProcessCollector(registry=r)

        self.closes = Counter(
            "gameproto_websocket_closes", "WebSocket connections closed, by close code.",
            ["protocol", "code"], registry=r)
        self.refusals = Counter(
            "gameproto_handshake_refusals",
            "Connections refused before or at the handshake, by reason.",
            ["protocol", "reason"], registry=r)
        self.rate_limited = Counter(
            "gameproto_rate_limited",
            "Messages or requests dropped or refused by a rate limit.",
            ["protocol", "limit"], registry=r)
        self.tick_duration = Histogram(
            "gameproto_tick_duration_seconds", "Time spent computing one game tick.",
            ["game"], buckets=TICK_BUCKETS, registry=r)
        self.tick_lateness = Histogram(
            "gameproto_tick_lateness_seconds", "How late a game tick ran after its due time.",
            ["game"], buckets=TICK_BUCKETS, registry=r)
        self.runs = Counter(
            "gameproto_processor_runs", "Processor runs ended, by how they ended.",
            ["reason"], registry=r)
        self.spawn_latency = Histogram(
            "gameproto_processor_spawn_seconds",
            "From a run's code received to its program started.",
            buckets=SPAWN_BUCKETS, registry=r)
        self.http_requests = Counter(
            "gameproto_http_requests", "HTTP requests answered, by route and status.",
            ["method", "route", "status"], registry=r)
        self.http_latency = Histogram(
            "gameproto_http_request_duration_seconds", "HTTP request durations, by route.",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.store_latency = Histogram(
            "gameproto_store_operation_duration_seconds",
            "Store and Redis operations' durations, by operation.",
            ["backend", "operation"], buckets=LATENCY_BUCKETS, registry=r)
        self.store_errors = Counter(
            "gameproto_store_operation_errors",
            "Store and Redis operations that failed, by operation.",
            ["backend", "operation"], registry=r)
        # The children of http_requests and http_latency by their labels: labels() costs as
        # much as the rest of counting a request, and a polling client makes many.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.bus_reconnects = Counter(
            "gameproto_bus_reconnects", "Times the publish/subscribe bus connected again.",
            registry=r)

    # -- plain figures, read at scrape time ------------------------------------


    def request_answered(self, method: str, route: str, status: int,
                         seconds: float | None) -> None:
        """
        Count an HTTP request and its duration.  A method outside HTTP's usual ones is
        counted as C{other}: the client chooses it, and each label value is a series kept
        for the process's life.
        """
        if method not in HTTP_METHODS:
            method = "other"
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.http_requests.labels(method, route, str(status)),
                        self.http_latency.labels(method, route))
            self._request_children[key] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)
    def traffic(self, protocol: str) -> Traffic:
        """The L{Traffic} of C{protocol} (one object per protocol: keep it)."""
        traffic = self._traffic.get(protocol)
        if traffic is None:
            traffic = self._traffic[protocol] = Traffic()
        return traffic

    def opened(self, protocol: str, transport: str) -> None:
        key = (protocol, transport)
        self._open[key] = self._open.get(key, 0) + 1

    def closed(self, protocol: str, transport: str) -> None:
        key = (protocol, transport)
        self._open[key] = self._open.get(key, 0) - 1

    def gauge(self, name: str, documentation: str, labels: tuple[str, ...],
              read: Callable[[], dict[tuple[str, ...], float]]) -> None:
        """A gauge read when scraped: C{read()} maps label values to the figure."""
        self._gauges.append((name, documentation, labels, read))

    # -- helpers --------------------------------------------------------------

    def timed(self, histogram: Any, errors: Any, d: Deferred[Any]) -> Deferred[Any]:
        """Observe how long C{d} takes in C{histogram}; count it in C{errors} if it fails."""
        began = time.perf_counter()

        def done(result: Any) -> Any:
            histogram.observe(time.perf_counter() - began)
            return result

        def failed(failure: Any) -> Any:
            errors.inc()
            return failure

        return d.addCallbacks(done, failed)

    def redis_commands(self, pool: str) -> Callable[[str, Deferred[Any]], Deferred[Any]]:
        """
        What times the commands of the Redis pool named C{pool} (backend
        C{redis-<pool>}, operation the command's name) in the store histogram.
        """
        backend = f"redis-{pool}"

        def observe(command: str, d: Deferred[Any]) -> Deferred[Any]:
            return self.timed(self.store_latency.labels(backend, command),
                              self.store_errors.labels(backend, command), d)

        return observe

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    """The plain figures of L{Metrics} as metric families, when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        open_ = GaugeMetricFamily("gameproto_connections_open",
                                  "Open connections, by protocol and transport.",
                                  labels=["protocol", "transport"])
        for (protocol, transport), count in sorted(m._open.items()):
            open_.add_metric([protocol, transport], count)
        yield open_
        messages = CounterMetricFamily("gameproto_messages", "Messages, by protocol and direction.",
                                       labels=["protocol", "direction"])
        sizes = CounterMetricFamily("gameproto_message_bytes",
                                    "Message payload bytes, by protocol and direction.",
                                    labels=["protocol", "direction"])
        for protocol, traffic in sorted(m._traffic.items()):
            messages.add_metric([protocol, "in"], traffic.messages_in)
            messages.add_metric([protocol, "out"], traffic.messages_out)
            sizes.add_metric([protocol, "in"], traffic.bytes_in)
            sizes.add_metric([protocol, "out"], traffic.bytes_out)
        yield messages
        yield sizes
        for name, documentation, labels, read in m._gauges:
            family = GaugeMetricFamily(name, documentation, labels=list(labels))
            for values, figure in sorted(read().items()):
                family.add_metric(list(values), figure)
            yield family


class MetricsResource(Resource):
    """C{GET /metrics}: the Prometheus text format, rendered in the reactor's thread."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Any) -> bytes:
        request.setHeader("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        return self.metrics.exposition()


def metrics_site(metrics: Metrics, reactor: Any) -> Any:
    """The metrics endpoint's own site: C{/metrics}, and a 404 for everything else."""
    from gameproto import web

    root = web.Tree()
    root.putChild(b"metrics", MetricsResource(metrics))
    return web.make_site(root, reactor, access_log="off")
