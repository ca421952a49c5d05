"""
The official socket.io-protocol test-suite (mocha, vendored in tests/socketio-protocol/
with its licence; its npm packages come from its lock file) against a real
C{python -m gameproto.socketio.conformance} process on a free port.

The suite has two parts: Engine.IO (handshake, heartbeat, close and upgrade, over
C{/socket.io/}) and Socket.IO (connect, disconnect, events, acks, binary).  Its
clients handle one WebSocket message per turn of node's event loop.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from gameproto import wire
from tests.nodes import ServerProcess
from tests.support import npm_ci, require_tool

SUITE = Path(__file__).parent / "socketio-protocol"
# Some of the suite's tests sleep exactly pingInterval + pingTimeout, or race two
# requests, and so can lose to a server slowed by a loaded machine: a failing test
# is run again, up to twice.  A real fault fails every run.
RETRIES = 2


class OfficialSocketIOProtocolSuiteTests(TestCase):
    timeout = 240

    async def run_suite(self) -> dict[str, Any]:
        node = require_tool("node")
        await npm_ci(SUITE, "mocha")
        server = ServerProcess(
            [sys.executable, "-m", "gameproto.socketio.conformance", "--port", "0"]
        )
        port = await server.start()
        try:
            out, err, code = await getProcessOutputAndValue(
                node,
                [
                    str(SUITE / "node_modules" / "mocha" / "bin" / "mocha"),
                    "test-suite.js",
                    "--reporter",
                    "json",
                    "--retries",
                    str(RETRIES),
                ],
                env={**os.environ, "SERVER_URL": f"http://127.0.0.1:{port}"},
                path=str(SUITE),
            )
        finally:
            await server.stop()
        try:
            report: dict[str, Any] = wire.decode(out)
        except wire.InvalidJSON:
            self.fail(f"no report from mocha (exit {code}): {err.decode(errors='replace')}")
        return report

    async def test_all_tests_pass(self) -> None:
        """
        All 32 tests of the official socket.io-protocol suite pass, among them the
        ones that connect and then await the connect handler's C{auth} emit as the
        next WebSocket message.
        """
        report = await self.run_suite()
        failures = [
            (failure["fullTitle"], failure["err"].get("message")) for failure in report["failures"]
        ]
        self.assertEqual(failures, [])
        self.assertEqual((report["stats"]["tests"], report["stats"]["passes"]), (32, 32))
