"""
The processor's end-to-end test case: a real C{twistd -n gameproto} process with its
own run directory and, as root, this test process's own block of run uids; the Python
client of L{gameproto.client.processor}.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from gameproto.client import processor as client
from tests.nodes import Node, http_json, stop_on_cleanup
from tests.processor_support import require_root, run_uids


class ProcessorEndToEndTestCase(TestCase):
    timeout = 120
    #: More options for the server.
    node_options: tuple[str, ...] = ()

    def setUp(self) -> Deferred[None]:
        require_root()  # the processor runs programs only in the isolated sandbox, as root
        base = tempfile.mkdtemp(prefix="gameproto-e2e-runs-", dir="/tmp")
        self.addCleanup(shutil.rmtree, base, True)
        uids = run_uids()
        self.node = stop_on_cleanup(self, Node(
            "--store", "memory:",
            "--processor-dir", base,
            "--processor-uids", f"{uids[0]}-{uids[-1]}",
            *self.node_options,
        ))
        self.sockets: list[Any] = []
        self.addCleanup(self._close_sockets)
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        await self.node.start()
        self.token = await self.sign_up("ann")

    async def sign_up(self, username: str) -> str:
        """A new user of the server; its token."""
        status, _ = await http_json("POST", self.node.url("/api/users/sign_up/"),
                                    {"username": username, "password": "password1"})
        self.assertEqual(status, 201)
        status, body = await http_json("POST", self.node.url("/api/token/"),
                                       {"username": username, "password": "password1"})
        self.assertEqual(status, 200)
        return str(body["token"])

    def _close_sockets(self) -> None:
        for socket in self.sockets:
            if socket.state == socket.STATE_OPEN:
                socket.dropConnection(abort=True)

    async def connect(self, token: str | None = "", **options: Any) -> client.ProcessorClient:
        """A processor connection with C{token} (ann's by default, none if None)."""
        if token == "":
            token = self.token
        socket = await client.connect(reactor, self.node.ws_url(""), token, **options)
        self.sockets.append(socket)
        return socket

    async def run_code(self, language: str, code: str, **options: Any) -> client.RunOutcome:
        socket = await self.connect(**options)
        return await socket.run(language, code)

    def assertBusy(self, error: dict[str, Any], reason: str) -> None:
        """
        SERVER_ERROR C{reason}, with when to try again: the running run must be over by
        then, at most 10 s of program time + 60 s of engine wait + 0.2 s of grace (the
        defaults) after it started, so at most 71 s.
        """
        self.assertEqual(error["code"], "SERVER_ERROR")
        match = re.fullmatch(re.escape(reason) + r"; try again in (\d+) s", error["message"])
        self.assertIsNotNone(match, error["message"])
        seconds = int(match.group(1))  # type: ignore[union-attr]
        self.assertEqual(error["retry_after_ms"], seconds * 1000)
        self.assertTrue(60 <= seconds <= 71, seconds)

    def when_logged(self, text: str) -> Deferred[None]:
        """Fires when the server's log shows C{text} after now."""
        seen: Deferred[None] = Deferred()
        protocol = self.node.process.proto
        original = protocol.outReceived
        offset = len(self.node.output)

        def watch(data: bytes) -> None:
            original(data)
            if not seen.called and text.encode() in self.node.output[offset:]:
                seen.callback(None)

        protocol.outReceived = protocol.errReceived = watch
        return seen
