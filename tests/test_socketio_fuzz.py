"""
Fuzzing of L{gameproto.socketio} with the chat mounted on it: malformed polling
requests, raw HTTP garbage and malformed WebSocket frames (random bytes, truncated
packets, wrong types, bad sids, bad JSON in Socket.IO packets, absurd attachment
counts...), generated from a seeded C{random.Random} so that a failure replays
exactly.  Whatever arrives, the server must keep serving a well-behaved client, must
never send a traceback to anyone, and must log no failure.

Most of it runs against a Site on a C{Clock} with in-memory transports (seconds for
10,000 inputs); a smaller part goes over real TCP.
"""

from __future__ import annotations

import base64
import random
import struct
from typing import Any, Callable
from urllib.parse import quote

import txaio
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from gameproto import web, wire
from gameproto.chat import Chat, mount_chat
from gameproto.socketio.engineio import EngineIOConfig
from gameproto.testing import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FakeConnection,
    HTTPExchange,
    WebSocketClient,
    client_frame,
    fake_context,
)

PATH = "/socket.io/"
SEED = 0x5EED_C4A7
CASES = 10_000
TCP_CASES = 300
# Small enough that "over maxPayload" inputs stay cheap, large enough for any chat
# message (4000 code points).
MAX_PAYLOAD = 20_000
INTERVAL = 25.0
TIMEOUT = 20.0
# What a traceback looks like in a response, whatever framework formatted it.
TRACEBACK_MARKERS = (b"Traceback", b'File "')
GOOD_ROOM = "survivors"

# Well-formed Socket.IO packets (without the Engine.IO 4) that mutations start from.
SOCKETIO_SEEDS = [
    "0",
    '0{"room":"lobby"}',
    '0{"room":"fuzz"}',
    "0/nope,",
    "0/admin",
    "1",
    "1/nope,",
    '2["register","fuzzer"]',
    '21["register","Server"]',
    '20["message",{"message":"hi"}]',
    '2["message",{"from":"x","message":"hi"}]',
    '2/nope,5["message",{"message":"hi"}]',
    "30[]",
    '37["x"]',
    '4{"message":"x"}',
    '51-["message",{"_placeholder":true,"num":0}]',
    '52-3["register",{"_placeholder":true,"num":1}]',
    '61-0[{"_placeholder":true,"num":0}]',
    '2["connect"]',
    '2["newListener"]',
    "2[1]",
]
ENGINE_SEEDS = ["0", "1", "2", "2probe", "3", "3probe", "5", "6", "4", "7", "8x"]
# Characters that matter to the parsers: delimiters, digits, escapes, separators,
# and text that is not ASCII or not valid in UTF-16.
INTERESTING = '[]{}",:-/0123456789\x1eb\\ \x00\x7fé\u2028\U0001f600\ud800nulltruefalse'


