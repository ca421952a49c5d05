"""
Tests for L{gameproto.chat}: the rules of DESIGN.md §4 "chat", driven through fake
Engine.IO sessions, plus the ping timeout over raw HTTP on a Clock.
"""

from __future__ import annotations

from typing import Any

import txaio
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gameproto import web, wire
from gameproto.chat import mount_chat
from gameproto.chat.app import ChatApp
from gameproto.chat.names import normalise_name
from gameproto.chat.presence import IPresence, LocalPresence
from gameproto.socketio.engineio import EngineIOConfig
from gameproto.socketio.server import SocketIOServer
from gameproto.testing import FakeSession, HTTPExchange, WebSocketClient, fake_context


def events(sent: list[str | bytes]) -> list[Any]:
    """Decoded Socket.IO EVENT and ACK packets of namespace C{/}."""
    out = []
    for packet in sent:
        assert isinstance(packet, str)
        if packet[0] == "2":
            out.append(("event", *wire.decode(packet[1:])))
        elif packet[0] == "3":
            digits = len(packet) - len(packet[1:].lstrip("0123456789")) - 1
            out.append(("ack", int(packet[1 : 1 + digits]), *wire.decode(packet[1 + digits :])))
        else:
            out.append(("other", packet))
    return out


def server_says(text: str) -> tuple[str, str, dict[str, str]]:
    return ("event", "message", {"from": "Server", "message": text})


class NameTests(SynchronousTestCase):
    def test_normalisation(self) -> None:
        """
        Names are NFKC-normalised, then stripped.
        """
        self.assertEqual(normalise_name("  ＡＬＩＣＥ\t"), "ALICE")
        self.assertEqual(normalise_name("ﬁlm"), "film")
        self.assertEqual(normalise_name("Zoë"), "Zoë")

    def test_length(self) -> None:
        """
        1 to 32 code points after normalisation.
        """
        self.assertEqual(normalise_name("a" * 32), "a" * 32)
        self.assertIsNone(normalise_name("a" * 33))
        self.assertIsNone(normalise_name(""))
        self.assertIsNone(normalise_name("   "))
        self.assertEqual(normalise_name("😀" * 32), "😀" * 32)

    def test_forbidden_categories(self) -> None:
        """
        Control, format, separator, private-use and unassigned characters are refused.
        """
        for name in ["a\x00b", "a\u200db", "a\u2028b", "a\u2029b", "a\ue000b", "a\U000e0001b", "a\u0378b"]:
            self.assertIsNone(normalise_name(name), repr(name))

    def test_server_reserved(self) -> None:
        """
        C{Server} is never a user's name, in any case or width.
        """
        for name in ["Server", "server", "SERVER", " Server ", "ｓｅｒｖｅｒ"]:
            self.assertIsNone(normalise_name(name), name)

    def test_not_a_string(self) -> None:
        """
        Anything but a string is refused.
        """
        for value in [None, 1, ["a"], {"name": "a"}, True]:
            self.assertIsNone(normalise_name(value))


class PresenceTests(SynchronousTestCase):
    def test_local_presence(self) -> None:
        """
        A key is held once per room until released.
        """
        presence = LocalPresence()
        verifyObject(IPresence, presence)
        self.assertTrue(self.successResultOf(presence.claim("r", "a")))
        self.assertFalse(self.successResultOf(presence.claim("r", "a")))
        self.assertTrue(self.successResultOf(presence.claim("s", "a")))
        self.successResultOf(presence.release("r", "a"))
        self.assertTrue(self.successResultOf(presence.claim("r", "a")))
        self.assertEqual(presence.holders("s"), {"a"})


@implementer(IPresence)
class SlowPresence:
    """A presence whose claims answer when the test says, as a remote one would."""

    def __init__(self) -> None:
        self.claims: list[tuple[str, str, Deferred[bool]]] = []
        self.released: list[tuple[str, str]] = []

    def claim(self, room: str, key: str, name: str = "") -> Deferred[bool]:
        d: Deferred[bool] = Deferred()
        self.claims.append((room, key, d))
        return d

    def release(self, room: str, key: str) -> Deferred[None]:
        self.released.append((room, key))
        return succeed(None)


class ChatTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.server = SocketIOServer(self.clock)
        self.presence = self.make_presence()
        self.app = ChatApp(self.server.of("/"), self.presence)

    def make_presence(self) -> Any:
        return LocalPresence()

    def connect(self, auth: dict[str, Any] | None = None) -> FakeSession:
        session = FakeSession(self.server).open()
        session.receive("0" + (wire.encode(auth).decode() if auth is not None else ""))
        [reply] = session.take()
        assert isinstance(reply, str) and reply.startswith('0{"sid"'), reply
        return session

    def register(self, session: FakeSession, name: Any, ack_id: int = 1) -> list[Any]:
        session.receive(f"2{ack_id}" + wire.encode(["register", name]).decode())
        return events(session.take())


class ConnectTests(ChatTestCase):
    def test_default_room(self) -> None:
        """
        Without a room in the auth payload the socket is in C{lobby}.
        """
        session = self.connect()
        socket = next(iter(self.server.of("/").sockets.values()))
        self.assertIn(socket, self.server.of("/").room("lobby"))
        self.assertFalse(session.closed)

    def test_room_from_auth(self) -> None:
        """
        The auth payload's C{room} picks the room; C{match:42} is a valid name.
        """
        self.connect({"room": "match:42"})
        self.assertEqual(len(self.server.of("/").room("match:42")), 1)

    def test_invalid_room(self) -> None:
        """
        A room that is not 1-64 of [A-Za-z0-9:_.-], or not a string, is refused with
        CONNECT_ERROR C{{"message": "invalid room"}}.
        """
        for room in ["", "a b", "x" * 65, "é", 42, None, ["lobby"]]:
            session = FakeSession(self.server).open()
            session.receive("0" + wire.encode({"room": room}).decode())
            self.assertEqual(session.take(), ['4{"message":"invalid room"}'], repr(room))
        self.assertEqual(self.server.of("/").sockets, {})

    def test_unregistered_receives(self) -> None:
        """
        A socket receives what is said in its room before it registers.
        """
        watcher = self.connect()
        speaker = self.connect()
        self.register(speaker, "alice")
        self.assertEqual(events(watcher.take()), [server_says("alice has joined the chat")])


class RegisterTests(ChatTestCase):
    def test_register(self) -> None:
        """
        A valid name is acked true, then every member of the room, the newcomer
        included, hears that it joined; other rooms hear nothing.
        """
        other = self.connect()
        elsewhere = self.connect({"room": "elsewhere"})
        session = self.connect()
        self.assertEqual(
            self.register(session, "alice", ack_id=0),
            [("ack", 0, True), server_says("alice has joined the chat")],
        )
        self.assertEqual(events(other.take()), [server_says("alice has joined the chat")])
        self.assertEqual(elsewhere.take(), [])

    def test_announced_name_is_normalised(self) -> None:
        """
        The join message shows the normalised name.
        """
        session = self.connect()
        self.assertEqual(
            self.register(session, "  ＡＬＩＣＥ "),
            [("ack", 1, True), server_says("ALICE has joined the chat")],
        )

    def test_invalid_names(self) -> None:
        """
        Invalid names and non-strings are acked false, with no announcement.
        """
        session = self.connect()
        for name in ["", "Server", "a\u200db", "x" * 33, 42, None, {"name": "a"}]:
            self.assertEqual(self.register(session, name), [("ack", 1, False)], repr(name))

    def test_missing_name(self) -> None:
        """
        A register event with no argument is acked false.
        """
        session = self.connect()
        session.receive('21["register"]')
        self.assertEqual(events(session.take()), [("ack", 1, False)])

    def test_unique_per_room_casefold(self) -> None:
        """
        A name is unique in its room ignoring case (casefold: ß is ss); the same name
        in another room is fine.
        """
        first, second = self.connect(), self.connect()
        elsewhere = self.connect({"room": "other"})
        self.register(first, "Straße")
        second.take()
        self.assertEqual(self.register(second, "STRASSE"), [("ack", 1, False)])
        self.assertEqual(self.register(second, "strasse"), [("ack", 1, False)])
        self.assertEqual(self.register(elsewhere, "Straße")[0], ("ack", 1, True))

    def test_register_twice(self) -> None:
        """
        A socket registers once: a second register is acked false, even for a free
        name.
        """
        session = self.connect()
        self.register(session, "alice")
        self.assertEqual(self.register(session, "bob"), [("ack", 1, False)])

    def test_name_freed_on_leave(self) -> None:
        """
        When a registered socket leaves, its name is free again in the room.
        """
        first = self.connect()
        self.register(first, "alice")
        first.close("transport close")
        second = self.connect()
        self.assertEqual(self.register(second, "alice")[0], ("ack", 1, True))


