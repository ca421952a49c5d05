"""
Promises of docs/chat.md that no other test states, against the chat as the server
mounts it (a L{GameprotoServer} with its default configuration, on a Clock, driven with
raw Engine.IO requests and raw WebSocket frames): the per-session rate limit (1000
packets/s, burst 2000, 5 s over it closes with 4008), the 1000 sessions per address, an
unknown event ignored without an ack, and nothing a client says in its log events; and
the same for the whole output of a real C{twistd} node driven by python-socketio.
"""

from __future__ import annotations

import uuid
from typing import Any

import txaio
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gameproto import wire
from gameproto.testing import HTTPExchange, HTTPResponse, WebSocketClient
from tests.nodes import Node, stop_on_cleanup
from tests.support import require_module
from tests.restsupport import make_server

PATH = "/socket.io/?EIO=4&transport="


class ChatOverWebSocket:
    """A Socket.IO client on a raw WebSocket: packets out, packets in (namespace C{/})."""

    def __init__(self, site: Any, query: str = "") -> None:
        self.ws = WebSocketClient(site, PATH + "websocket" + query)
        assert self.ws.accepted, self.ws.handshake

    def send(self, packet: str) -> None:
        """One Socket.IO packet (an Engine.IO message)."""
        self.ws.send_text("4" + packet)

    def received(self) -> list[str]:
        """The Socket.IO packets received since the last call."""
        return [m[1:] for m in self.ws.messages() if isinstance(m, str) and m.startswith("4")]

    @property
    def ended(self) -> tuple[int | None, bool]:
        """The close code the server sent, and whether it closed at all."""
        self.ws.messages()
        return self.ws.close_code, self.ws.closed


def unregistered_messages(ack_ids: range) -> list[str]:
    """C{message} events an unregistered socket sends: each one is acked C{false}."""
    return [f'2{i}["message",{{"message":"hi"}}]' for i in ack_ids]


def acked(packets: list[str]) -> list[int]:
    """The ack ids of the C{[false]} acks among C{packets}."""
    return [int(p[1:-len("[false]")]) for p in packets if p.startswith("3") and
            p.endswith("[false]")]


class ChatServerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = make_server()
        self.clock: Clock = self.server.reactor
        # Autobahn's own timers (handshake, close) run on txaio's loop.
        self.patch(txaio.config, "loop", self.clock)
        self.site = self.server.site

    def websocket(self) -> ChatOverWebSocket:
        client = ChatOverWebSocket(self.site)
        [open_packet] = client.ws.messages()
        self.assertTrue(open_packet.startswith('0{"sid"'), open_packet)  # type: ignore[union-attr]
        self.clock.advance(0)  # a reactor turn: the open packet, sent alone, is written out
        return client

    def connected(self, auth: dict[str, Any] | None = None) -> ChatOverWebSocket:
        client = self.websocket()
        client.send("0" + (wire.encode(auth).decode() if auth is not None else ""))
        [reply] = client.received()
        self.assertTrue(reply.startswith('0{"sid"'), reply)
        self.clock.advance(0)  # the CONNECT reply, sent alone, is written out
        return client

    def request(self, method: str, query: str, body: bytes = b"") -> HTTPExchange:
        return HTTPExchange(self.site, method, PATH + "polling" + query, body)

    def respond(self, method: str, query: str, body: bytes = b"") -> HTTPResponse:
        response = self.request(method, query, body).response
        assert response is not None, "no response yet"
        return response

    def polling_handshake(self) -> HTTPResponse:
        return self.respond("GET", "")

    def polling_session(self) -> str:
        response = self.polling_handshake()
        self.assertEqual(response.status, 200, response.body)
        sid: str = wire.decode(response.body[1:])["sid"]
        return sid

    def post(self, sid: str, packets: list[str]) -> None:
        """Engine.IO message packets in one POST."""
        body = "\x1e".join("4" + p for p in packets).encode()
        response = self.respond("POST", f"&sid={sid}", body)
        self.assertEqual((response.status, response.body), (200, b"ok"))

    def poll(self, sid: str) -> list[str]:
        """The Socket.IO packets of one GET."""
        response = self.respond("GET", f"&sid={sid}")
        self.assertEqual(response.status, 200, response.body)
        return [p[1:] for p in response.body.decode().split("\x1e") if p.startswith("4")]


