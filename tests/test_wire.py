"""gameproto.wire: codec, origins, rate limits, connection caps and the JSON base protocol."""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.twisted.resource import WebSocketResource
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import wire, web
from gameproto.testing import WebSocketClient
from gameproto.testing.websocket import PONG, TEXT, client_frame
from gameproto.wire import Malformed
from tests.echo import Echo


class CodecTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """Objects survive encode/decode; text or bytes decode alike."""
        value = {"a": [1, 2.5, None, True], "b": "é"}
        self.assertEqual(wire.decode(wire.encode(value)), value)
        self.assertEqual(wire.decode('{"x": 1}'), {"x": 1})

    def test_invalid_json(self) -> None:
        """Broken JSON, NaN, infinite numbers and lone surrogates are InvalidJSON."""
        for payload in [b"{", b"NaN", b"1e400", b'"\\ud800"', b"\xff"]:
            with self.assertRaises(wire.InvalidJSON, msg=payload):
                wire.decode(payload)

    def test_unencodable(self) -> None:
        """A lone surrogate or an integer past 64 bits is UnencodableValue, not TypeError."""
        for value in ["\ud800", 2**64, object()]:
            with self.assertRaises(wire.UnencodableValue):
                wire.encode(value)


class OriginPolicyTests(SynchronousTestCase):
    def test_same_origin_default(self) -> None:
        """By default only a page of the same host and port may connect."""
        policy = wire.OriginPolicy()
        self.assertTrue(policy.allows("http://localhost:8000", "localhost:8000"))
        self.assertTrue(policy.allows("http://Example.org", "example.org:80"))
        self.assertTrue(policy.allows("https://example.org", "example.org:443"))
        self.assertFalse(policy.allows("http://evil.example", "localhost:8000"))
        self.assertFalse(policy.allows("http://localhost:9000", "localhost:8000"))
        self.assertFalse(policy.allows("null", "localhost:8000"))
        self.assertFalse(policy.allows("http://localhost:x", "localhost:8000"))

    def test_no_origin(self) -> None:
        """A client that sends no Origin (a bot) is always allowed."""
        self.assertTrue(wire.OriginPolicy().allows("", "localhost:8000"))
        self.assertTrue(wire.OriginPolicy().allows(None, None))

    def test_added_origins(self) -> None:
        """--allowed-origin adds exact origins; cookies stay allowed."""
        policy = wire.OriginPolicy.from_list(["https://game.example/", "null"])
        self.assertTrue(policy.allows("https://GAME.example", "localhost:8000"))
        self.assertTrue(policy.allows("null", "localhost:8000"))
        self.assertFalse(policy.allows("https://other.example", "localhost:8000"))
        self.assertTrue(policy.cookies_allowed)

    def test_star(self) -> None:
        """* allows every origin and turns cookie authentication off."""
        policy = wire.OriginPolicy.from_list(["*"])
        self.assertTrue(policy.allows("http://anything.example", "localhost:8000"))
        self.assertFalse(policy.cookies_allowed)


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_rate(self) -> None:
        """A bucket gives its burst at once, then refills at its rate up to the burst."""
        clock = Clock()
        bucket = wire.TokenBucket(rate=10, burst=3, clock=clock)
        self.assertEqual([bucket.take() for _ in range(4)], [True, True, True, False])
        clock.advance(0.1)
        self.assertEqual([bucket.take(), bucket.take()], [True, False])
        clock.advance(100)
        self.assertEqual(sum(bucket.take() for _ in range(10)), 3)

    def test_fractions_carry_over(self) -> None:
        """A refused take keeps the fraction refilled so far; a full bucket stays full."""
        clock = Clock()
        bucket = wire.TokenBucket(rate=10, burst=2, clock=clock)
        bucket.take()
        bucket.take()
        clock.advance(0.06)
        self.assertFalse(bucket.take())  # 0.6 of a token
        self.assertAlmostEqual(bucket.wait(), 0.04)
        clock.advance(0.05)
        self.assertTrue(bucket.take())  # 1.1 tokens, 0.1 left
        self.assertAlmostEqual(bucket.wait(), 0.09)
        clock.advance(1)
        self.assertTrue(bucket.full)
        self.assertEqual([bucket.take() for _ in range(3)], [True, True, False])