class SlowPresenceTests(ChatTestCase):
    def make_presence(self) -> Any:
        return SlowPresence()

    def test_ack_waits_for_claim(self) -> None:
        """
        With a remote presence the ack is sent when the claim answers.
        """
        session = self.connect()
        self.assertEqual(self.register(session, "alice"), [])
        [(room, key, d)] = self.presence.claims
        self.assertEqual((room, key), ("lobby", "alice"))
        d.callback(True)
        self.assertEqual(
            events(session.take()), [("ack", 1, True), server_says("alice has joined the chat")]
        )

    def test_register_while_claiming(self) -> None:
        """
        A second register while the first is in flight is acked false.
        """
        session = self.connect()
        self.register(session, "alice")
        self.assertEqual(self.register(session, "bob", ack_id=2), [("ack", 2, False)])

    def test_gone_before_claim_answers(self) -> None:
        """
        A socket that leaves while its claim is in flight gives the name back and
        nobody hears of it.
        """
        watcher = self.connect()
        session = self.connect()
        self.register(session, "alice")
        session.close("transport close")
        self.presence.claims[0][2].callback(True)
        self.assertEqual(self.presence.released, [("lobby", "alice")])
        self.assertEqual(watcher.take(), [])

    def test_claim_failure(self) -> None:
        """
        A presence failure is logged and acked false; the socket may try again.
        """
        session = self.connect()
        self.register(session, "alice")
        self.presence.claims[0][2].errback(RuntimeError("store down"))
        self.assertEqual(events(session.take()), [("ack", 1, False)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.register(session, "alice")
        self.assertEqual(len(self.presence.claims), 2)


class MessageTests(ChatTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect()
        self.bob = self.connect()
        self.register(self.alice, "alice")
        self.register(self.bob, "bob")
        self.alice.take()
        self.bob.take()

    def say(self, session: FakeSession, body: Any, ack_id: int = 5) -> None:
        session.receive(f"2{ack_id}" + wire.encode(["message", body]).decode())

    def test_message_to_room(self) -> None:
        """
        A message reaches every member, sender included, as exactly C{from} and
        C{message}, with the client's C{from} overwritten; then the ack is true.
        """
        self.say(self.alice, {"from": "mallory", "message": "hi", "extra": 1})
        expected = ("event", "message", {"from": "alice", "message": "hi"})
        self.assertEqual(events(self.alice.take()), [expected, ("ack", 5, True)])
        self.assertEqual(events(self.bob.take()), [expected])

    def test_message_without_ack(self) -> None:
        """
        A message with no ack id is delivered without an ack.
        """
        self.alice.receive('2["message",{"message":"hi"}]')
        self.assertEqual(len(self.alice.take()), 1)
        self.assertEqual(len(self.bob.take()), 1)

    def test_length_limits(self) -> None:
        """
        1 and 4000 code points are accepted; 0 and 4001 are refused.
        """
        self.say(self.alice, {"message": "x"})
        self.say(self.alice, {"message": "é" * 4000})
        self.assertEqual(len(self.bob.take()), 2)
        self.say(self.alice, {"message": ""})
        self.say(self.alice, {"message": "x" * 4001})
        self.assertEqual(events(self.alice.take())[-2:], [("ack", 5, False), ("ack", 5, False)])
        self.assertEqual(self.bob.take(), [])

    def test_invalid_bodies(self) -> None:
        """
        A non-object, a missing or non-string C{message} is dropped and acked false.
        """
        for body in ["hi", None, [], {}, {"message": 1}, {"message": None}]:
            self.say(self.alice, body)
            self.assertEqual(events(self.alice.take()), [("ack", 5, False)], repr(body))
        self.assertEqual(self.bob.take(), [])

    def test_unregistered_cannot_send(self) -> None:
        """
        A socket that has not registered may not send: acked false, nothing delivered.
        """
        carol = self.connect()
        self.say(carol, {"message": "hi"})
        self.assertEqual(events(carol.take()), [("ack", 5, False)])
        self.assertEqual(self.bob.take(), [])


class RoomIsolationTests(ChatTestCase):
    def test_rooms_isolate_traffic(self) -> None:
        """
        Messages, join and leave announcements stay in their room, and the same
        name may be used in each room.
        """
        lobby_alice, lobby_bob = self.connect(), self.connect()
        match_alice, match_carol = self.connect({"room": "match:1"}), self.connect({"room": "match:1"})
        for session, name in [
            (lobby_alice, "alice"),
            (lobby_bob, "bob"),
            (match_alice, "alice"),
            (match_carol, "carol"),
        ]:
            session.take()  # earlier arrivals in its room
            self.assertEqual(self.register(session, name)[0], ("ack", 1, True))
        for session in (lobby_alice, lobby_bob, match_alice, match_carol):
            session.take()
        lobby_alice.receive('22["message",{"message":"in the lobby"}]')
        match_carol.receive('23["message",{"message":"in the match"}]')
        lobby_line = ("event", "message", {"from": "alice", "message": "in the lobby"})
        match_line = ("event", "message", {"from": "carol", "message": "in the match"})
        self.assertEqual(events(lobby_alice.take()), [lobby_line, ("ack", 2, True)])
        self.assertEqual(events(lobby_bob.take()), [lobby_line])
        self.assertEqual(events(match_alice.take()), [match_line])
        self.assertEqual(events(match_carol.take()), [match_line, ("ack", 3, True)])
        lobby_bob.close("transport close")
        self.assertEqual(events(lobby_alice.take()), [server_says("bob left the chat")])
        self.assertEqual(match_alice.take() + match_carol.take(), [])


class LeaveTests(ChatTestCase):
    def test_leave_message(self) -> None:
        """
        When a registered socket goes away (any reason), the room hears it left.
        """
        for how in ["transport close", "namespace"]:
            alice, bob = self.connect(), self.connect()
            self.register(alice, "alice")
            self.register(bob, "bob")
            bob.take()
            if how == "namespace":
                alice.receive("1")
            else:
                alice.close(how)
            self.assertEqual(events(bob.take()), [server_says("alice left the chat")], how)
            bob.close("transport close")

    def test_unregistered_leaves_silently(self) -> None:
        """
        A socket that never registered leaves without a message.
        """
        watcher, lurker = self.connect(), self.connect()
        lurker.close("transport close")
        self.assertEqual(watcher.take(), [])


class PingTimeoutTests(SynchronousTestCase):
    def test_ping_timeout_leave_message(self) -> None:
        """
        Over real Engine.IO polling on a Clock: a registered client that stops
        answering pings is closed after pingInterval + pingTimeout, and the room
        hears it left.
        """
        clock = Clock()
        self.patch(txaio.config, "loop", clock)
        root = web.Tree()
        chat = mount_chat(
            root,
            fake_context(clock),
            clock,
            config=EngineIOConfig(ping_interval=25, ping_timeout=20),
        )
        site = web.make_site(root, clock)

        def request(method: str, query: str, body: bytes = b"") -> HTTPExchange:
            return HTTPExchange(site, method, "/socket.io/?EIO=4&transport=polling" + query, body)

        def open_session() -> str:
            response = request("GET", "").response
            assert response is not None
            sid: str = wire.decode(response.body[1:])["sid"]
            return sid

        alice, bob = open_session(), open_session()
        for sid in (alice, bob):
            request("POST", f"&sid={sid}", b"40")
        request("POST", f"&sid={alice}", b'421["register","alice"]')
        request("GET", f"&sid={bob}")  # CONNECT reply and alice's arrival
        bob_poll = request("GET", f"&sid={bob}")
        clock.advance(25)  # both are pinged; bob answers, alice does not
        self.assertEqual(bob_poll.response.body, b"2")  # type: ignore[union-attr]
        request("POST", f"&sid={bob}", b"3")
        bob_poll = request("GET", f"&sid={bob}")
        clock.advance(19.9)
        self.assertIsNone(bob_poll.response)
        clock.advance(0.1)
        self.assertEqual(
            bob_poll.response.body,  # type: ignore[union-attr]
            b'42["message",{"from":"Server","message":"alice left the chat"}]',
        )
        self.assertNotIn(alice, chat.engine.sessions)


class FloodTests(SynchronousTestCase):
    """
    The packet budget of a client is its user's or, anonymous, its address's: it
    is shared by the client's sessions and survives reconnects.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(txaio.config, "loop", self.clock)
        root = web.Tree()
        # A small budget keeps the test short: 100 packets/s, burst 200, and the
        # server's 5 s over the limit before the close.
        config = EngineIOConfig(messages_per_second=100, burst=200)
        self.chat = mount_chat(root, fake_context(self.clock), self.clock, config=config)
        self.site = web.make_site(root, self.clock)
        self.port = 20000

    def member(self, address: str, name: str) -> WebSocketClient:
        self.port += 1
        ws = WebSocketClient(
            self.site, "/socket.io/?EIO=4&transport=websocket", address=address, port=self.port
        )
        ws.messages()
        self.clock.advance(0)
        ws.send_text("40")
        ws.send_text('421["register","%s"]' % name)
        self.clock.advance(0)
        ws.messages()
        return ws

    def heard(self, ws: WebSocketClient, sender: str) -> int:
        """How many chat messages from C{sender} C{ws} has received since last asked."""
        return sum(
            1
            for message in ws.messages()
            if isinstance(message, str)
            and message.startswith('42["message",{"from":"%s"' % sender)
        )

    def test_reconnecting_does_not_reset_the_budget(self) -> None:
        """
        A member flooding a room is closed with 4008 after 5 s over its rate; when
        it reconnects at once from the same address its first packet closes it
        again and nothing more reaches the room.  Once its budget has refilled it
        may come back and talk.
        """
        listener = self.member("10.0.0.2", "listener")
        flooder = self.member("10.0.0.1", "flooder")
        say = '42["message",{"message":"spam"}]'
        for _ in range(200):
            flooder.send_text(say)
        while not flooder.closed:  # twice the rate
            self.clock.advance(0.1)
            for _ in range(20):
                flooder.send_text(say)
            flooder.messages()
        self.assertEqual(flooder.close_code, 4008)
        self.assertGreater(self.heard(listener, "flooder"), 0)

        again = self.member("10.0.0.1", "flooder")
        for _ in range(10):
            again.send_text(say)
        self.assertEqual((again.closed, again.close_code), (True, 4008))
        self.assertEqual(self.heard(listener, "flooder"), 0)

        self.clock.advance(3)  # burst / rate + 1 s: as good as new
        back = self.member("10.0.0.1", "flooder")
        back.send_text(say)
        self.assertEqual(self.heard(listener, "flooder"), 1)
        self.assertFalse(back.closed)

    def test_sessions_of_one_address_share_the_budget(self) -> None:
        """
        Two anonymous sessions from one address draw on one budget: once the
        first has spent it, the second's messages are dropped too.
        """
        listener = self.member("10.0.0.2", "listener")
        first = self.member("10.0.0.1", "first")
        second = self.member("10.0.0.1", "second")
        for _ in range(200):
            first.send_text('42["message",{"message":"a"}]')
        self.heard(listener, "first")
        second.send_text('42["message",{"message":"b"}]')
        self.assertEqual(self.heard(listener, "second"), 0)
