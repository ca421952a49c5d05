"""
Tests for L{gameproto.socketio.engineio}: Engine.IO v4 over raw HTTP requests and raw
WebSocket frames against a Site on a Clock (no reactor, no client library).
Expected values are the official server's, from the protocol notes.
"""

from __future__ import annotations

import base64
from typing import Any

import attrs
import txaio
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import web, wire
from gameproto.socketio.engineio import EngineIOConfig, Session
from gameproto.socketio.server import mount_socketio
from gameproto.testing import (
    HTTPExchange,
    HTTPResponse,
    WebSocketClient,
    fake_context,
)

PATH = "/engine.io/"
INTERVAL = 25.0
TIMEOUT = 20.0
MAX_PAYLOAD = 1000


class RecordingApp:
    """An Engine.IO app that records what happens and echoes C{echo ...} messages."""

    def __init__(self) -> None:
        self.opened: list[Session] = []
        self.messages: list[str | bytes] = []
        self.closed: list[tuple[str, str]] = []

    def session_opened(self, session: Session) -> None:
        self.opened.append(session)

    def message_received(self, session: Session, data: str | bytes) -> None:
        self.messages.append(data)
        if isinstance(data, str) and data.startswith("echo "):
            session.send(data[5:])

    def session_closed(self, session: Session, reason: str) -> None:
        self.closed.append((session.sid, reason))


def packets(response: HTTPResponse) -> list[str]:
    return response.body.decode("utf-8").split("\x1e")


