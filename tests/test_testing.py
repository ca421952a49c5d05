"""gameproto.testing: the in-memory HTTP and WebSocket clients themselves."""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.twisted.resource import WebSocketResource
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from gameproto import web, wire
from gameproto.testing import (
    CLOSE,
    TEXT,
    HTTPExchange,
    WebSocketClient,
    fake_context,
    parse_response,
    request,
)
from tests.echo import Echo


class Later(Resource):
    """Answers each GET once the test fires C{self.answer}."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answer: Deferred[bytes] = Deferred()

    def render_GET(self, http_request: Any) -> Any:
        def write(body: bytes) -> None:
            http_request.write(body)
            http_request.finish()

        self.answer.addCallback(write)
        return NOT_DONE_YET


class HTTPTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.later = Later()
        root = web.Tree()
        web.mount(root, "/later", self.later)
        self.site = web.make_site(root, self.clock)

    def test_request_refuses_a_response_not_written_yet(self) -> None:
        """request() fails loudly when the handler is still waiting, never half an answer."""
        with self.assertRaises(AssertionError):
            request(self.site, "GET", "/later")

    def test_exchange_response_once_written(self) -> None:
        """An HTTPExchange's response is None until the server has written all of it."""
        exchange = HTTPExchange(self.site, "GET", "/later")
        self.assertIsNone(exchange.response)
        self.later.answer.callback(b"done")
        response = exchange.response
        assert response is not None
        self.assertEqual((response.status, response.body), (200, b"done"))

    def test_chunked_bodies(self) -> None:
        """A chunked body is joined (chunk extensions ignored); a partial one is not a response."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        whole = parse_response(head + b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        assert whole is not None
        self.assertEqual(whole.body, b"abcde")
        self.assertIsNone(parse_response(head + b"3\r\nabc\r\n"))


class WebSocketTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(txaio.config, "loop", self.clock)
        factory = wire.make_factory(Echo, wire.EndpointLimits(max_message_size=1024),
                                     fake_context(self.clock))
        root = web.Tree()
        web.mount(root, "/ws/echo", WebSocketResource(factory))
        self.site = web.make_site(root, self.clock)

    def test_readers_share_one_cursor(self) -> None:
        """frames(), messages(), json_messages() and closes() each return only what is new."""
        ws = WebSocketClient(self.site, "/ws/echo")
        self.assertTrue(ws.accepted)
        self.assertEqual(ws.frames(), [(TEXT, b'{"hello":null}')])
        self.assertEqual(ws.messages(), [])
        ws.send_json({"n": 1})
        self.assertEqual(ws.json_messages(), [{"n": 1}])
        self.assertEqual(ws.closes(), [])

    def test_close_is_recorded(self) -> None:
        """Reading the server's close frame sets closed, close_code and close_reason."""
        ws = WebSocketClient(self.site, "/ws/echo")
        ws.messages()
        ws.send_close(1000)
        frames = ws.frames()
        self.assertEqual([opcode for opcode, _ in frames], [CLOSE])
        self.assertEqual((ws.closed, ws.close_code), (True, 1000))

    def test_forget_read(self) -> None:
        """forget_read() frees what was read; what arrives next is still read."""
        ws = WebSocketClient(self.site, "/ws/echo")
        ws.messages()
        ws.forget_read()
        self.assertEqual(ws.transport.value(), b"")
        ws.send_json({"n": 2})
        self.assertEqual(ws.json_messages(), [{"n": 2}])
