"""
End to end: real C{twistd -n gameproto} processes and real clients over TCP.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.twisted.resource import WebSocketResource
from twisted.internet import endpoints, reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from gameproto import web, wire
from gameproto.server import GameprotoServer, ServerConfig
from tests.echo import Echo
from tests.nodes import Lines, Node, http_json, stop_on_cleanup
from tests.support import wait_for, wall_clock_ceiling, within


class RestartTests(TestCase):
    timeout = 120

    def test_data_survives_sigterm_and_restart(self) -> Deferred[None]:
        """
        Sign up and get a token on a node with a temporary sqlite store, stop it with
        SIGTERM (exit status 0), start another on the same file: the password and the
        token still work.
        """
        store = "sqlite:" + self.mktemp() + ".sqlite3"

        async def scenario() -> None:
            node = stop_on_cleanup(self, Node("--store", store))
            await node.start()
            status, health = await http_json("GET", node.url("/healthz"))
            self.assertEqual((status, health["status"], health["store"]), (200, "ok", store))
            status, _ = await http_json("POST", node.url("/api/users/sign_up/"),
                                        {"username": "ann", "password": "password1"})
            self.assertEqual(status, 201)
            status, body = await http_json("POST", node.url("/api/token/"),
                                           {"username": "ann", "password": "password1"})
            self.assertEqual(status, 200)
            old_token = body["token"]
            self.assertEqual(await node.stop(), 0, node.text())
            self.assertIn("gameproto stopped", node.text())

            again = stop_on_cleanup(self, Node("--store", store))
            await again.start()
            status, body = await http_json("POST", again.url("/api/token/"),
                                           {"username": "ann", "password": "password1"})
            self.assertEqual(status, 200, body)
            status, user = await http_json("GET", again.url("/api/users/ann/"), token=old_token)
            self.assertEqual((status, user["username"], user["elo"]), (200, "ann", 1000))
            self.assertEqual(await again.stop(), 0, again.text())

        return ensureDeferred(scenario())

    def test_asyncio_reactor(self) -> Deferred[None]:
        """twistd --reactor=asyncio runs gameproto (the plugin installs no reactor)."""

        async def scenario() -> None:
            node = stop_on_cleanup(
                self, Node("--store", "memory:", twistd_options=("--reactor=asyncio",))
            )
            await node.start()
            status, _ = await http_json("GET", node.url("/healthz"))
            self.assertEqual(status, 200)
            self.assertIn("AsyncioSelectorReactor", node.text())
            self.assertEqual(await node.stop(), 0, node.text())

        return ensureDeferred(scenario())

    def test_json_logs(self) -> Deferred[None]:
        """
        --log-format json writes one JSON object per line, the access log included, with
        its fields (the route, never the query string).
        """

        async def scenario() -> None:
            node = stop_on_cleanup(self, Node("--store", "memory:", "--log-format", "json"))
            await node.start()
            await http_json("POST", node.url("/api/users/sign_up/"),
                            {"username": "ann", "password": "password1"})
            _, token = await http_json("POST", node.url("/api/token/"),
                                       {"username": "ann", "password": "password1"})
            await http_json("POST", node.url("/api/ongoing_matches/"), {}, token=token["token"])
            await http_json("GET", node.url("/api/ongoing_matches/1/?secret=1"))
            await http_json("GET", node.url("/no/such/thing"))
            self.assertEqual(await node.stop(), 0, node.text())
            lines = [line for line in node.text().splitlines() if line.strip()]
            records = [wire.decode(line) for line in lines]
            self.assertTrue(any("listening on" in r["text"] for r in records))
            self.assertTrue(all({"time", "level", "namespace", "text"} <= set(r) for r in records))
            access = [{k: r[k] for k in ("method", "path", "route", "status", "user", "client")}
                      for r in records if r["namespace"] == "gameproto.access"]
            self.assertEqual(access, [
                {"method": "POST", "path": "/api/users/sign_up/", "route": "/api/users/sign_up",
                 "status": 201, "user": None, "client": "127.0.0.1"},
                {"method": "POST", "path": "/api/token/", "route": "/api/token",
                 "status": 200, "user": None, "client": "127.0.0.1"},
                {"method": "POST", "path": "/api/ongoing_matches/",
                 "route": "/api/ongoing_matches", "status": 201, "user": "ann",
                 "client": "127.0.0.1"},
                {"method": "GET", "path": "/api/ongoing_matches/1/",
                 "route": "/api/ongoing_matches/{match_id}", "status": 401, "user": None,
                 "client": "127.0.0.1"},
                {"method": "GET", "path": "/no/such/thing", "route": "(not found)",
                 "status": 404, "user": None, "client": "127.0.0.1"},
            ])
            for record in records:
                if record["namespace"] == "gameproto.access":
                    self.assertIsInstance(record["bytes"], int)
                    self.assertGreaterEqual(record["duration_ms"], 0)

        return ensureDeferred(scenario())

    def polled_access_log(self, *options: str) -> Deferred[list[tuple[str, str, int]]]:
        """
        Open an Engine.IO session over polling, connect Socket.IO, read the answer and poll
        an unknown session; the access log's (method, query-less path, status) records.
        """
        from io import BytesIO

        from twisted.web.client import Agent, FileBodyProducer, readBody

        async def scenario() -> list[tuple[str, str, int]]:
            node = stop_on_cleanup(self, Node("--store", "memory:", "--log-format", "json",
                                              *options))
            await node.start()
            agent = Agent(reactor)
            base = node.url("/socket.io/?EIO=4&transport=polling")
            response = await agent.request(b"GET", base.encode())
            sid = wire.decode((await readBody(response))[1:])["sid"]
            polled = f"{base}&sid={sid}".encode()
            response = await agent.request(b"POST", polled, None,
                                           FileBodyProducer(BytesIO(b"40")))
            self.assertEqual(await readBody(response), b"ok")
            response = await agent.request(b"GET", polled)
            self.assertTrue((await readBody(response)).startswith(b"40"))
            response = await agent.request(b"GET", f"{base}&sid=nosuchsession".encode())
            self.assertEqual(response.code, 400)
            await readBody(response)
            self.assertEqual(await node.stop(), 0, node.text())
            records = [wire.decode(line) for line in node.text().splitlines() if line.strip()]
            return [(r["method"], r["path"], r["status"]) for r in records
                    if r["namespace"] == "gameproto.access"]

        return ensureDeferred(scenario())

    def test_access_log_leaves_out_polls(self) -> Deferred[None]:
        """
        By default an Engine.IO session's answered polls are not in the access log (a
        transport's traffic, like a WebSocket's frames); its handshake and a refused poll
        are.  C{--access-log all} logs them too, C{--access-log off} nothing.
        """
        handshake = ("GET", "/socket.io/", 200)
        refused = ("GET", "/socket.io/", 400)

        async def scenario() -> None:
            self.assertEqual(await self.polled_access_log(), [handshake, refused])
            self.assertEqual(await self.polled_access_log("--access-log", "all"), [
                handshake, ("POST", "/socket.io/", 200), ("GET", "/socket.io/", 200), refused])
            self.assertEqual(await self.polled_access_log("--access-log", "off"), [])

        return ensureDeferred(scenario())

    def test_chat_served_with_its_options(self) -> Deferred[None]:
        """The chat answers an Engine.IO handshake at /socket.io/ with the configured timings."""
        from twisted.web.client import Agent, readBody

        async def scenario() -> None:
            node = stop_on_cleanup(self, Node("--store", "memory:", "--chat-ping-interval", "0.3",
                                              "--chat-ping-timeout", "0.2",
                                              "--chat-max-payload", "5000"))
            await node.start()
            response = await Agent(reactor).request(
                b"GET", node.url("/socket.io/?EIO=4&transport=polling").encode())
            body = await readBody(response)
            self.assertEqual(response.code, 200)
            self.assertTrue(body.startswith(b"0"), body)
            handshake = wire.decode(body[1:])
            self.assertEqual(
                (handshake["pingInterval"], handshake["pingTimeout"], handshake["maxPayload"]),
                (300, 200, 5000),
            )
            self.assertEqual(await node.stop(), 0, node.text())

        return ensureDeferred(scenario())

    def test_bad_option_exits_non_zero(self) -> Deferred[None]:
        """An unknown store is reported as a usage error, without a traceback."""

        async def scenario() -> None:
            node = Node("--store", "mongo://nowhere")
            node.start().addErrback(lambda _: None)
            code = await node.ended
            self.assertNotEqual(code, 0)
            self.assertIn("unknown store", node.text())
            self.assertNotIn("Traceback", node.text())

        return ensureDeferred(scenario())


class Client(WebSocketClientProtocol):
    """Collects what a real Autobahn client receives."""

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.messages.append(wire.decode(payload))
        waiting, self.factory.next_message = self.factory.next_message, Deferred()
        waiting.callback(self.factory.messages[-1])

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.closed.called:
            self.factory.closed.callback((code, reason))


async def connect(url: str) -> Any:
    factory = WebSocketClientFactory(url)
    factory.protocol = Client
    factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
    factory.opened, factory.closed, factory.next_message = Deferred(), Deferred(), Deferred()
    factory.messages = []
    port = int(url.split(":")[2].split("/")[0])
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoint.connect(factory)
    proto = await factory.opened
    return proto


class WebSocketOverTCPTests(TestCase):
    """A server in this process, listening on a real port, with a test endpoint mounted."""

    timeout = 60

    def setUp(self) -> Deferred[None]:
        self.server = GameprotoServer(ServerConfig(port="tcp:0:interface=127.0.0.1",
                                                   store="memory:"), reactor)
        factory = wire.make_factory(Echo, wire.EndpointLimits(max_message_size=1024 * 1024),
                                    self.server.context)
        web.mount(self.server.root, "/ws/echo", WebSocketResource(factory))
        self.server.startService()
        self.addCleanup(lambda: self.server.running and self.server.stopService())
        return self.server.whenStarted()

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port.getHost().port}/ws/echo"

    def test_two_mebibytes_closes_1009(self) -> Deferred[None]:
        """A 2 MiB message gets close 1009 with a reason; another client is still served."""

        async def scenario() -> None:
            bystander = await connect(self.url())
            self.assertEqual(await bystander.factory.next_message, {"hello": None})
            big = await connect(self.url())
            await big.factory.next_message  # hello
            big.sendMessage(b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}')
            code, reason = await big.factory.closed
            self.assertEqual(code, 1009)
            self.assertIn("exceeds payload limit", reason)
            waiting = bystander.factory.next_message
            bystander.sendMessage(b'{"still": "served"}')
            self.assertEqual(await waiting, {"still": "served"})
            bystander.sendClose()
            await bystander.factory.closed

        return ensureDeferred(scenario())

    def test_shutdown_closes_open_websockets_4012(self) -> Deferred[None]:
        """Stopping the server closes an open WebSocket with 4012 and a reason."""

        async def scenario() -> None:
            client = await connect(self.url())
            await self.server.stopService()
            code, reason = await client.factory.closed
            self.assertEqual((code, reason), (4012, "server shutting down"))

        return ensureDeferred(scenario())

    def test_plain_get_does_not_redirect(self) -> Deferred[None]:
        """GET /ws/echo?redirect=https://example.org answers without a redirect."""
        from twisted.web.client import Agent, PartialDownloadError, readBody

        async def scenario() -> None:
            url = self.url().replace("ws://", "http://") + "?redirect=https://example.org"
            response = await Agent(reactor).request(b"GET", url.encode())
            try:
                body = await readBody(response)
            except PartialDownloadError as e:  # the 426 body has no length
                body = e.response
            self.assertNotIn(response.code, (301, 302, 303, 307, 308))
            self.assertFalse(response.headers.hasHeader(b"location"))
            self.assertNotIn(b"example.org", body)

        return ensureDeferred(scenario())