class RateLimiterTests(SynchronousTestCase):
    def test_verdicts(self) -> None:
        """Within the burst: allow; then drop with one warning a second; close after grace."""
        clock = Clock()
        limiter = wire.RateLimiter.per_second(rate=1, burst=2, grace=3, clock=clock)
        V = wire.RateVerdict
        self.assertEqual([limiter.check() for _ in range(4)], [V.ALLOW, V.ALLOW, V.WARN, V.DROP])
        verdicts = []
        for _ in range(40):
            clock.advance(0.1)
            verdicts.append(limiter.check())
        self.assertIn(V.ALLOW, verdicts)  # the bucket refills at 1/s
        self.assertEqual(verdicts.count(V.WARN), 2)  # at most one a second
        self.assertNotIn(V.CLOSE, verdicts[:25])  # 2.5 s into a 3 s grace
        self.assertIn(V.CLOSE, verdicts[-10:])

    def test_episode_ends_after_a_quiet_second(self) -> None:
        """A second without drops ends the episode: its time does not count."""
        clock = Clock()
        limiter = wire.RateLimiter.per_second(rate=1, burst=1, grace=3, clock=clock)
        for _ in range(10):
            limiter.check()
            limiter.check()
            clock.advance(1.5)
        self.assertNotEqual(limiter.check(), wire.RateVerdict.CLOSE)


def authenticate_by_header(request: Any, cookies_allowed: bool) -> Any:
    token = request.headers.get("authorization")
    if token == "Token broken":
        return fail(RuntimeError("store down"))
    return succeed("ann" if token == "Token good" else None)


class JSONProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(txaio.config, "loop", self.clock)
        self.limits = wire.ServerLimits(connections_per_address=2)
        self.connections = wire.Connections(self.limits, self.clock)
        self.context = wire.WireContext(
            clock=self.clock,
            connections=self.connections,
            origins=wire.OriginPolicy(),
            authenticate=authenticate_by_header,
            server_limits=self.limits,
        )
        endpoint = wire.EndpointLimits(max_message_size=1024, messages_per_second=10, burst=5)
        factory = wire.make_factory(Echo, endpoint, self.context)
        root = web.Tree()
        web.mount(root, "/ws/echo", WebSocketResource(factory))
        self.site = web.make_site(root, self.clock)

    def connect(self, headers: dict[str, str] | None = None, port: int = 40000) -> Any:
        return WebSocketClient(self.site, "/ws/echo", headers, port)

    def test_open_and_echo(self) -> None:
        """A handshake is accepted, the user authenticated, objects echoed."""
        ws = self.connect({"Authorization": "Token good"})
        self.assertIn(b"101", ws.handshake.split(b"\r\n")[0])
        self.assertEqual(ws.json_messages(), [{"hello": "ann"}])
        ws.send_json({"x": 1})
        self.assertEqual(ws.json_messages(), [{"x": 1}])

    def test_upgrade_let_go_once_open(self) -> None:
        """
        Once open, a connection keeps neither Autobahn's handshake nor Twisted Web's
        channel of the upgrade request: its transport's producer only pauses and
        resumes the transport's reading, as the channel did.
        """
        ws = self.connect({"Authorization": "Token good"})
        self.assertEqual(ws.json_messages(), [{"hello": "ann"}])
        for leftover in ("http_headers", "http_request_data", "http_request_path",
                         "http_request_params", "http_request_host"):
            self.assertIsNone(getattr(ws.protocol, leftover), leftover)
        # What a protocol reads to decide what the connection is, perhaps after a lookup.
        self.assertIsNotNone(ws.protocol.http_request_uri)
        producer = ws.transport.producer
        self.assertIsInstance(producer, wire.PauseReading)
        self.assertTrue(ws.transport.streaming)
        producer.pauseProducing()
        self.assertEqual(ws.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(ws.transport.producerState, "producing")
        ws.send_json({"x": 1})
        self.assertEqual(ws.json_messages(), [{"x": 1}])

    def test_frame_unmasker_let_go(self) -> None:
        """
        Once a message or a pong has been read, the connection keeps no unmasker for it;
        the next frames are unmasked as before, whole or a byte at a time.
        """
        ws = self.connect({"Authorization": "Token good"})
        self.assertEqual(ws.json_messages(), [{"hello": "ann"}])
        ws.send_json({"x": 1})
        self.assertIsNone(ws.protocol.current_frame_masker)
        self.assertEqual(ws.json_messages(), [{"x": 1}])
        ws.send(b"beat", PONG)
        self.assertIsNone(ws.protocol.current_frame_masker)
        for byte in client_frame(TEXT, wire.encode({"y": "two"})):
            ws.protocol.dataReceived(bytes([byte]))
        self.assertIsNone(ws.protocol.current_frame_masker)
        self.assertEqual(ws.json_messages(), [{"y": "two"}])
        self.assertFalse(ws.disconnected)

    def test_send_queue(self) -> None:
        """
        An open connection's queue of chopped and synchronous sends is a L{wire.SendQueue};
        such sends go out in order, after what was sent before them.
        """
        ws = self.connect({"Authorization": "Token good"})
        self.assertEqual(ws.json_messages(), [{"hello": "ann"}])
        protocol = ws.protocol
        self.assertIsInstance(protocol.send_queue, wire.SendQueue)
        protocol.sendMessage(b'{"n":1}', sync=True)
        protocol.sendMessage(b'{"n":2}')
        protocol.sendFrame(opcode=1, payload=b'{"n":3}', chopsize=2)
        # Autobahn writes a chop per reactor turn.
        for _ in range(10):
            self.clock.advance(0.001)
        self.assertEqual(ws.json_messages(), [{"n": 1}, {"n": 2}, {"n": 3}])
        self.assertEqual(len(protocol.send_queue), 0)
        ws.send_json({"x": 1})
        self.assertEqual(ws.json_messages(), [{"x": 1}])

    def test_unauthenticated_is_none(self) -> None:
        """Without a valid token the protocol opens with user None."""
        self.assertEqual(self.connect().json_messages(), [{"hello": None}])

    def test_authentication_failure_logged_not_500(self) -> None:
        """A failing authenticator opens the connection unauthenticated and logs."""
        ws = self.connect({"Authorization": "Token broken"})
        self.assertEqual(ws.json_messages(), [{"hello": None}])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_malformed_frames(self) -> None:
        """Binary, invalid JSON and non-objects each reach malformedFrame; the socket lives."""
        ws = self.connect()
        ws.json_messages()
        ws.send(b"\x00\x01", opcode=0x2)
        ws.send(b"{nope")
        ws.send(b"[1, 2]")
        ws.send(b'"\\ud800"')
        ws.send_json({"still": "alive"})
        self.assertEqual(
            ws.json_messages(),
            [
                {"error": Malformed.BINARY.value},
                {"error": Malformed.INVALID_JSON.value},
                {"error": Malformed.NOT_AN_OBJECT.value},
                {"error": Malformed.INVALID_JSON.value},
                {"still": "alive"},
            ],
        )

    def test_too_big_closes_1009(self) -> None:
        """A message over the endpoint's limit is closed by Autobahn with 1009 and a reason."""
        ws = self.connect()
        ws.json_messages()
        ws.send(b'{"x": "' + b"a" * 2000 + b'"}')
        closes = ws.closes()
        self.assertEqual(len(closes), 1)
        self.assertEqual(closes[0][0], 1009)
        self.assertIn("exceeds payload limit", closes[0][1])

    def test_invalid_utf8_closes_1007(self) -> None:
        """Invalid UTF-8 in a text frame is closed by Autobahn with 1007."""
        ws = self.connect()
        ws.json_messages()
        ws.send(b'{"x": "\xff"}')
        self.assertEqual([code for code, _ in ws.closes()], [1007])

    def test_handler_bug_closes_4011_alone(self) -> None:
        """An exception in a handler closes that connection with 4011; others carry on."""
        bystander = self.connect(port=40001)
        bystander.json_messages()
        ws = self.connect()
        ws.json_messages()
        ws.send_json({"crash": True})
        self.assertEqual(ws.closes(), [(4011, "internal error")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        bystander.send_json({"ok": 1})
        self.assertEqual(bystander.json_messages(), [{"ok": 1}])

    def test_origin_refused(self) -> None:
        """A page from another origin is refused with HTTP 403 before the upgrade."""
        ws = self.connect({"Origin": "http://evil.example"})
        self.assertIn(b"403", ws.handshake.split(b"\r\n")[0])
        self.assertEqual(len(self.connections), 0)

    def test_same_origin_accepted(self) -> None:
        """A page served by the same host (the request's Host: localhost) is accepted."""
        ws = self.connect({"Origin": "http://localhost"})
        self.assertIn(b"101", ws.handshake.split(b"\r\n")[0])

    def test_per_address_cap(self) -> None:
        """Past the per-address cap a connection is closed with 4029; a slot frees on close."""
        first = self.connect(port=1)
        self.connect(port=2)
        third = self.connect(port=3)
        self.assertEqual(third.closes(), [(4029, "too many connections")])
        first.transport.loseConnection()
        self.assertEqual(len(self.connections), 1)
        fourth = self.connect(port=4)
        self.assertEqual(fourth.json_messages(), [{"hello": None}])

    def test_rate_limit(self) -> None:
        """Beyond the burst messages are dropped with at most one error a second."""
        ws = self.connect()
        ws.json_messages()
        for i in range(8):
            ws.send_json({"n": i})
        self.assertEqual(ws.json_messages(), [{"n": i} for i in range(5)] + [{"error": "slow down"}])
        self.clock.advance(0.1)  # one token back
        ws.send_json({"n": 99})
        self.assertEqual(ws.json_messages(), [{"n": 99}])

    def test_rate_limit_closes_after_grace(self) -> None:
        """A client over its rate without pause for 5 s is closed with 4008."""
        ws = self.connect()
        ws.json_messages()
        for _ in range(6):
            ws.send_json({})

        def three_times_the_rate(seconds: float) -> None:
            for _ in range(round(seconds / 0.1)):
                self.clock.advance(0.1)
                for _ in range(3):
                    ws.send_json({})

        three_times_the_rate(4.5)
        self.assertEqual(ws.closes(), [])
        three_times_the_rate(0.6)
        self.assertEqual(ws.closes(), [(4008, "rate limit exceeded")])

    def test_shutdown_closes_4012(self) -> None:
        """close_all closes every open connection with 4012 and fires once they are gone."""
        ws = self.connect()
        ws.json_messages()
        done = self.connections.close_all()
        self.assertEqual(ws.closes(), [(4012, "server shutting down")])
        self.assertNoResult(done)
        ws.transport.loseConnection()
        self.successResultOf(done)

    def test_shutdown_gives_up_after_grace(self) -> None:
        """A client that never answers the close does not hold the shutdown forever."""
        self.connect().json_messages()
        done = self.connections.close_all()
        self.assertNoResult(done)
        self.clock.advance(self.limits.shutdown_grace)
        self.successResultOf(done)

    def test_close_handshake_timeout_ends_cleanly(self) -> None:
        """
        A peer that has not answered the server's close within the close handshake
        timeout (1 s) is not aborted, which would discard what is still queued for it:
        the connection is ended cleanly, and aborted only if it is still there after the
        shutdown grace.
        """
        ws = self.connect()
        ws.json_messages()
        ws.protocol.closeWith(wire.CloseCode.NORMAL, "done")
        lose, abort = [], []
        self.patch(ws.transport, "loseConnection", lambda: lose.append(True))
        self.patch(ws.transport, "abortConnection", lambda: abort.append(True))
        self.clock.advance(1.0)
        self.assertEqual((lose, abort), ([True], []))
        self.clock.advance(self.limits.shutdown_grace)
        self.assertEqual((lose, abort), ([True], [True]))

    def test_no_redirect_on_plain_get(self) -> None:
        """A plain GET with ?redirect= on a WebSocket path is not redirected (webStatus off)."""
        from gameproto.testing import request

        response = request(self.site, "GET", "/ws/echo?redirect=https://example.org")
        self.assertNotIn(response.status, (301, 302, 303, 307, 308))
        self.assertNotIn("location", response.headers)
        self.assertNotIn(b"example.org", response.body)


    def test_occasional_bursts_never_close(self) -> None:
        """Bursts over the limit separated by quiet seconds never add up to a close."""
        ws = self.connect()
        ws.json_messages()
        for _ in range(10):
            for _ in range(8):
                ws.send_json({})
            self.clock.advance(1.5)
        self.assertEqual(ws.closes(), [])