class EngineTestCase(SynchronousTestCase):
    origins: list[str] = []

    def setUp(self) -> None:
        self.clock = Clock()
        # Autobahn's own timers (handshake, close) run on txaio's loop.
        self.patch(txaio.config, "loop", self.clock)
        self.app = RecordingApp()
        self.context = fake_context(self.clock, self.origins)
        root = web.Tree()
        self.engine = mount_socketio(
            root,
            PATH,
            self.app,
            self.context,
            self.clock,
            EngineIOConfig(ping_interval=INTERVAL, ping_timeout=TIMEOUT, max_payload=MAX_PAYLOAD),
        )
        self.site = web.make_site(root, self.clock)

    def request(
        self, method: str, query: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> HTTPExchange:
        return HTTPExchange(self.site, method, PATH + "?" + query, body, headers)

    def respond(
        self, method: str, query: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> HTTPResponse:
        response = self.request(method, query, body, headers).response
        assert response is not None, "no response yet"
        return response

    def handshake(self) -> str:
        response = self.respond("GET", "EIO=4&transport=polling")
        self.assertEqual(response.status, 200)
        open_packet = packets(response)[0]
        sid: str = self.decode_open(open_packet)["sid"]
        return sid

    def decode_open(self, packet: str) -> dict:
        self.assertEqual(packet[0], "0")
        value: dict = wire.decode(packet[1:])
        return value

    def poll(self, sid: str) -> HTTPExchange:
        return self.request("GET", f"EIO=4&transport=polling&sid={sid}")

    def post(self, sid: str, body: bytes) -> HTTPResponse:
        return self.respond("POST", f"EIO=4&transport=polling&sid={sid}", body)

    def websocket(self, query: str, headers: dict[str, str] | None = None) -> WebSocketClient:
        return WebSocketClient(self.site, PATH + "?" + query, headers)


class HandshakeTests(EngineTestCase):
    def test_polling_handshake(self) -> None:
        """
        A polling handshake answers the open packet with exactly the five keys of the
        official server, websocket offered as an upgrade, times in milliseconds.
        """
        response = self.respond("GET", "EIO=4&transport=polling&t=abc")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "text/plain; charset=UTF-8")
        self.assertEqual(response.headers["cache-control"], "no-store")
        [open_packet] = packets(response)
        handshake = self.decode_open(open_packet)
        self.assertEqual(
            set(handshake), {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
        )
        self.assertEqual(handshake["upgrades"], ["websocket"])
        self.assertEqual(handshake["pingInterval"], 25000)
        self.assertEqual(handshake["pingTimeout"], 20000)
        self.assertEqual(handshake["maxPayload"], MAX_PAYLOAD)
        self.assertEqual(len(self.app.opened), 1)

    def test_sid_shape(self) -> None:
        """
        Session ids are 20 URL-safe base64 characters and never repeat.
        """
        sids = {self.handshake() for _ in range(50)}
        self.assertEqual(len(sids), 50)
        for sid in sids:
            self.assertRegex(sid, r"^[A-Za-z0-9_-]{20}$")
            self.assertEqual(len(base64.urlsafe_b64decode(sid)), 15)

    def test_websocket_handshake(self) -> None:
        """
        A session opened over WebSocket gets the open packet as its first frame with
        no upgrade offered.
        """
        ws = self.websocket("EIO=4&transport=websocket")
        self.assertTrue(ws.accepted, ws.handshake)
        [open_packet] = ws.messages()
        handshake = self.decode_open(open_packet)  # type: ignore[arg-type]
        self.assertEqual(handshake["upgrades"], [])
        self.assertIn(handshake["sid"], self.engine.sessions)


class ErrorTests(EngineTestCase):
    origins = ["http://allowed.example"]

    def assertError(self, response: HTTPResponse, code: int, message: str, status: int = 400) -> None:
        self.assertEqual(response.status, status)
        self.assertEqual(response.headers["content-type"], "application/json")
        self.assertEqual(response.json(), {"code": code, "message": message})

    def test_unknown_transport(self) -> None:
        """
        An unknown or missing transport is code 0.
        """
        self.assertError(self.respond("GET", "EIO=4&transport=abc"), 0, "Transport unknown")
        self.assertError(self.respond("GET", "EIO=4"), 0, "Transport unknown")

    def test_unknown_sid(self) -> None:
        """
        A sid the server never issued is code 1, on GET and POST.
        """
        self.assertError(
            self.respond("GET", "EIO=4&transport=polling&sid=nope"), 1, "Session ID unknown"
        )
        self.assertError(
            self.respond("POST", "EIO=4&transport=polling&sid=nope", b"4x"),
            1,
            "Session ID unknown",
        )

    def test_bad_handshake_method(self) -> None:
        """
        A handshake must be a GET: a POST without sid is code 2.
        """
        self.assertError(
            self.respond("POST", "EIO=4&transport=polling", b"4x"), 2, "Bad handshake method"
        )

    def test_websocket_without_upgrade(self) -> None:
        """
        transport=websocket without an Upgrade header is code 3, never a poll.
        """
        sid = self.handshake()
        self.assertError(self.respond("GET", "EIO=4&transport=websocket"), 3, "Bad request")
        self.assertError(
            self.respond("GET", f"EIO=4&transport=websocket&sid={sid}"), 3, "Bad request"
        )

    def test_forbidden_origin(self) -> None:
        """
        An Origin the policy refuses is code 4 with status 403, on polling and on
        a WebSocket handshake.
        """
        headers = {"Origin": "http://evil.example"}
        self.assertError(
            self.respond("GET", "EIO=4&transport=polling", headers=headers), 4, "Forbidden", 403
        )
        ws = self.websocket("EIO=4&transport=websocket", headers)
        self.assertFalse(ws.accepted)
        self.assertEqual(self.engine.sessions, {})

    def test_unsupported_protocol_version(self) -> None:
        """
        EIO=3, a missing EIO and a garbage EIO are code 5.
        """
        for query in ["EIO=3&transport=polling", "transport=polling", "EIO=x&transport=polling"]:
            self.assertError(self.respond("GET", query), 5, "Unsupported protocol version")

    def test_websocket_upgrade_with_unknown_sid(self) -> None:
        """
        A WebSocket handshake naming an unknown sid is refused before the upgrade.
        """
        ws = self.websocket("EIO=4&transport=websocket&sid=nope")
        self.assertFalse(ws.accepted)
        self.assertEqual(ws.status, 400)

    def test_cors_for_allowed_origin(self) -> None:
        """
        An allowed origin gets its own origin back with credentials allowed, and a
        preflight gets 204 with the methods.
        """
        headers = {"Origin": "http://allowed.example"}
        response = self.respond("GET", "EIO=4&transport=polling", headers=headers)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["access-control-allow-origin"], "http://allowed.example")
        self.assertEqual(response.headers["access-control-allow-credentials"], "true")
        preflight = self.respond(
            "OPTIONS",
            "EIO=4&transport=polling",
            headers={**headers, "Access-Control-Request-Headers": "content-type"},
        )
        self.assertEqual(preflight.status, 204)
        self.assertIn("POST", preflight.headers["access-control-allow-methods"])
        self.assertEqual(preflight.headers["access-control-allow-headers"], "content-type")


    def test_headers_not_utf8(self) -> None:
        """
        Header values that are not UTF-8 are refused or echoed like any other, never
        an internal error: an Origin is simply not on the list, and a preflight's
        requested headers come back byte for byte.
        """
        self.assertError(
            self.respond("GET", "EIO=4&transport=polling", headers={"Origin": "http://\xe9vil"}),
            4,
            "Forbidden",
            403,
        )
        preflight = self.request(
            "OPTIONS",
            "EIO=4&transport=polling",
            headers={"Origin": "http://allowed.example", "Access-Control-Request-Headers": "x-\xe9"},
        )
        self.assertIn(b"Access-Control-Allow-Headers: x-\xe9\r\n", preflight.transport.value())
        self.assertEqual(preflight.response.status, 204)  # type: ignore[union-attr]
        self.assertEqual(self.flushLoggedErrors(), [])


class WildcardCORSTests(EngineTestCase):
    origins = ["*"]

    def test_wildcard(self) -> None:
        """
        With every origin allowed the answer is C{*}, without credentials.
        """
        response = self.respond(
            "GET", "EIO=4&transport=polling", headers={"Origin": "http://any.example"}
        )
        self.assertEqual(response.headers["access-control-allow-origin"], "*")
        self.assertNotIn("access-control-allow-credentials", response.headers)


class PollingTests(EngineTestCase):
    def test_post_returns_ok(self) -> None:
        """
        A POST of packets answers C{ok} and hands text and binary messages to the app.
        """
        sid = self.handshake()
        response = self.post(sid, b"4hello\x1ebAQID\x1e4\xc3\xa9t\xc3\xa9")
        self.assertEqual((response.status, response.body), (200, b"ok"))
        self.assertEqual(self.app.messages, ["hello", b"\x01\x02\x03", "été"])

    def test_get_held_until_data(self) -> None:
        """
        A GET with nothing to send stays open and is answered when a message is sent.
        """
        sid = self.handshake()
        get = self.poll(sid)
        self.assertIsNone(get.response)
        self.post(sid, b"4echo hi")
        self.assertEqual(packets(get.response), ["4hi"])  # type: ignore[arg-type]

    def test_payload_batches_and_base64(self) -> None:
        """
        Packets queued between two GETs go out together, separated by \\x1e, binary as
        C{b} plus base64.
        """
        sid = self.handshake()
        session = self.engine.sessions[sid]
        session.send("one")
        session.send(b"\x01\x02\x03\x04")
        session.send("two")
        self.assertEqual(packets(self.poll(sid).response), ["4one", "bAQIDBA==", "4two"])  # type: ignore[arg-type]

    def test_overlapping_get(self) -> None:
        """
        A second GET while one is pending is refused with code 3 and ends the session;
        the first GET gets the close packet.
        """
        sid = self.handshake()
        first = self.poll(sid)
        second = self.poll(sid).response
        assert second is not None
        self.assertEqual((second.status, second.json()["code"]), (400, 3))
        self.assertEqual(packets(first.response), ["1"])  # type: ignore[arg-type]
        self.assertNotIn(sid, self.engine.sessions)

    def test_post_over_max_payload(self) -> None:
        """
        A POST larger than maxPayload gets 413 and the session is closed.
        """
        sid = self.handshake()
        response = self.post(sid, b"4" + b"x" * MAX_PAYLOAD)
        self.assertEqual(response.status, 413)
        self.assertEqual(self.app.closed, [(sid, "payload too large")])
        self.assertEqual(self.poll(sid).response.status, 400)  # type: ignore[union-attr]

    def test_post_at_max_payload(self) -> None:
        """
        A POST of exactly maxPayload bytes is accepted.
        """
        sid = self.handshake()
        response = self.post(sid, b"4" + b"x" * (MAX_PAYLOAD - 1))
        self.assertEqual(response.body, b"ok")

    def test_invalid_packet_closes(self) -> None:
        """
        A body that is not Engine.IO packets (C{abc}, an empty packet, bad base64)
        gets 400 and closes the session.
        """
        for body in [b"abc", b"4a\x1e\x1e4b", b"b!!!", b"\xff\xfe"]:
            sid = self.handshake()
            response = self.post(sid, body)
            self.assertEqual(response.status, 400, body)
            self.assertNotIn(sid, self.engine.sessions)
            self.assertEqual(self.poll(sid).response.json()["code"], 1)  # type: ignore[union-attr]

    def test_client_close_releases_get_with_noop(self) -> None:
        """
        A POSTed close packet ends the session; the pending GET gets a noop.
        """
        sid = self.handshake()
        get = self.poll(sid)
        self.assertEqual(self.post(sid, b"1").body, b"ok")
        self.assertEqual(packets(get.response), ["6"])  # type: ignore[arg-type]
        self.assertEqual(self.app.closed, [(sid, "transport close")])

    def test_aborted_poll_closes(self) -> None:
        """
        A client that goes away during a GET ends its session.
        """
        sid = self.handshake()
        self.poll(sid).abort()
        self.assertEqual(self.app.closed, [(sid, "transport error")])

    def test_server_close_drains(self) -> None:
        """
        When the server closes a session with no GET pending, the next GET still
        receives what was sent, then the close packet; the one after is refused.
        """
        sid = self.handshake()
        session = self.engine.sessions[sid]
        session.send("bye")
        session.close()
        self.assertEqual(packets(self.poll(sid).response), ["4bye", "1"])  # type: ignore[arg-type]
        self.assertEqual(self.poll(sid).response.status, 400)  # type: ignore[union-attr]

    def test_drain_expires(self) -> None:
        """
        Undelivered packets of a closed session are dropped once a live client would
        have polled.
        """
        sid = self.handshake()
        self.engine.sessions[sid].close()
        self.clock.advance(INTERVAL + TIMEOUT)
        self.assertEqual(self.poll(sid).response.status, 400)  # type: ignore[union-attr]


    def test_stop_drops_what_waits(self) -> None:
        """
        Stopping the server ends the sessions closed over polling too: their last
        packets are dropped.
        """
        sid = self.handshake()
        self.engine.sessions[sid].send("bye")
        self.engine.sessions[sid].close()
        self.engine.stop()
        self.assertEqual(self.poll(sid).response.status, 400)  # type: ignore[union-attr]


class HeartbeatTests(EngineTestCase):
    def test_ping_after_interval(self) -> None:
        """
        The server pings pingInterval after the handshake; a pong schedules the next
        ping pingInterval later.
        """
        sid = self.handshake()
        get = self.poll(sid)
        self.clock.advance(INTERVAL - 0.1)
        self.assertIsNone(get.response)
        self.clock.advance(0.1)
        self.assertEqual(packets(get.response), ["2"])  # type: ignore[arg-type]
        self.post(sid, b"3")
        get = self.poll(sid)
        self.clock.advance(INTERVAL - 0.1)
        self.assertIsNone(get.response)
        self.clock.advance(0.1)
        self.assertEqual(packets(get.response), ["2"])  # type: ignore[arg-type]
        self.assertIn(sid, self.engine.sessions)

    def test_ping_timeout_closes(self) -> None:
        """
        Without a pong within pingTimeout the session closes and a GET gets code 1.
        """
        sid = self.handshake()
        self.clock.advance(INTERVAL)
        self.clock.advance(TIMEOUT - 0.1)
        self.assertIn(sid, self.engine.sessions)
        self.clock.advance(0.1)
        self.assertEqual(self.app.closed, [(sid, "ping timeout")])
        response = self.poll(sid).response
        self.assertEqual((response.status, response.json()["code"]), (400, 1))  # type: ignore[union-attr]

    def test_client_ping_closes(self) -> None:
        """
        A v4 client never pings: a ping from it closes the session.
        """
        sid = self.handshake()
        self.post(sid, b"2")
        self.assertEqual(self.app.closed, [(sid, "invalid heartbeat direction")])

    def test_traffic_extends_deadline_once(self) -> None:
        """
        A message while a pong is due restarts the deadline once; a second does not.
        """
        sid = self.handshake()
        self.clock.advance(INTERVAL + TIMEOUT - 1)
        self.post(sid, b"4a")
        self.clock.advance(TIMEOUT - 1)
        self.post(sid, b"4b")
        self.assertIn(sid, self.engine.sessions)
        self.clock.advance(1)
        self.assertEqual(self.app.closed, [(sid, "ping timeout")])


class WebSocketTests(EngineTestCase):
    def open_ws(self) -> tuple[WebSocketClient, str]:
        ws = self.websocket("EIO=4&transport=websocket")
        [open_packet] = ws.messages()
        # What follows the open packet waits until it is written: a reactor turn.
        self.clock.advance(0)
        return ws, self.decode_open(open_packet)["sid"]  # type: ignore[arg-type]

    def test_messages(self) -> None:
        """
        Text frames carry C{4<text>}; binary frames carry raw bytes both ways.
        """
        ws, sid = self.open_ws()
        ws.send_text("4echo hi")
        ws.send_binary(b"\x00\x01")
        self.engine.sessions[sid].send(b"\x02")
        self.assertEqual(ws.messages(), ["4hi", b"\x02"])
        self.assertEqual(self.app.messages, ["echo hi", b"\x00\x01"])

    def test_ping_pong(self) -> None:
        """
        Over WebSocket the ping is a C{2} frame; without a C{3} the session closes.
        """
        ws, sid = self.open_ws()
        self.clock.advance(INTERVAL)
        self.assertEqual(ws.messages(), ["2"])
        ws.send_text("3")
        self.clock.advance(INTERVAL)
        self.assertEqual(ws.messages(), ["2"])
        self.clock.advance(TIMEOUT - 0.1)
        self.assertFalse(ws.closed)
        self.clock.advance(0.1)
        ws.messages()
        self.assertTrue(ws.closed)
        self.assertEqual(self.app.closed, [(sid, "ping timeout")])

    def test_invalid_packet_closes(self) -> None:
        """
        An unknown packet type in a text frame closes the session and the socket.
        """
        ws, sid = self.open_ws()
        ws.send_text("9")
        ws.messages()
        self.assertTrue(ws.closed)
        self.assertEqual(self.app.closed, [(sid, "parse error")])

    def test_nothing_delivered_after_close(self) -> None:
        """
        What a client sends after the server closed its WebSocket session, before
        it has read the close frame, does not reach the app: the session is over.
        """
        ws, sid = self.open_ws()
        self.engine.sessions[sid].close()
        ws.send_text("4late")
        self.assertEqual(ws.messages(), [])
        self.assertEqual(ws.close_code, 1000)
        self.assertEqual(self.app.messages, [])
        self.assertEqual(self.app.closed, [(sid, "server disconnect")])

    def test_message_over_max_payload(self) -> None:
        """
        A WebSocket message over maxPayload is closed by Autobahn with 1009.
        """
        ws, sid = self.open_ws()
        ws.send_text("4" + "x" * MAX_PAYLOAD)
        ws.messages()
        self.assertEqual(ws.close_code, 1009)
        # The session goes with its socket, and the app never saw the message.
        ws.send_close(1009)
        self.assertNotIn(sid, self.engine.sessions)
        self.assertEqual(self.app.closed, [(sid, "transport close")])
        self.assertEqual(self.app.messages, [])


class UpgradeTests(EngineTestCase):
    def test_upgrade(self) -> None:
        """
        The upgrade from polling: C{2probe} is answered C{3probe} on the WebSocket,
        the pending GET is released with a noop, C{5} moves the session to the
        WebSocket with what was queued, and polling is refused afterwards.
        """
        sid = self.handshake()
        get = self.poll(sid)
        ws = self.websocket(f"EIO=4&transport=websocket&sid={sid}")
        self.assertTrue(ws.accepted)
        self.assertIsNone(get.response)
        ws.send_text("2probe")
        self.assertEqual(ws.messages(), ["3probe"])
        self.assertEqual(packets(get.response), ["6"])  # type: ignore[arg-type]
        # A GET during the upgrade is released at once.
        self.assertEqual(packets(self.poll(sid).response), ["6"])  # type: ignore[arg-type]
        self.engine.sessions[sid].send("queued")
        ws.send_text("5")
        self.assertEqual(self.engine.sessions[sid].transport, "websocket")
        self.assertEqual(ws.messages(), ["4queued"])
        ws.send_text("4echo after")
        self.assertEqual(ws.messages(), ["4after"])
        response = self.poll(sid).response
        self.assertEqual((response.status, response.json()["code"]), (400, 3))  # type: ignore[union-attr]
        self.assertEqual(self.post(sid, b"4x").status, 400)

    def test_second_websocket_closed(self) -> None:
        """
        A WebSocket for a session already upgraded is accepted, then closed; the
        first WebSocket carries on, both ways.
        """
        sid = self.handshake()
        ws = self.websocket(f"EIO=4&transport=websocket&sid={sid}")
        ws.send_text("2probe")
        ws.send_text("5")
        self.assertEqual(ws.messages(), ["3probe"])
        extra = self.websocket(f"EIO=4&transport=websocket&sid={sid}")
        self.assertTrue(extra.accepted)
        extra.messages()
        self.assertTrue(extra.closed)
        extra.send_close()
        self.assertIn(sid, self.engine.sessions)
        ws.send_text("4echo still here")
        self.assertEqual(ws.messages(), ["4still here"])
        self.assertFalse(ws.closed)
        self.assertEqual(self.app.messages, ["echo still here"])
        self.assertEqual(self.app.closed, [])

    def test_probe_failure_keeps_polling(self) -> None:
        """
        A packet other than the probe on the upgrading socket closes that socket;
        the session carries on over polling.
        """
        sid = self.handshake()
        ws = self.websocket(f"EIO=4&transport=websocket&sid={sid}")
        ws.send_text("4nope")
        ws.messages()
        self.assertTrue(ws.closed)
        self.engine.sessions[sid].send("still here")
        self.assertEqual(packets(self.poll(sid).response), ["4still here"])  # type: ignore[arg-type]

    def test_upgrade_timeout(self) -> None:
        """
        A probe that never completes with C{5} is closed after upgradeTimeout.
        """
        sid = self.handshake()
        ws = self.websocket(f"EIO=4&transport=websocket&sid={sid}")
        ws.send_text("2probe")
        self.clock.advance(10)
        ws.messages()
        self.assertTrue(ws.closed)
        self.assertEqual(self.engine.sessions[sid].transport, "polling")


class ShutdownTests(EngineTestCase):
    def test_shutdown_closes_polling_and_websocket(self) -> None:
        """
        A graceful shutdown closes polling sessions (the pending GET gets the close
        packet) and WebSocket sessions (close code 4012); new handshakes are refused.
        """
        sid = self.handshake()
        get = self.poll(sid)
        ws = self.websocket("EIO=4&transport=websocket")
        ws.messages()
        self.assertEqual(len(self.context.connections), 2)
        self.context.connections.close_all()
        self.assertEqual(packets(get.response), ["1"])  # type: ignore[arg-type]
        ws.messages()
        self.assertEqual(ws.close_code, 4012)
        self.assertEqual(self.engine.sessions, {})
        refused = self.respond("GET", "EIO=4&transport=polling")
        self.assertEqual((refused.status, refused.json()["code"]), (403, 4))

    def test_upgrade_counts_once(self) -> None:
        """
        An upgraded session is counted once against its address: by its WebSocket.
        """
        sid = self.handshake()
        ws = self.websocket(f"EIO=4&transport=websocket&sid={sid}")
        ws.send_text("2probe")
        ws.send_text("5")
        self.assertEqual(len(self.context.connections), 1)
        self.engine.sessions[sid].close()
        ws.messages()
        ws.send_close()
        self.assertEqual(len(self.context.connections), 0)


@attrs.frozen
class Member:
    username: str


def token_context(clock: Clock) -> wire.WireContext:
    """A context whose handshakes name their user: C{Authorization: Token NAME}."""

    def authenticate(request: Any, cookies_allowed: bool) -> Deferred[Member | None]:
        header = request.headers.get("authorization", "")
        return succeed(Member(header[len("Token ") :]) if header.startswith("Token ") else None)

    return wire.WireContext(
        clock=clock,
        connections=wire.Connections(wire.ServerLimits(), clock),
        origins=wire.OriginPolicy.from_list([]),
        authenticate=authenticate,
    )


class ClientRateTests(SynchronousTestCase):
    """
    The packet budget is per client: its user's when the handshake names one, else
    its address's; shared by its sessions over both transports; kept after its last
    session until it is as good as new.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(txaio.config, "loop", self.clock)
        self.app = RecordingApp()
        root = web.Tree()
        self.engine = mount_socketio(
            root,
            PATH,
            self.app,
            token_context(self.clock),
            self.clock,
            EngineIOConfig(messages_per_second=10, burst=20),
        )
        self.site = web.make_site(root, self.clock)
        self.port = 30000

    def websocket(self, address: str, user: str | None = None) -> tuple[WebSocketClient, Session]:
        self.port += 1
        headers = {} if user is None else {"Authorization": f"Token {user}"}
        ws = WebSocketClient(
            self.site, PATH + "?EIO=4&transport=websocket", headers, self.port, address
        )
        [open_packet] = ws.messages()
        self.clock.advance(0)
        return ws, self.engine.sessions[wire.decode(str(open_packet)[1:])["sid"]]

    def polling(self, address: str, user: str | None = None) -> Session:
        self.port += 1
        headers = {} if user is None else {"Authorization": f"Token {user}"}
        response = HTTPExchange(
            self.site, "GET", PATH + "?EIO=4&transport=polling", b"", headers, self.port, address
        ).response
        assert response is not None
        return self.engine.sessions[wire.decode(response.body[1:])["sid"]]

    def post(self, session: Session, body: bytes) -> None:
        self.port += 1
        HTTPExchange(
            self.site, "POST", PATH + f"?EIO=4&transport=polling&sid={session.sid}", body,
            port=self.port, address=session.address,
        )

    def test_user_across_addresses_and_transports(self) -> None:
        """
        Alice's WebSocket from one address and her polling session from another
        share one budget; Bob, and an anonymous client, at Alice's first address
        have their own.
        """
        alice_ws, alice = self.websocket("10.0.0.1", "alice")
        alice_polling = self.polling("10.0.0.2", "alice")
        self.assertEqual((alice.user, alice_polling.user), (Member("alice"), Member("alice")))
        for i in range(20):
            alice_ws.send_text(f"4a{i}")
        self.assertEqual(len(self.app.messages), 20)
        self.post(alice_polling, b"4more")
        bob_ws, bob = self.websocket("10.0.0.1", "bob")
        bob_ws.send_text("4bob")
        anonymous_ws, anonymous = self.websocket("10.0.0.1")
        self.assertIsNone(anonymous.user)
        anonymous_ws.send_text("4anonymous")
        self.assertEqual(self.app.messages[20:], ["bob", "anonymous"])

    def test_budget_outlives_the_session(self) -> None:
        """
        A client's budget is kept after its last session closes for burst / rate + 1
        seconds (3 s here); past that, the next session that opens or closes anywhere
        forgets it, and its memory goes with it.
        """
        rates = self.engine.client_rates
        assert rates is not None
        _, session = self.websocket("10.0.0.1")
        key = ("address", "10.0.0.1")
        session.close()
        self.clock.advance(2.9)
        self.websocket("10.0.0.9")
        self.assertIn(key, rates)
        _, again = self.websocket("10.0.0.1")  # back in time: the same budget
        again.close()
        self.clock.advance(2.9)
        self.websocket("10.0.0.9")
        self.assertIn(key, rates)
        self.clock.advance(0.2)
        self.websocket("10.0.0.9")
        self.assertNotIn(key, rates)
        self.assertEqual(len(rates), 1)  # 10.0.0.9's, whose sessions are open