class RedisNodesTests(TestCase):
    """Two real nodes sharing one real redis-server (on a port of its own)."""

    timeout = 120

    def test_two_nodes_one_server(self) -> Deferred[None]:
        """A user signed up on node A logs in on node B; both report healthy with the Redis bus."""
        from tests.redisserver import started_redis

        async def scenario() -> None:
            redis = await started_redis(self)
            a = stop_on_cleanup(self, Node("--redis", redis.url))
            b = stop_on_cleanup(self, Node("--store", redis.url))
            await a.start()
            await b.start()
            status, _ = await http_json("POST", a.url("/api/users/sign_up/"),
                                        {"username": "ann", "password": "password1"})
            self.assertEqual(status, 201)
            status, body = await http_json("POST", b.url("/api/token/"),
                                           {"username": "ANN", "password": "password1"})
            self.assertEqual(status, 200, body)
            status, user = await http_json("GET", a.url("/api/users/ann/"), token=body["token"])
            self.assertEqual((status, user["username"]), (200, "ann"))
            for node in (a, b):
                status, health = await http_json("GET", node.url("/healthz"))
                self.assertEqual((status, health["status"], health["bus"]),
                                 (200, "ok", redis.url))
            self.assertEqual(await a.stop(), 0, a.text())
            self.assertEqual(await b.stop(), 0, b.text())

        return ensureDeferred(scenario())

    def test_redis_outage_and_recovery(self) -> Deferred[None]:
        """
        With Redis down, REST answers 503 JSON and /healthz 503 "degraded", each
        within 2 s; once Redis is back both recover without a restart within 3 s.
        """
        from tests.redisserver import started_redis

        async def scenario() -> None:
            redis = await started_redis(self)
            node = stop_on_cleanup(self, Node("--redis", redis.url))
            await node.start()
            status, _ = await http_json("POST", node.url("/api/users/sign_up/"),
                                        {"username": "ann", "password": "password1"})
            self.assertEqual(status, 201)
            await redis.stop()

            status, body = await within(
                Deferred.fromCoroutine(http_json(
                    "POST", node.url("/api/token/"), {"username": "ann", "password": "password1"})),
                wall_clock_ceiling(2))
            self.assertEqual((status, set(body)), (503, {"error"}))

            status, health = await within(
                Deferred.fromCoroutine(http_json("GET", node.url("/healthz"))),
                wall_clock_ceiling(2))
            self.assertEqual((status, health["status"]), (503, "degraded"))

            await redis.start()  # empty: this redis-server keeps nothing on disk
            healthy = []

            async def probe() -> None:
                status, _ = await http_json("GET", node.url("/healthz"))
                healthy.append(status == 200)

            await wait_for(lambda: any(healthy), wall_clock_ceiling(3), poll=0.1, action=probe)
            status, _ = await http_json("POST", node.url("/api/users/sign_up/"),
                                        {"username": "bob", "password": "password1"})
            self.assertEqual(status, 201)
            self.assertEqual(await node.stop(), 0, node.text())

        return ensureDeferred(scenario())