class RateLimitTests(ChatServerTestCase):
    """
    "A token bucket of 1000 packets/s (burst 2000) per session over both transports.
    Packets over the rate are dropped, and a session over its rate for 5 s is closed
    (4008 on WebSocket)."
    """

    def test_burst_then_rate_over_websocket(self) -> None:
        """
        A fresh session may send 2000 packets at once (its CONNECT and 1999 events, all
        acked); the next one is dropped without an ack.  One second later 1000 more pass,
        and the 1001st is dropped; the session stays open.
        """
        client = self.connected()  # one packet of the burst
        for packet in unregistered_messages(range(1, 2001)):
            client.send(packet)
        self.assertEqual(acked(client.received()), list(range(1, 2000)))
        self.clock.advance(1.0)
        for packet in unregistered_messages(range(3001, 4002)):
            client.send(packet)
        self.assertEqual(acked(client.received()), list(range(3001, 4001)))
        self.assertEqual(client.ended, (None, False))

    def test_burst_over_polling(self) -> None:
        """
        Polling counts packets the same way: of 2001 packets POSTed at once, the CONNECT
        and 1999 events pass, the last event is dropped.
        """
        sid = self.polling_session()
        self.post(sid, ["0"] + unregistered_messages(range(1, 2001)))
        received = self.poll(sid)
        self.assertTrue(received[0].startswith('0{"sid"'), received[0])
        self.assertEqual(acked(received[1:]), list(range(1, 2000)))

    def test_one_bucket_across_the_upgrade(self) -> None:
        """
        The bucket belongs to the session, not to its transport: 1500 packets over
        polling leave 500 for the WebSocket it upgrades to.
        """
        sid = self.polling_session()
        self.post(sid, ["0"] + unregistered_messages(range(1, 1500)))
        self.assertEqual(acked(self.poll(sid)[1:]), list(range(1, 1500)))
        client = ChatOverWebSocket(self.site, f"&sid={sid}")
        client.ws.send_text("2probe")
        self.assertEqual(client.ws.messages(), ["3probe"])
        client.ws.send_text("5")
        for packet in unregistered_messages(range(2001, 2601)):
            client.send(packet)
        self.assertEqual(acked(client.received()), list(range(2001, 2501)))

    def test_five_seconds_over_the_rate_closes_with_4008(self) -> None:
        """
        A client that keeps sending 1200 packets/s after its burst gets 500 of every 600
        through each half second (1000/s), and is closed with 4008 "rate limit exceeded"
        5 s after its first dropped packet, not before.
        """
        client = self.connected()
        for packet in unregistered_messages(range(1, 2002)):  # the burst, and one dropped
            client.send(packet)
        self.assertEqual(len(acked(client.received())), 1999)
        start = 100_000
        for step in range(1, 10):  # t = 0.5 .. 4.5 s
            self.clock.advance(0.5)
            first = start + 1000 * step
            for packet in unregistered_messages(range(first, first + 600)):
                client.send(packet)
            self.assertEqual(acked(client.received()), list(range(first, first + 500)), step)
            self.assertEqual(client.ended, (None, False), step)
        self.clock.advance(0.5)  # t = 5 s: the first drop now closes the session
        for packet in unregistered_messages(range(1, 501)):
            client.send(packet)
        self.assertEqual(client.ended, (None, False))
        client.send(unregistered_messages(range(501, 502))[0])
        self.assertEqual(client.ended, (4008, True))
        self.assertEqual(self.server.chat.engine.sessions, {})


class PerAddressCapTests(ChatServerTestCase):
    def test_thousand_sessions_per_address(self) -> None:
        """
        "Each session counts as one connection of its address, against the 1000 per
        address, whatever its transport": with 600 polling and 400 WebSocket sessions
        open from one address, a polling handshake gets 403 code 4 "Too many connections"
        and a WebSocket is closed with 4029; once one session closes, a new one opens.
        """
        polling = [self.polling_session() for _ in range(600)]
        for _ in range(400):
            self.websocket()
        self.assertEqual(len(self.server.chat.engine.sessions), 1000)
        refused = self.polling_handshake()
        self.assertEqual((refused.status, refused.json()),
                         (403, {"code": 4, "message": "Too many connections"}))
        over = ChatOverWebSocket(self.site)
        self.assertEqual(over.ended, (4029, True))
        self.assertEqual(len(self.server.chat.engine.sessions), 1000)
        self.respond("POST", f"&sid={polling[0]}", b"1")  # the client closes one session
        self.assertEqual(len(self.server.chat.engine.sessions), 999)
        self.polling_session()
        self.assertEqual(self.polling_handshake().status, 403)


