"""
The deploy files, run as an operator runs them: C{deploy/nginx/gameproto.conf} in a
real nginx in front of two real nodes sharing a real redis-server.  Through the proxy:
Socket.IO over polling and WebSocket (the official Python client), match, arena and
processor WebSockets, REST; then the node serving the clients is killed and they carry
on through the proxy on the other node.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gameproto import wire
from gameproto.client import arena as arena_client
from gameproto.client import match as match_client
from gameproto.client import processor as processor_client
from gameproto.client.base import ConnectionClosed
from gameproto.client.rest import RestClient
from tests.deploy_support import NGINX_SITE as SITE, ROOT, UNIT, unit_settings
from tests.nodes import Lines, Nginx, Node, http_json, stop_on_cleanup
from tests.processor_support import HELLO, require_root, run_uids

PROXIED_CHAT = Path(__file__).parent / "interop" / "proxied_chat.py"
SUCCESS = {"status": "success", "code": 0}
# docs/arena.md, "Several nodes": why the sockets of a taken-over arena are closed.
RESTARTED = "the arena's node was lost: the arena restarted empty, connect again"
TIMEOUT = 10.0


class NginxInFrontOfTwoNodesTests(TestCase):
    timeout = 180

    def setUp(self) -> Deferred[None]:
        from tests.redisserver import started_redis

        require_root()  # the processor runs programs in the isolated sandbox only
        directory = Path(tempfile.mkdtemp(prefix="gameproto-deploy-"))
        self.addCleanup(shutil.rmtree, directory, True)
        self.sockets: list[Any] = []
        self.addCleanup(self._drop_sockets)

        async def start() -> None:
            redis = await started_redis(self)
            uids = run_uids()
            self.nodes = []
            for name in ("a", "b"):
                (directory / name).mkdir()
                node = stop_on_cleanup(self, Node(
                    "--redis", redis.url, "--processor-dir", str(directory / name),
                    "--processor-uids", f"{uids[0]}-{uids[-1]}"))
                await node.start()
                self.nodes.append(node)
            (directory / "nginx").mkdir()
            self.nginx = Nginx(SITE, self.nodes, directory / "nginx")
            await self.nginx.start()
            self.addCleanup(self.nginx.stop)

        return ensureDeferred(start())

    def _drop_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    def _end(self, process: Any, chat: Lines) -> Deferred[None]:
        """The chat clients' process ends with the test, whatever happened."""
        if not chat.ended.called:
            process.signalProcess("KILL")
        return chat.ended

    async def serving_node(self) -> Node:
        """The node the proxy sends this client address to, by the node id in /healthz."""
        status, health = await http_json("GET", self.nginx.url("/healthz"))
        self.assertEqual(status, 200, health)
        for node in self.nodes:
            if node.exit_code is None and node.exit_signal is None:
                _, own = await http_json("GET", node.url("/healthz"))
                if own["details"]["node"] == health["details"]["node"]:
                    return node
        raise AssertionError(f"no live node has the id {health['details']['node']}")

    async def user(self, name: str) -> str:
        api = RestClient(reactor, self.nginx.http)
        await api.sign_up(name, "password1")
        return await api.token(name, "password1")

    async def play_through_the_proxy(self, tag: str) -> None:
        """A match lobby, an arena player and a processor run, all through nginx."""
        host_token, challenger_token = await self.user(f"h{tag}"), await self.user(f"c{tag}")
        created = await RestClient(reactor, self.nginx.http, host_token).create_match()
        host = await match_client.connect(reactor, self.nginx.ws, host_token, created["id"], "host")
        challenger = await match_client.connect(reactor, self.nginx.ws, challenger_token,
                                                created["id"], "challenger")
        self.sockets += [host, challenger]
        for socket in (host, challenger):
            self.assertEqual(await socket.next_frame(TIMEOUT), SUCCESS)
        await host.wait_for(lambda f: f.get("challenger") == f"c{tag}", TIMEOUT)

        ack = await self.register_in_default_arena(host_token)
        self.assertEqual(ack["type"], "RegisterPlayerAck")

        runner = await processor_client.connect(reactor, self.nginx.ws, host_token)
        self.sockets.append(runner)
        outcome = await runner.run("python", HELLO["python"])
        self.assertEqual(outcome.output, [("stdout", "hello, world")])
        self.assertEqual(outcome.close_code, 1000)
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.close()
        for socket in self.sockets:
            await socket.closed  # no closing handshake left running after the test

    async def register_in_default_arena(self, token: str) -> dict[str, Any]:
        """
        A player registered in the default arena.  Once the node that ran it has died,
        the survivor takes it over (after the lease's TTL) and closes the sockets that
        reached it meanwhile with "connect again": the player does.
        """
        for _ in range(5):
            player = await arena_client.connect(reactor, self.nginx.ws, "default", "player",
                                                token)
            self.sockets.append(player)
            try:
                return await player.register()
            except ConnectionClosed as e:
                self.assertEqual(e.reason, RESTARTED)
        raise AssertionError("the arena never came back")

    def test_everything_through_nginx_and_a_node_killed(self) -> Deferred[None]:
        """
        Every protocol works through the shipped nginx config; after the serving node is
        killed, the Socket.IO clients reconnect by themselves (polling and WebSocket) and
        new match, arena and processor sockets work, all through nginx on the other node.
        """

        async def scenario() -> None:
            first = await self.serving_node()
            chat = Lines()
            process = reactor.spawnProcess(
                chat, sys.executable,
                [sys.executable, str(PROXIED_CHAT), self.nginx.http, "room-deploy"], env=None)
            self.addCleanup(self._end, process, chat)
            talked = {"alice": True, "bob": True, "ackAtoB": True, "bobGotA": True,
                      "ackBtoA": True, "aliceGotB": True, "transports": ["polling", "websocket"]}
            self.assertEqual(wire.decode(await chat.next_line(0)), talked, chat.err.decode())
            self.assertEqual(await chat.next_line(1), "READY")
            await self.play_through_the_proxy("1")

            await first.kill()
            second = await self.serving_node()
            self.assertIsNot(second, first)
            process.write(b"killed\n")
            after = wire.decode(await chat.next_line(2))
            self.assertEqual(after, {"reconnected": [True, True], **talked},
                             chat.err.decode()[-3000:])
            await self.play_through_the_proxy("2")
            self.assertEqual(await second.stop(), 0, second.text())

        return ensureDeferred(scenario())


