"""
Tests for L{gameproto.socketio.conformance}, the server the official protocol test
suites run against: its two mount points and its timings, on a Clock.
"""

from __future__ import annotations

import txaio
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import wire
from gameproto.socketio.conformance import conformance_site, open_context
from gameproto.testing import (
    HTTPExchange,
    OneMessagePerTurnClient,
    ReactorTurnClock,
    HTTPResponse,
    WebSocketClient,
)


class ConformanceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(txaio.config, "loop", self.clock)
        self.site = conformance_site(self.clock, open_context(self.clock))

    def respond(self, method: str, path: str, body: bytes = b"") -> HTTPResponse:
        response = HTTPExchange(self.site, method, path, body).response
        assert response is not None
        return response

    def handshake(self, path: str) -> dict:
        value: dict = wire.decode(self.respond("GET", path + "?EIO=4&transport=polling").body[1:])
        return value

    def test_engine_io_echo(self) -> None:
        """
        /engine.io/ echoes every message, text and binary, with the suites' timings.
        """
        handshake = self.handshake("/engine.io/")
        self.assertEqual(
            (handshake["pingInterval"], handshake["pingTimeout"], handshake["maxPayload"]),
            (300, 200, 1000000),
        )
        query = f"/engine.io/?EIO=4&transport=polling&sid={handshake['sid']}"
        self.assertEqual(self.respond("POST", query, b"4hello\x1ebAQI=").body, b"ok")
        self.assertEqual(self.respond("GET", query).body, b"4hello\x1ebAQI=")

    def test_socket_io_namespaces(self) -> None:
        """
        /socket.io/ emits C{auth} on connect to C{/} and C{/custom}, refuses other
        namespaces with "Invalid namespace", and answers message and message-with-ack.
        """
        sid = self.handshake("/socket.io/")["sid"]
        query = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        self.respond("POST", query, b'40{"a":1}\x1e40/custom\x1e40/nowhere,')
        packets = self.respond("GET", query).body.decode().split("\x1e")
        self.assertEqual(len(packets), 5)
        self.assertTrue(packets[0].startswith('40{"sid":'))
        self.assertEqual(packets[1], '42["auth",{"a":1}]')
        self.assertTrue(packets[2].startswith('40/custom,{"sid":'))
        self.assertEqual(packets[3], '42/custom,["auth",{}]')
        self.assertEqual(packets[4], '44/nowhere,{"message":"Invalid namespace"}')
        self.respond("POST", query, b'42["message",1,"a"]\x1e421["message-with-ack",2,"b"]')
        self.assertEqual(
            self.respond("GET", query).body,
            b'42["message-back",1,"a"]\x1e431[2,"b"]',
        )

    def test_connect_timeout(self) -> None:
        """
        A session that sends no CONNECT is closed after 1000 ms.
        """
        sid = self.handshake("/socket.io/")["sid"]
        query = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        for _ in range(3):  # pings at 0.3, 0.6 and 0.9 s, each answered
            poll = HTTPExchange(self.site, "GET", query)
            self.clock.advance(0.3)
            self.assertEqual(poll.response.body, b"2")  # type: ignore[union-attr]
            self.respond("POST", query, b"3")
        poll = HTTPExchange(self.site, "GET", query)
        self.clock.advance(0.08)
        self.assertIsNone(poll.response)
        self.clock.advance(0.05)  # past 1.0 s, whatever the float rounding
        self.assertEqual(poll.response.body, b"1")  # type: ignore[union-attr]
        self.assertEqual(self.respond("GET", query).json()["code"], 1)

    def test_one_message_per_turn_client(self) -> None:
        """
        A client that handles one WebSocket message per turn of its event loop (the
        official suite's C{initSocketIOConnection}) gets the CONNECT reply, then the
        connect handler's C{auth} emit in a later read: the reply leaves the server
        on its own, and nothing is lost.
        """
        clock = ReactorTurnClock()
        self.patch(txaio.config, "loop", clock)
        site = conformance_site(clock, open_context(clock))
        ws = WebSocketClient(site, "/socket.io/?EIO=4&transport=websocket")
        client = OneMessagePerTurnClient(ws, clock)
        handshake = client.next_message()
        self.assertTrue(str(handshake).startswith('0{"sid":'), handshake)
        ws.send_text('40{"token":"123"}')
        reply = client.next_message()
        self.assertTrue(str(reply).startswith('40{"sid":'), reply)
        self.assertEqual(client.next_message(), '42["auth",{"token":"123"}]')
        ws.send_text("40/custom")
        reply = client.next_message()
        self.assertTrue(str(reply).startswith('40/custom,{"sid":'), reply)
        self.assertEqual(client.next_message(), '42/custom,["auth",{}]')
        self.assertEqual(client.lost, [])