class Fuzzer:
    """Malformed inputs of every kind, all drawn from one seeded C{random.Random}."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choice(self, options: list[Any]) -> Any:
        return self.rng.choice(options)

    def random_bytes(self, maximum: int = 64) -> bytes:
        return self.rng.randbytes(self.rng.randrange(maximum + 1))

    def random_text(self, maximum: int = 32) -> str:
        return "".join(self.rng.choice(INTERESTING) for _ in range(self.rng.randrange(maximum + 1)))

    def mutate(self, text: str) -> str:
        """One malformation of C{text}."""
        rng = self.rng
        how = rng.randrange(12)
        at = rng.randrange(len(text) + 1)
        if how == 0:  # truncated
            return text[:at]
        if how == 1:  # a character inserted
            return text[:at] + rng.choice(INTERESTING) + text[at:]
        if how == 2:  # a character replaced
            return text[:at] + rng.choice(INTERESTING) + text[at + 1 :]
        if how == 3:  # a slice repeated
            end = rng.randrange(at, len(text) + 1)
            return text[:end] + text[at:end] * rng.randrange(1, 50) + text[end:]
        if how == 4:  # an absurd attachment count
            count = rng.choice(["0", "-1", "11", "9" * rng.randrange(1, 400), "1e3", "٣"])
            return rng.choice("56") + count + "-" + text[1:]
        if how == 5:  # deep nesting: the JSON parser must refuse it, not recurse forever
            depth = rng.choice([10, 500, 1100, 5000])
            return "2" + "[" * depth + '"x"' + "]" * depth
        if how == 6:  # numbers JSON or Python may choke on
            number = rng.choice(["1e999", "-1e999", "NaN", "Infinity", "9" * 5000, "-0", "1.5e-400"])
            return rng.choice(["2", "20", "3", "0"]) + f'["message",{{"message":{number}}}]'
        if how == 7:  # strings that are not text
            bad = rng.choice(['"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"\\x41"', '"\\'])
            return f'2["register",{bad}]'
        if how == 8:  # a huge ack id
            return "2" + "9" * rng.randrange(1, 40) + '["message",{"message":"x"}]'
        if how == 9:  # a namespace that never ends or is strange
            return "2/" + self.random_text(20) + rng.choice([",", ""]) + '["x"]'
        if how == 10:  # a wrong type digit, or none
            return rng.choice(["7", "9", "a", "", "-", " "]) + text[1:]
        return self.random_text(40)

    def socketio_text(self) -> str:
        seed = self.choice(SOCKETIO_SEEDS)
        return seed if self.rng.random() < 0.2 else self.mutate(seed)

    def engine_text(self) -> str:
        """The text of one Engine.IO packet, mostly a (malformed) Socket.IO message."""
        roll = self.rng.random()
        if roll < 0.7:
            return "4" + self.socketio_text()
        if roll < 0.9:
            return self.choice(ENGINE_SEEDS) + self.random_text(8)
        return self.random_text(16)

    def payload(self) -> bytes:
        """A polling POST body."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return self.random_bytes(200)
        if roll < 0.15:
            return b"\xff\xfe" + self.random_bytes(20)  # not UTF-8
        if roll < 0.2:
            return b"4" + b"x" * (MAX_PAYLOAD + rng.randrange(-2, 3))  # around maxPayload
        records = []
        for _ in range(rng.randrange(1, 6)):
            kind = rng.random()
            if kind < 0.15:
                records.append("b" + rng.choice([base64.b64encode(self.random_bytes(8)).decode(), "!!", "QQ", "Q"]))
            else:
                records.append(self.engine_text())
        return "\x1e".join(records).encode("utf-8", "surrogatepass")

    def query(self, live_sids: list[str], dead_sids: list[str]) -> str:
        """A query string with every parameter possibly wrong, missing or repeated."""
        rng = self.rng
        params: list[tuple[str, str]] = []
        if rng.random() < 0.9:
            params.append(("EIO", rng.choice(["4", "4", "4", "3", "5", "", "04", "x", "4.0", "٤"])))
        if rng.random() < 0.9:
            params.append(
                ("transport", rng.choice(["polling", "polling", "websocket", "flashsocket", "", "POLLING"]))
            )
        sid_roll = rng.random()
        if sid_roll < 0.45 and live_sids:
            params.append(("sid", rng.choice(live_sids)))
        elif sid_roll < 0.55 and dead_sids:
            params.append(("sid", rng.choice(dead_sids)))
        elif sid_roll < 0.7:
            params.append(("sid", rng.choice(["", "nope", "A" * 20, "x" * 5000, self.random_text(20)])))
        if rng.random() < 0.3:
            params.append(("t", self.random_text(10)))
        if rng.random() < 0.05 and params:
            params.append(rng.choice(params))  # a repeated parameter
        rng.shuffle(params)
        query = "&".join(f"{quote(k)}={quote(v, safe='', errors='surrogatepass')}" for k, v in params)
        if rng.random() < 0.03:
            query += "&%ff=%fe&sid=%ff"  # percent-encoded bytes that are not UTF-8
        return query

    def http_request(self, live_sids: list[str], dead_sids: list[str], close: bool = False) -> bytes:
        """One complete HTTP/1.1 request to the Engine.IO path, mostly malformed."""
        rng = self.rng
        method = rng.choice(["GET", "GET", "POST", "POST", "PUT", "OPTIONS", "HEAD", "DELETE", "FOO"])
        body = self.payload() if method in ("POST", "PUT") or rng.random() < 0.05 else b""
        headers = {"Host": rng.choice(["localhost", "localhost", "", "a" * 300])}
        if rng.random() < 0.2:
            headers["Origin"] = rng.choice(["http://localhost", "http://evil.example", "null", ""])
        if rng.random() < 0.1:
            headers["Upgrade"] = rng.choice(["websocket", "h2c", ""])
        if rng.random() < 0.2:
            headers["Content-Type"] = rng.choice(
                ["text/plain;charset=UTF-8", "application/octet-stream", "application/json", "\x01"]
            )
        if rng.random() < 0.1:
            headers["Access-Control-Request-Headers"] = self.random_text(10).encode(
                "latin-1", "replace"
            ).decode("latin-1")
        if body or method == "POST":
            headers["Content-Length"] = str(len(body))
        if close:
            headers["Connection"] = "close"
        path = PATH + rng.choice(["", "", "", "x", "../", "%00"])
        lines = [f"{method} {path}?{self.query(live_sids, dead_sids)} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body

    def http_garbage(self) -> bytes:
        """Bytes that are not a well-formed HTTP request at all."""
        rng = self.rng
        return rng.choice(
            [
                lambda: self.random_bytes(300),
                lambda: b"GET " + PATH.encode() + b"?EIO=4&transport=polling HTTP/9.9\r\n\r\n",
                lambda: b"POST " + PATH.encode() + b"?EIO=4&transport=polling HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                lambda: b"POST " + PATH.encode() + b"?EIO=4 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                lambda: b"GET " + PATH.encode() + b"?" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",
                lambda: b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",
                lambda: b"\r\n\r\n\x00\x01\x02 HTTP/1.1\r\n\r\n",
            ]
        )()

    def ws_frame(self) -> bytes:
        """One WebSocket frame (or frame-shaped bytes) a client might send."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return client_frame(TEXT, self.engine_text().encode("utf-8", "surrogatepass"))
        if roll < 0.6:
            return client_frame(BINARY, self.random_bytes(40))
        if roll < 0.65:
            return client_frame(TEXT, b"4\xff\xfe" + self.random_bytes(8))  # invalid UTF-8
        if roll < 0.7:
            return client_frame(rng.choice([PING, PONG, CLOSE]), self.random_bytes(130))
        if roll < 0.75:
            return client_frame(rng.choice([0x3, 0x7, 0xB, 0xF, 0x0]), self.random_bytes(10))
        if roll < 0.8:  # reserved bits set, or no FIN (a fragment never finished)
            frame = bytearray(client_frame(TEXT, b"4" + self.random_bytes(10)))
            frame[0] = rng.choice([0xF1, 0x01, 0xC1])
            return bytes(frame)
        if roll < 0.83:  # unmasked, as only a server may send
            payload = self.random_bytes(20)
            return struct.pack("!BB", 0x81, len(payload)) + payload
        if roll < 0.86:  # a header announcing far more than maxPayload
            return struct.pack("!BBQ", 0x82, 0xFF, rng.choice([MAX_PAYLOAD + 1, 2**40, 2**63 - 1])) + b"mask"
        if roll < 0.9:  # a frame cut short
            frame = client_frame(TEXT, b"4" + self.random_bytes(30))
            return frame[: rng.randrange(len(frame))]
        if roll < 0.93:
            return client_frame(TEXT, b"4" + b"x" * (MAX_PAYLOAD + 1))
        return self.random_bytes(40)


def connection(site: Site, port: int) -> FakeConnection:
    """A fresh in-memory connection to C{site} from 127.0.0.1:C{port}."""
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
    transport = FakeConnection()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport


def first_status(data: bytes) -> int | None:
    """The status of the first HTTP response in C{data}."""
    if not data.startswith(b"HTTP/1."):
        return None
    return int(data.split(b" ", 2)[1])


class GoodClient:
    """A well-behaved chat client over a raw WebSocket that answers every ping."""

    def __init__(self, site: Site, clock: Clock) -> None:
        self.clock = clock
        self.ws = WebSocketClient(site, PATH + "?EIO=4&transport=websocket", port=50000)
        self.inbox: list[str | bytes] = []
        self.pump()
        self.inbox.clear()  # the Engine.IO open packet
        # A room of its own: what fuzz clients say in theirs must not reach it.
        self.ws.send_text('40{"room":"%s"}' % GOOD_ROOM)
        self.pump()

    def pump(self) -> list[str | bytes]:
        """
        Read what arrived by the end of a reactor turn, answer Engine.IO pings,
        keep the rest in C{inbox}.
        """
        self.clock.advance(0)
        for message in self.ws.messages():
            if message == "2":
                self.ws.send_text("3")
            else:
                self.inbox.append(message)
        return self.inbox


class InMemoryFuzzTests(SynchronousTestCase):
    """The bulk of the fuzzing, on a Clock with in-memory transports."""

    # The fuzzer's generator, shared with the helpers so one seed replays a whole run.
    rng: random.Random

    def setUp(self) -> None:
        self.clock = Clock()
        # Autobahn's own timers (handshake and close timeouts) run on txaio's loop.
        self.patch(txaio.config, "loop", self.clock)
        root = web.Tree()
        self.chat: Chat = mount_chat(
            root,
            fake_context(self.clock),
            self.clock,
            config=EngineIOConfig(ping_interval=INTERVAL, ping_timeout=TIMEOUT, max_payload=MAX_PAYLOAD),
        )
        self.site = web.make_site(root, self.clock)
        self.transports: list[FakeConnection] = []
        self.live: list[str] = []
        self.dead: list[str] = []
        self.port = 10000

    def next_port(self) -> int:
        self.port = self.port + 1 if self.port < 60000 else 10000
        return self.port

    def handshake(self) -> None:
        """A polling session for later inputs to abuse, joined to the chat half the time."""
        exchange = HTTPExchange(self.site, "GET", PATH + "?EIO=4&transport=polling", port=self.next_port())
        self.transports.append(exchange.transport)
        response = exchange.response
        assert response is not None and response.status == 200, response
        sid: str = wire.decode(response.body[1:])["sid"]
        self.live.append(sid)
        if self.rng.random() < 0.5:
            post = HTTPExchange(
                self.site, "POST", PATH + f"?EIO=4&transport=polling&sid={sid}", b"40", port=self.next_port()
            )
            self.transports.append(post.transport)

    def refresh_sids(self) -> None:
        """Move sids the server has closed to the dead list (a bad sid of its own kind)."""
        sessions = self.chat.engine.sessions
        self.dead.extend(sid for sid in self.live if sid not in sessions)
        self.live = [sid for sid in self.live if sid in sessions]
        del self.dead[:-50]

    def http_case(self, fuzzer: Fuzzer) -> None:
        transport = connection(self.site, self.next_port())
        self.transports.append(transport)
        data = fuzzer.http_garbage() if fuzzer.rng.random() < 0.05 else fuzzer.http_request(self.live, self.dead)
        transport.protocol.dataReceived(data)

    def websocket_case(self, fuzzer: Fuzzer) -> None:
        rng = fuzzer.rng
        roll = rng.random()
        if roll < 0.6:
            query = "EIO=4&transport=websocket"
        elif roll < 0.85 and self.live:
            query = f"EIO=4&transport=websocket&sid={rng.choice(self.live)}"
        else:
            query = fuzzer.query(self.live, self.dead)
        ws = WebSocketClient(self.site, PATH + "?" + query, port=self.next_port())
        self.transports.append(ws.transport)
        if not ws.accepted:
            return
        # Start like a real client often enough for the fuzz to reach Socket.IO
        # and the chat, not only Engine.IO.
        opening = rng.choice([[], ["40"], ['40{"room":"lobby"}', '421["register","fz%d"]' % rng.randrange(99)], ["2probe"], ["2probe", "5"]])
        for text in opening:
            ws.send_text(text)
        for _ in range(rng.randrange(1, 8)):
            if not ws.transport.connected:
                break  # a real peer's bytes stop arriving once the server hangs up
            ws.transport.protocol.dataReceived(fuzzer.ws_frame())
            ws.frames()

    def test_fuzz_keeps_serving(self) -> None:
        """
        10,000 malformed polling requests, HTTP garbage and WebSocket frames leave
        the server serving a client that connected before them: it registers and
        exchanges messages afterwards with a client that connects after them; no
        response carries a traceback and no failure was logged.
        """
        fuzzer = Fuzzer(SEED)
        self.rng = fuzzer.rng
        good = GoodClient(self.site, self.clock)
        self.assertTrue(good.inbox and str(good.inbox[0]).startswith('40{"sid":'), good.inbox)
        kinds: dict[str, int] = {"http": 0, "websocket": 0}
        for case in range(CASES):
            if case % 25 == 0:
                self.handshake()
            if case % 100 == 0:
                # Time passes: pings, ping timeouts, connect and upgrade timeouts and
                # Autobahn's close handshakes fire between the inputs.
                self.clock.advance(5)
                good.pump()
                self.refresh_sids()
            if fuzzer.rng.random() < 0.55:
                kinds["http"] += 1
                self.http_case(fuzzer)
            else:
                kinds["websocket"] += 1
                self.websocket_case(fuzzer)
            if fuzzer.rng.random() < 0.8:
                # Most clients go away (an aborted poll, a dropped socket); the rest
                # stay connected, holding sessions and polls for later inputs.
                self.transports[-1].loseConnection()
        # Both kinds were exercised in earnest.
        self.assertGreater(min(kinds.values()), CASES // 3, kinds)

        # The client from before still works: it registers and talks to a newcomer
        # that arrives over polling, in both directions.
        self.assertEqual(good.inbox[1:], [])
        good.ws.send_text('421["register","survivor"]')
        self.assertEqual(good.pump()[1:3], ["431[true]", '42["message",{"from":"Server","message":"survivor has joined the chat"}]'])
        newcomer = self.polling_newcomer()
        good.ws.send_text('422["message",{"message":"still here"}]')
        self.assertEqual(
            good.pump()[3:],
            [
                '42["message",{"from":"Server","message":"newcomer has joined the chat"}]',
                '42["message",{"from":"survivor","message":"still here"}]',
                "432[true]",
            ],
        )
        self.assertIn('42["message",{"from":"survivor","message":"still here"}]', newcomer())
        self.assertFalse(good.ws.closed)

        # Nothing anyone was sent carries a traceback, and no request failed inside.
        for transport in self.transports + [good.ws.transport]:
            written = transport.value()
            for marker in TRACEBACK_MARKERS:
                self.assertNotIn(marker, written)
            self.assertNotEqual(first_status(written), 500, written[:200])
        self.assertEqual(self.flushLoggedErrors(), [])

    def polling_newcomer(self) -> Callable[[], list[str]]:
        """A new polling client that registers as C{newcomer}; returns its poll function."""
        exchange = HTTPExchange(self.site, "GET", PATH + "?EIO=4&transport=polling", port=59999)
        sid = wire.decode(exchange.response.body[1:])["sid"]  # type: ignore[union-attr]
        query = PATH + f"?EIO=4&transport=polling&sid={sid}"
        post = HTTPExchange(self.site, "POST", query, b'40{"room":"%s"}\x1e421["register","newcomer"]' % GOOD_ROOM.encode(), port=59999)
        self.assertEqual(post.response.body, b"ok")  # type: ignore[union-attr]

        def poll() -> list[str]:
            response = HTTPExchange(self.site, "GET", query, port=59999).response
            assert response is not None
            return response.body.decode("utf-8").split("\x1e")

        first = poll()
        self.assertTrue(first[0].startswith('40{"sid":'), first)
        self.assertEqual(first[1], "431[true]")
        return poll


class _RawHTTPClient(Protocol):
    """Writes one request, collects everything until the server closes."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.done.callback(self.received)


class TCPFuzzTests(TestCase):
    """A smaller run over real TCP: the same kinds of requests through a real socket."""

    async def request(self, data: bytes) -> bytes:
        client = _RawHTTPClient(data)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port), client)
        return await client.done

    async def test_fuzz_over_tcp(self) -> None:
        """
        Malformed requests over real TCP (each on its own connection, which the
        server closes) get no traceback and no 500; a client then opens a session,
        joins the chat and registers as normal.
        """
        root = web.Tree()
        chat = mount_chat(root, fake_context(reactor), reactor)
        # Sessions opened by the fuzz must not outlive the test with their timers.
        self.addCleanup(chat.engine.stop)
        self.port: IListeningPort = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            web.make_site(root, reactor)
        )
        self.addCleanup(self.port.stopListening)
        fuzzer = Fuzzer(SEED + 1)
        # No live sid: a GET on one would be held open for the next ping, and this
        # client waits for the server to close each connection.
        requests = [fuzzer.http_request([], ["A" * 20], close=True) for _ in range(TCP_CASES)]
        # A few at a time, as several clients would, without flooding the listener.
        responses: list[bytes] = []
        for start in range(0, TCP_CASES, 20):
            batch = await gatherResults([Deferred.fromCoroutine(self.request(r)) for r in requests[start : start + 20]])
            responses.extend(batch)
        statuses = [first_status(response) for response in responses]
        self.assertNotIn(None, statuses)
        self.assertNotIn(500, statuses)
        for response in responses:
            for marker in TRACEBACK_MARKERS:
                self.assertNotIn(marker, response)

        handshake = await self.request(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = handshake.partition(b"\r\n\r\n")[2]
        sid = wire.decode(body[1:])["sid"]
        payload = b'40\x1e421["register","tcp"]'
        posted = await self.request(
            f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
            f"Connection: close\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload
        )
        self.assertTrue(posted.endswith(b"\r\n\r\nok"), posted)
        polled = await self.request(
            f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        packets = polled.partition(b"\r\n\r\n")[2].split(b"\x1e")
        self.assertTrue(packets[0].startswith(b'40{"sid":'), packets)
        self.assertEqual(
            packets[1:],
            [b"431[true]", b'42["message",{"from":"Server","message":"tcp has joined the chat"}]'],
        )
        self.assertEqual(self.flushLoggedErrors(), [])