CLUSTER_CLIENT = Path(__file__).parent / "interop" / "cluster_client.py"


class ClusterChatTests(TestCase):
    """Two real nodes on one real redis-server, with the official Python client."""

    timeout = 120

    async def two_nodes(self) -> tuple[Any, Node, Node]:
        from tests.redisserver import started_redis

        redis = await started_redis(self)
        a = stop_on_cleanup(self, Node("--redis", redis.url))
        b = stop_on_cleanup(self, Node("--redis", redis.url))
        await a.start()
        await b.start()
        return redis, a, b

    async def chat_in_one_room(self, a: Node, b: Node, mode: str, deadline: float) -> Lines:
        """
        Run tests/interop/cluster_client.py until READY, checking what it saw; its last
        step (C{mode}) must happen within C{deadline} seconds.
        """
        client = Lines()
        self.process = reactor.spawnProcess(
            client, sys.executable,
            [sys.executable, str(CLUSTER_CLIENT), a.url(""), b.url(""), "room-cluster", mode,
             str(deadline)],
            env=None,
        )
        self.addCleanup(lambda: client.ended)
        seen = wire.decode(await client.next_line(0))
        self.assertEqual(seen, {
            "alice": True, "aliceOnB": False, "bob": True, "aliceSawBobJoin": True,
            "ackAtoB": True, "bobGotA": True, "ackBtoA": True, "aliceGotB": True,
        })
        self.assertEqual(await client.next_line(1), "READY")
        return client

    def test_chat_across_nodes_and_node_death(self) -> Deferred[None]:
        """
        A client on node A and one on node B share a room: joins and messages cross
        nodes, a name is unique across nodes, the sender's "from" is overwritten;
        after node A is killed (SIGKILL) the client on B gets A's user's leave
        message within the 10 s presence TTL.
        """

        async def scenario() -> None:
            redis, a, b = await self.two_nodes()
            client = await self.chat_in_one_room(a, b, "death", wall_clock_ceiling(10))
            await a.kill()
            left = wire.decode(await client.next_line(2))
            self.assertTrue(left["leftSeen"], client.err.decode()[-2000:])
            self.assertEqual(await b.stop(), 0, b.text())

        return ensureDeferred(scenario())

    def test_redis_restart_mid_chat(self) -> Deferred[None]:
        """
        Redis restarts (empty) in the middle of a chat across two nodes: both nodes
        recover without a restart and messages cross nodes again within 3 s.
        """

        async def scenario() -> None:
            redis, a, b = await self.two_nodes()
            client = await self.chat_in_one_room(a, b, "outage", wall_clock_ceiling(3))
            await redis.stop()
            await redis.start()
            self.process.write(b"go\n")
            flowing = wire.decode(await client.next_line(2))
            self.assertTrue(flowing["arrived"], client.err.decode()[-2000:])
            for node in (a, b):
                self.assertEqual(await node.stop(), 0, node.text())

        return ensureDeferred(scenario())