class UnknownEventTests(ChatServerTestCase):
    def test_unknown_event_ignored_without_ack(self) -> None:
        """
        "An event the chat does not know is ignored, and no ack is sent": with or without
        an ack id, from a registered socket or not, nothing is sent to anyone, the socket
        stays connected, and its next known event is answered as usual.
        """
        alice, bob = self.connected(), self.connected()
        alice.send('21["register","alice"]')
        self.assertEqual(alice.received(), [
            "31[true]", '2["message",{"from":"Server","message":"alice has joined the chat"}]'])
        self.clock.advance(0.01)  # bob has not spoken since his CONNECT reply: 10 ms
        bob.received()
        for client in (alice, bob):
            for packet in ['27["shout","hi"]', '2["shout",{"message":"hi"}]', '28["Message"]',
                           '29["register "]', '2["registered","x"]']:
                client.send(packet)
        self.assertEqual((alice.received(), bob.received()), ([], []))
        alice.send('22["message",{"message":"still here"}]')
        said = '2["message",{"from":"alice","message":"still here"}]'
        self.assertEqual(alice.received(), [said, "32[true]"])
        self.assertEqual(bob.received(), [said])
        bob.send('23["message",{"message":"me too"}]')
        self.assertEqual(bob.received(), ["33[false]"])  # unregistered, as ever
        self.assertEqual((alice.ended, bob.ended), ((None, False), (None, False)))


class LoggingTests(ChatServerTestCase):
    def test_nothing_a_client_says_is_logged(self) -> None:
        """
        "Payloads, names and messages are never logged": a marker sent as a name, a
        message, a client's C{from}, an auth field, an event name and argument, a binary
        attachment, and inside malformed packets over both transports appears in no log
        event of the server (debug included), neither in its text nor in its fields;
        the sessions' own events are there.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        marker = "mk" + uuid.uuid4().hex[:20]
        alice = self.connected({"room": "lobby", "token": marker})
        alice.send(f'21["register","{marker}"]')
        self.assertEqual(alice.received()[0], "31[true]")
        bob = self.connected()
        bob.send(f'21["register","{marker}"]')  # taken
        bob.send(f'22["register","{marker * 2}"]')  # too long
        self.assertEqual(bob.received(), ["31[false]", "32[false]"])
        alice.send(f'23["message",{{"message":"{marker}","from":"{marker}"}}]')
        bob.send(f'24["message",{{"message":"{marker}"}}]')  # unregistered
        alice.send(f'25["{marker}","{marker}"]')  # an unknown event
        alice.send('51-5["message",{"_placeholder":true,"num":0}]')
        alice.ws.send_binary(marker.encode())
        self.assertEqual(alice.received()[-1], "35[false]")
        for bad in [f'2["message",{{"message":"{marker}"', f'2["disconnect","{marker}"]',
                    f"0{marker}"]:
            client = self.connected()
            client.send(bad)
            self.assertEqual(client.ended[1], True, bad)
        bob.ws.send_text(f"9{marker}")  # not an Engine.IO packet
        self.assertEqual(bob.ended, (4000, True))

        sid = self.polling_session()
        self.post(sid, ["0", f'21["register","{marker}x"]'])
        self.respond("POST", f"&sid={sid}", f"4{marker}\x1e4".encode())  # not Socket.IO
        other = self.polling_session()
        response = self.respond("POST", f"&sid={other}", f"x{marker}".encode())  # nor Engine.IO
        self.assertEqual(response.status, 400)
        alice.ws.send_close()

        events = list(logged)
        texts = [formatEvent(event) for event in events]
        self.assertTrue(any("opened over polling" in text for text in texts), texts)
        self.assertTrue(any("a name was registered" in text for text in texts), texts)
        self.assertTrue(any("invalid packet" in text for text in texts), texts)
        for event, text in zip(events, texts):
            self.assertNotIn(marker, text)
            self.assertNotIn(marker, repr(event))


class ServerOutputTests(TestCase):
    timeout = 60

    def test_marker_not_in_server_output(self) -> None:
        """
        The same promise end to end: the official python-socketio client, over polling
        then WebSocket, polling alone and WebSocket alone, sends a marker as an auth
        field, a name, a message, a C{from}, an event name and its argument to a real
        C{twistd} node; the node's whole output (access log and debug events included)
        never shows it, and does show the sessions.
        """
        socketio = require_module("socketio")
        marker = "mk" + uuid.uuid4().hex[:20]

        def talk(url: str) -> list[Any]:
            answers = []
            for transports in (None, ["polling"], ["websocket"]):
                client = socketio.Client(reconnection=False)
                client.connect(url, auth={"room": "lobby", "secret": marker},
                               transports=transports, wait_timeout=10)
                answers.append(client.call("register", marker, timeout=10))
                answers.append(client.call("message", {"message": marker, "from": marker},
                                           timeout=10))
                client.emit(marker, marker)
                client.disconnect()
            return answers

        async def scenario() -> None:
            node = stop_on_cleanup(self, Node("--store", "memory:"))
            await node.start()
            self.assertEqual(await deferToThread(talk, node.http), [True] * 6)
            self.assertEqual(await node.stop(), 0, node.text())
            output = node.text()
            self.assertIn("opened over polling", output)
            self.assertIn("opened over websocket", output)
            self.assertIn("Chat: a name was registered", output)
            self.assertNotIn(marker, output)

        return ensureDeferred(scenario())
