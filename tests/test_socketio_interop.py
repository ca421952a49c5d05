"""
Interoperability of the chat and the conformance server with the official clients:
the npm C{socket.io-client} 4.x (run by node) and the PyPI C{python-socketio}
client, each with default options and with one transport forced.

The servers run in this process on port 0 of 127.0.0.1 (trial's reactor); each
client is a real process (tests/interop/) that prints what it saw as JSON.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from gameproto import web, wire
from gameproto.chat import mount_chat
from gameproto.socketio.conformance import conformance_site, open_context
from tests.support import INTEROP, npm_ci, require_tool, running_in_ci

CLIENT_DEADLINE = 60.0


class InteropTestCase(TestCase):
    timeout = 120

    def setUp(self) -> None:
        # The chat, as the server mounts it, with the default (JS) timings.
        self.context = open_context(reactor)
        root = web.Tree()
        self.chat = mount_chat(root, self.context, reactor)
        self.chat_port = reactor.listenTCP(0, web.make_site(root, reactor), interface="127.0.0.1")
        self.conformance_context = open_context(reactor)
        self.conformance_port = reactor.listenTCP(
            0, conformance_site(reactor, self.conformance_context), interface="127.0.0.1"
        )

    async def tearDown(self) -> None:
        for port in (self.chat_port, self.conformance_port):
            await port.stopListening()
        for context in (self.context, self.conformance_context):
            await context.connections.close_all()
        self.chat.engine.stop()

    def urls(self) -> tuple[str, str]:
        return (
            f"http://127.0.0.1:{self.chat_port.getHost().port}",
            f"http://127.0.0.1:{self.conformance_port.getHost().port}",
        )

    async def run_client(self, executable: str, script: str, mode: str) -> dict[str, Any]:
        chat_url, conformance_url = self.urls()
        room = "room-" + uuid.uuid4().hex[:8]
        d = getProcessOutputAndValue(
            executable,
            [str(INTEROP / script), chat_url, conformance_url, mode, room],
            env=dict(os.environ),
            path=str(INTEROP),
        )
        out, err, code = await d
        try:
            result: dict[str, Any] = wire.decode(out.strip().splitlines()[-1])
        except (IndexError, wire.InvalidJSON):
            self.fail(f"no result from {script} (exit {code}): {err.decode(errors='replace')}")
        self.assertNotIn("error", result, err.decode(errors="replace"))
        self.assertEqual(code, 0)
        return result

    def check_chat(self, result: dict[str, Any], transport: str) -> None:
        self.assertIs(result["registerAlice"], True)
        self.assertEqual(result["aliceSawOwnJoin"], "alice has joined the chat")
        self.assertIs(result["registerDuplicate"], False)
        self.assertIs(result["registerBob"], True)
        self.assertIs(result["sendAck"], True)
        self.assertEqual(result["bobReceived"], {"from": "alice", "message": "hello"})
        self.assertEqual(result["aliceReceived"], {"from": "alice", "message": "hello"})
        self.assertIs(result["emptyAck"], False)
        self.assertIs(result["unregisteredAck"], False)
        self.assertEqual(result["transport"], transport)
        self.assertEqual(result["leave"], {"from": "Server", "message": "alice left the chat"})
        self.assertIn("invalid room", result["invalidRoom"])

    def check_conformance(self, result: dict[str, Any], transport: str) -> None:
        self.assertEqual(result["auth"], {"token": "t"})
        self.assertEqual(
            result["binaryBack"], {"text": "text", "isBuffer": True, "bytes": [1, 2, 3]}
        )
        self.assertEqual(result["ackArgs"], [1, True, [9]])
        self.assertEqual(result["conformanceTransport"], transport)


class NodeClientTests(InteropTestCase):
    async def run_node(self, mode: str) -> dict[str, Any]:
        node = require_tool("node")
        await npm_ci(INTEROP, "socket.io-client")
        return await self.run_client(node, "chat_client.js", mode)

    def check_node(self, result: dict[str, Any], transport: str) -> None:
        self.check_chat(result, transport)
        self.check_conformance(result, transport)
        self.assertEqual(result["customAuth"], {})
        self.assertEqual(result["invalidNamespace"], "Invalid namespace")
        self.assertEqual(result["disconnectReason"], "io client disconnect")

    async def test_default_options(self) -> None:
        """
        socket.io-client with its default options (polling, then the upgrade to
        WebSocket): the whole chat flow, binary events and acks, and the
        connection ends on WebSocket.
        """
        self.check_node(await self.run_node("default"), "websocket")

    async def test_websocket_only(self) -> None:
        """
        socket.io-client with transports ["websocket"]: the same flow over WebSocket.
        """
        self.check_node(await self.run_node("websocket"), "websocket")

    async def test_polling_only(self) -> None:
        """
        socket.io-client with transports ["polling"]: the same flow over long-polling,
        binary as base64.
        """
        self.check_node(await self.run_node("polling"), "polling")


class PythonClientTests(InteropTestCase):
    async def run_python(self, mode: str) -> dict[str, Any]:
        try:
            import socketio  # noqa: F401
        except ImportError:
            message = "python-socketio[client] is not installed (the test extra)"
            if running_in_ci():
                raise AssertionError(message)
            raise SkipTest(message)
        return await self.run_client(sys.executable, "python_client.py", mode)

    async def test_default_options(self) -> None:
        """
        python-socketio's client with its defaults (polling, then upgrade): the whole
        chat flow, binary events and acks.
        """
        result = await self.run_python("default")
        self.check_chat(result, "websocket")
        self.check_conformance(result, "websocket")

    async def test_websocket_only(self) -> None:
        """
        python-socketio's client over WebSocket only.
        """
        result = await self.run_python("websocket")
        self.check_chat(result, "websocket")
        self.check_conformance(result, "websocket")

    async def test_polling_only(self) -> None:
        """
        python-socketio's client over long-polling only.
        """
        result = await self.run_python("polling")
        self.check_chat(result, "polling")
        self.check_conformance(result, "polling")