class DeployFilesDocumentedTests(SynchronousTestCase):
    def test_operations_page_shows_the_nginx_file_as_shipped(self) -> None:
        """docs/operations.md quotes deploy/nginx/gameproto.conf whole, as it is."""
        page = (ROOT / "docs" / "operations.md").read_text()
        fence = "`" * 3
        self.assertIn(f"{fence}nginx\n{SITE.read_text()}{fence}\n", page)


# systemd before 254 does not know this key; it only matters on cgroup v2 hosts.
KNOWN_WARNINGS = ("Unknown key 'DelegateSubgroup'",)


class SystemdUnitTests(TestCase):
    """
    The unit as far as it can be checked without booting systemd: C{systemd-analyze
    verify}, and its capabilities and C{NoNewPrivileges}, with which
    C{tests/test_processor_isolation.py} runs hostile programs again
    (C{*WithinTheUnitsCapabilities}).
    """

    timeout = 120

    def test_unit_verifies(self) -> Deferred[None]:
        """systemd-analyze verify accepts the unit (with this venv's twistd as ExecStart)."""
        from twisted.internet.utils import getProcessOutputAndValue

        from tests.nodes import TWISTD
        from tests.support import require_tool

        analyze = require_tool("systemd-analyze")
        directory = Path(tempfile.mkdtemp(prefix="gameproto-unit-"))
        self.addCleanup(shutil.rmtree, directory, True)
        unit = directory / "gameproto@.service"
        unit.write_text(UNIT.read_text().replace("/opt/gameproto/bin/twistd", TWISTD))

        async def verify() -> None:
            out, err, code = await getProcessOutputAndValue(
                analyze, ["verify", str(directory / "gameproto@8001.service")],
                env=dict(os.environ), path=str(directory))
            complaints = [line for line in (out + err).decode().splitlines()
                          if line.strip() and not any(w in line for w in KNOWN_WARNINGS)]
            self.assertEqual((code, complaints), (0, []))

        return ensureDeferred(verify())

    def test_no_new_privileges_and_no_sys_admin(self) -> None:
        """The server keeps neither CAP_SYS_ADMIN nor CAP_SYS_PTRACE, and gains nothing by exec."""
        settings = unit_settings()
        self.assertEqual(settings["NoNewPrivileges"], "yes")
        caps = settings["CapabilityBoundingSet"].split()
        self.assertNotIn("CAP_SYS_ADMIN", caps)
        self.assertNotIn("CAP_SYS_PTRACE", caps)
