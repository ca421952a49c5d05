"""
Tests for L{gameproto.socketio.server}, L{gameproto.socketio.namespace} and
L{gameproto.socketio.packets}: Socket.IO v5 packets, namespaces, acks, binary
attachments and rooms, driven through a fake Engine.IO session (the transport is
tested in test_socketio_engineio).
"""

from __future__ import annotations

import sys
from typing import Any

import txaio
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import web, wire
from gameproto.socketio.engineio import EngineIOConfig
from gameproto.socketio.packets import (
    PacketError,
    SocketPacket,
    SocketType,
    decode_socket_packet,
    encode_socket_packet,
)
from gameproto.socketio.namespace import ConnectRefused, Reply, Socket
from gameproto.socketio.server import SocketIOServer, mount_socketio
from gameproto.testing import FakeSession, WebSocketClient, fake_context


class PacketTests(SynchronousTestCase):
    def test_decode_examples(self) -> None:
        """
        The examples of the protocol document decode to their parts.
        """
        cases = {
            "0": SocketPacket(SocketType.CONNECT),
            '0{"token":"123"}': SocketPacket(SocketType.CONNECT, data={"token": "123"}),
            "0/admin,": SocketPacket(SocketType.CONNECT, "/admin"),
            "0/custom": SocketPacket(SocketType.CONNECT, "/custom"),
            "1/custom": SocketPacket(SocketType.DISCONNECT, "/custom"),
            '2["foo"]': SocketPacket(SocketType.EVENT, data=["foo"]),
            '212["foo"]': SocketPacket(SocketType.EVENT, data=["foo"], ack_id=12),
            '20["foo"]': SocketPacket(SocketType.EVENT, data=["foo"], ack_id=0),
            '3/admin,13["bar"]': SocketPacket(SocketType.ACK, "/admin", ["bar"], 13),
            "312[]": SocketPacket(SocketType.ACK, data=[], ack_id=12),
            '51-["baz",{"_placeholder":true,"num":0}]': SocketPacket(
                SocketType.BINARY_EVENT,
                data=["baz", {"_placeholder": True, "num": 0}],
                attachments=1,
            ),
            "2[1]": SocketPacket(SocketType.EVENT, data=[1]),
        }
        for text, packet in cases.items():
            self.assertEqual(decode_socket_packet(text), packet, text)

    def test_invalid(self) -> None:
        """
        Packets the official parser refuses raise PacketError: bad type, bad JSON,
        wrong payload shape per type, reserved event names, bad attachment counts.
        """
        for text in [
            "",
            "7",
            "abc",
            "2{}",
            "2abc[]",
            "2[]",
            '2["connect"]',
            '2["disconnect", 1]',
            "2[true]",
            '1{"a":1}',
            "0[1]",
            '0"x"',
            "3{}",
            '5["a"]',
            '50-["a"]',
            '511-["a"]',
            '5x-["a"]',
            "4[1]",
            '2["a"',
            "2" + "1" * 17 + '["a"]',
        ]:
            self.assertRaises(PacketError, decode_socket_packet, text)

    def test_encode(self) -> None:
        """
        Encoding puts the namespace only when it is not C{/}, and the attachment count
        of binary packets.
        """
        self.assertEqual(
            encode_socket_packet(SocketPacket(SocketType.CONNECT, data={"sid": "x"})),
            '0{"sid":"x"}',
        )
        self.assertEqual(
            encode_socket_packet(SocketPacket(SocketType.ACK, "/admin", ["bar"], 13)),
            '3/admin,13["bar"]',
        )
        self.assertEqual(
            encode_socket_packet(
                SocketPacket(
                    SocketType.BINARY_ACK,
                    "/",
                    [{"_placeholder": True, "num": 0}],
                    15,
                    attachments=1,
                )
            ),
            '61-15[{"_placeholder":true,"num":0}]',
        )


class ServerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.server = SocketIOServer(self.clock, connect_timeout=45.0)
        self.root = self.server.of("/")
        self.custom = self.server.of("/custom")
        self.auths: list[dict[str, Any]] = []
        self.disconnects: list[tuple[Socket, str]] = []

        @self.root.on_connect
        def connect(socket: Socket, auth: dict[str, Any]) -> None:
            if auth.get("refuse"):
                raise ConnectRefused("Not authorized", {"why": "test"})
            self.auths.append(auth)
            socket.emit("auth", auth)

        @self.root.on_disconnect
        def disconnected(socket: Socket, reason: str) -> None:
            self.disconnects.append((socket, reason))

        @self.root.on("echo")
        def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
            return args

        @self.root.on("nothing")
        def nothing(socket: Socket) -> None:
            return None

    def session(self, connect: str | None = "0") -> FakeSession:
        session = FakeSession(self.server).open()
        if connect is not None:
            session.receive(connect)
        return session

    def socket_of(self, session: FakeSession, namespace: str = "/") -> Socket:
        [socket] = [s for s in self.server.of(namespace).sockets.values() if s.session is session]
        return socket


class ConnectTests(ServerTestCase):
    def test_connect_without_payload(self) -> None:
        """
        C{0} connects to C{/} with auth C{{}}; the reply carries a socket id that is
        not the Engine.IO sid, and emits of the connect handler follow it.
        """
        session = self.session("0")
        connect, auth = session.take()
        self.assertEqual(auth, '2["auth",{}]')
        reply = wire.decode(connect[1:])  # type: ignore[index]
        self.assertEqual(connect[0], "0")
        self.assertEqual(set(reply), {"sid"})
        self.assertNotEqual(reply["sid"], session.sid)
        self.assertEqual(len(reply["sid"]), 20)
        self.assertEqual(self.auths, [{}])

    def test_connect_with_auth(self) -> None:
        """
        The CONNECT payload reaches the connect handler.
        """
        self.session('0{"token":"123"}')
        self.assertEqual(self.auths, [{"token": "123"}])

    def test_custom_namespace(self) -> None:
        """
        A CONNECT to another existing namespace is answered in that namespace.
        """
        session = self.session("0/custom,")
        [reply] = session.take()
        self.assertTrue(reply.startswith('0/custom,{"sid":'), reply)  # type: ignore[union-attr]

    def test_unknown_namespace(self) -> None:
        """
        A CONNECT to a namespace that does not exist gets CONNECT_ERROR
        C{{"message": "Invalid namespace"}} and the session stays open.
        """
        session = self.session("0/random,")
        self.assertEqual(session.take(), ['4/random,{"message":"Invalid namespace"}'])
        self.assertFalse(session.closed)

    def test_refused(self) -> None:
        """
        A connect handler that raises ConnectRefused sends its message and data; the
        client may then try again.
        """
        session = self.session('0{"refuse":true}')
        self.assertEqual(session.take(), ['4{"message":"Not authorized","data":{"why":"test"}}'])
        session.receive("0")
        self.assertEqual(len(session.take()), 2)

    def test_async_connect_handler(self) -> None:
        """
        A connect handler may answer later with a Deferred; the reply waits for it.
        """
        pending: Deferred[None] = Deferred()
        self.custom.on_connect(lambda socket, auth: pending)
        session = self.session("0/custom,")
        self.assertEqual(session.take(), [])
        pending.callback(None)
        self.assertEqual(len(session.take()), 1)

    def test_duplicate_connect_closes(self) -> None:
        """
        A second CONNECT to a namespace already joined closes the connection.
        """
        session = self.session("0")
        session.receive("0")
        self.assertTrue(session.closed)

    def test_packet_for_namespace_not_joined(self) -> None:
        """
        An event for a namespace the client is not in closes the connection.
        """
        session = self.session("0")
        session.receive('2/custom,["echo"]')
        self.assertTrue(session.closed)

    def test_connect_timeout(self) -> None:
        """
        A session that joins no namespace within connectTimeout is closed.
        """
        session = self.session(None)
        self.clock.advance(44.9)
        self.assertFalse(session.closed)
        self.clock.advance(0.1)
        self.assertEqual(session.close_reason, "connect timeout")

    def test_connect_in_time(self) -> None:
        """
        A session that connects in time is not closed by the connect timeout.
        """
        session = self.session(None)
        self.clock.advance(44)
        session.receive("0")
        self.clock.advance(10)
        self.assertFalse(session.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_client_disconnect(self) -> None:
        """
        A client DISCONNECT leaves the namespace (reason "client namespace
        disconnect") and keeps the Engine.IO session.
        """
        session = self.session("0")
        socket = self.socket_of(session)
        session.receive("1")
        self.assertEqual(self.disconnects, [(socket, "client namespace disconnect")])
        self.assertFalse(session.closed)
        self.assertEqual(self.root.sockets, {})

    def test_server_disconnect(self) -> None:
        """
        Socket.disconnect sends DISCONNECT for the namespace.
        """
        session = self.session("0")
        session.take()
        self.socket_of(session).disconnect()
        self.assertEqual(session.take(), ["1"])
        self.assertEqual(self.disconnects[0][1], "server namespace disconnect")

    def test_transport_close(self) -> None:
        """
        When the session ends, every socket of it is disconnected with its reason.
        """
        session = self.session("0")
        session.close("ping timeout")
        self.assertEqual([reason for _, reason in self.disconnects], ["ping timeout"])


class EventTests(ServerTestCase):
    def test_event_with_ack(self) -> None:
        """
        An event with an ack id gets an ACK with the same id and the handler's result;
        ack id 0 is valid.
        """
        session = self.session("0")
        session.take()
        session.receive('20["echo",1,"two"]')
        session.receive('27["nothing"]')
        self.assertEqual(session.take(), ['30[1,"two"]', "37[]"])

    def test_event_without_ack(self) -> None:
        """
        Without an ack id nothing is sent back.
        """
        session = self.session("0")
        session.take()
        session.receive('2["echo",1]')
        self.assertEqual(session.take(), [])

    def test_async_ack(self) -> None:
        """
        A handler's Deferred result is the ack, sent when it fires.
        """
        pending: Deferred[str] = Deferred()
        self.root.on("later")(lambda socket: pending)
        session = self.session("0")
        session.take()
        session.receive('25["later"]')
        self.assertEqual(session.take(), [])
        pending.callback("done")
        self.assertEqual(session.take(), ['35["done"]'])

    def test_reply_acks_then_acts(self) -> None:
        """
        A Reply acknowledges first, then runs its action.
        """
        self.root.on("act")(lambda socket: Reply(True, lambda: socket.emit("after")))
        session = self.session("0")
        session.take()
        session.receive('21["act"]')
        self.assertEqual(session.take(), ["31[true]", '2["after"]'])

    def test_unknown_event(self) -> None:
        """
        An event with no handler is ignored, even when it asks for an ack.
        """
        session = self.session("0")
        session.take()
        session.receive('23["unknown"]')
        session.receive("23[42]")
        self.assertEqual(session.take(), [])
        self.assertFalse(session.closed)

    def test_reserved_event_closes(self) -> None:
        """
        An EVENT named like a reserved event closes the connection.
        """
        for name in ["connect", "disconnect", "disconnecting", "newListener"]:
            session = self.session("0")
            session.receive(f'2["{name}"]')
            self.assertEqual(session.close_reason, "parse error", name)

    def test_invalid_packets_close(self) -> None:
        """
        Packets that do not parse close the connection.
        """
        for text in ["abc", "2{}", '2abc["x"]', "9", '4{"message":"x"}']:
            session = self.session("0")
            session.receive(text)
            self.assertTrue(session.closed, text)

    def test_binary_event_and_ack(self) -> None:
        """
        A BINARY_EVENT waits for its attachments, then reaches the handler with bytes;
        an ack holding bytes goes out as BINARY_ACK followed by the attachment.
        """
        session = self.session("0")
        session.take()
        session.receive('51-1["echo",{"_placeholder":true,"num":0}]')
        self.assertEqual(session.take(), [])
        session.receive(b"\x01\x02\x03")
        self.assertEqual(
            session.take(), ['61-1[{"_placeholder":true,"num":0}]', b"\x01\x02\x03"]
        )

    def test_binary_in_namespace(self) -> None:
        """
        Binary packets work in a namespace and with several attachments, nested.
        """
        received: list[Any] = []
        self.custom.on("bin")(lambda socket, *args: received.extend(args))
        session = self.session("0/custom,")
        session.receive(
            '52-/custom,["bin",{"a":{"_placeholder":true,"num":1}},{"_placeholder":true,"num":0}]'
        )
        session.receive(b"first")
        session.receive(b"second")
        self.assertEqual(received, [{"a": b"second"}, b"first"])

    def test_unexpected_binary_closes(self) -> None:
        """
        A binary message with no binary packet waiting for it closes the connection,
        and so does a text packet where an attachment was due.
        """
        session = self.session("0")
        session.receive(b"\x00")
        self.assertTrue(session.closed)
        session = self.session("0")
        session.receive('51-["echo",{"_placeholder":true,"num":0}]')
        session.receive('2["echo"]')
        self.assertTrue(session.closed)

    def test_bad_placeholder_closes(self) -> None:
        """
        A placeholder pointing past the attachments closes the connection.
        """
        session = self.session("0")
        session.receive('51-["echo",{"_placeholder":true,"num":3}]')
        session.receive(b"x")
        self.assertTrue(session.closed)

    def test_incomplete_binary_packet_times_out(self) -> None:
        """
        A header announcing 10 attachments followed by only 9 closes the session 10 s
        after the header with "attachments timeout", and the session's buffers are
        released: nothing refers to the attachments any more.
        """
        session = self.session("0")
        placeholders = ",".join('{"_placeholder":true,"num":%d}' % i for i in range(10))
        session.receive('510-["echo",%s]' % placeholders)
        chunk = bytes(90_000)
        unheld = sys.getrefcount(chunk)
        for _ in range(9):
            session.receive(chunk)
        self.assertEqual(sys.getrefcount(chunk), unheld + 9)  # the session holds them
        self.clock.advance(9.9)
        self.assertFalse(session.closed)
        self.clock.advance(0.2)
        self.assertEqual(session.close_reason, "attachments timeout")
        self.assertEqual(sys.getrefcount(chunk), unheld)
        self.assertEqual(self.root.sockets, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_attachments_over_max_payload_close(self) -> None:
        """
        The attachments of one packet may add up to maxPayload bytes, not one more:
        past it the session closes at once with "attachments too large", holding
        nothing.
        """
        session = FakeSession(self.server, max_payload=1000).open()
        session.receive("0")
        placeholders = ",".join('{"_placeholder":true,"num":%d}' % i for i in range(3))
        session.receive('53-["echo",%s]' % placeholders)
        chunk = bytes(600)
        unheld = sys.getrefcount(chunk)
        session.receive(chunk)
        session.receive(bytes(400))  # 1000 bytes so far: allowed
        self.assertFalse(session.closed)
        session.receive(b"x")
        self.assertEqual(session.close_reason, "attachments too large")
        self.assertEqual(sys.getrefcount(chunk), unheld)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_binary_packet_in_time_leaves_no_deadline(self) -> None:
        """
        A binary packet completed in time reaches its handler, and its deadline is
        gone: the session stays open long after.
        """
        session = self.session("0")
        session.take()
        session.receive('52-1["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
        session.receive(b"a")
        self.clock.advance(9)
        session.receive(b"b")
        self.assertEqual(session.take()[1:], [b"a", b"b"])
        self.clock.advance(60)
        self.assertFalse(session.closed)

    def test_server_emit_with_callback(self) -> None:
        """
        An emit with a callback carries an ack id; the client's ACK calls it once.
        """
        session = self.session("0")
        session.take()
        answers: list[tuple[Any, ...]] = []
        self.socket_of(session).emit("question", 1, callback=lambda *a: answers.append(a))
        self.assertEqual(session.take(), ['20["question",1]'])
        session.receive('30["yes",2]')
        session.receive('30["again"]')
        self.assertEqual(answers, [("yes", 2)])

    def test_emit_binary(self) -> None:
        """
        An emit holding bytes goes out as BINARY_EVENT plus attachments.
        """
        session = self.session("0/custom,")
        session.take()
        self.socket_of(session, "/custom").emit("file", b"\xff")
        self.assertEqual(
            session.take(), ['51-/custom,["file",{"_placeholder":true,"num":0}]', b"\xff"]
        )

    def test_unencodable_emit_dropped(self) -> None:
        """
        A value JSON cannot carry is dropped, not raised, and the session goes on.
        """
        session = self.session("0")
        session.take()
        self.socket_of(session).emit("big", 2**70)
        self.root.emit("big", "\ud800")
        self.assertEqual(session.take(), [])
        self.assertFalse(session.closed)


class RoomTests(ServerTestCase):
    def test_rooms(self) -> None:
        """
        An emit to a room reaches its members only, C{skip} excepted; without a room it
        reaches the whole namespace; a socket that left no longer receives.
        """
        a, b, c = self.session("0"), self.session("0"), self.session("0")
        sa, sb = self.socket_of(a), self.socket_of(b)
        for s in (a, b, c):
            s.take()
        sa.join("r")
        sb.join("r")
        self.root.emit("hi", to="r")
        self.assertEqual((a.take(), b.take(), c.take()), (['2["hi"]'], ['2["hi"]'], []))
        sa.broadcast("news", to="r")
        self.assertEqual((a.take(), b.take()), ([], ['2["news"]']))
        self.root.emit("all")
        self.assertEqual([len(s.take()) for s in (a, b, c)], [1, 1, 1])
        sb.leave("r")
        self.root.emit("hi", to="r")
        self.assertEqual((a.take(), b.take()), (['2["hi"]'], []))
        self.assertEqual(self.root.room("r"), frozenset({sa}))

    def test_own_room(self) -> None:
        """
        Each socket is in a room named after its id.
        """
        a = self.session("0")
        sa = self.socket_of(a)
        a.take()
        self.root.emit("direct", to=sa.id)
        self.assertEqual(a.take(), ['2["direct"]'])

    def test_disconnect_leaves_rooms(self) -> None:
        """
        A disconnected socket is in no room any more.
        """
        a = self.session("0")
        self.socket_of(a).join("r")
        a.close("transport close")
        self.assertEqual(self.root.room("r"), frozenset())

    def test_namespaces_are_separate(self) -> None:
        """
        Rooms of one namespace are not rooms of another.
        """
        a = self.session("0/custom,")
        self.socket_of(a, "/custom").join("r")
        a.take()
        self.root.emit("hi", to="r")
        self.assertEqual(a.take(), [])


class RawWebSocketTests(SynchronousTestCase):
    """Socket.IO over a raw WebSocket on a Clock: the packets exactly as on the wire."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(txaio.config, "loop", self.clock)
        self.server = SocketIOServer(self.clock)
        self.server.of("/").on("echo")(lambda socket, *args: args)
        root = web.Tree()
        self.engine = mount_socketio(
            root, "/socket.io/", self.server, fake_context(self.clock), self.clock
        )
        self.site = web.make_site(root, self.clock)

    def connected(self) -> WebSocketClient:
        ws = WebSocketClient(self.site, "/socket.io/?EIO=4&transport=websocket")
        ws.messages()
        # What follows the open packet and the CONNECT reply waits a reactor turn.
        self.clock.advance(0)
        ws.send_text("40")
        [reply] = ws.messages()
        self.assertTrue(reply.startswith('40{"sid":'), reply)  # type: ignore[union-attr]
        self.clock.advance(0)
        return ws

    def test_unknown_namespace(self) -> None:
        """
        C{40/nope,} gets C{44/nope,{"message":"Invalid namespace"}}, the shape
        socket.io-client reads, and the connection stays usable.
        """
        ws = WebSocketClient(self.site, "/socket.io/?EIO=4&transport=websocket")
        ws.messages()
        self.clock.advance(0)
        ws.send_text("40/nope,")
        self.assertEqual(ws.messages(), ['44/nope,{"message":"Invalid namespace"}'])
        ws.send_text("40")
        [reply] = ws.messages()
        self.assertTrue(reply.startswith('40{"sid":'), reply)  # type: ignore[union-attr]
        self.assertFalse(ws.closed)

    def test_ack_id_zero(self) -> None:
        """
        Ack id 0 (the first id socket.io-client uses) is answered with C{430}.
        """
        ws = self.connected()
        ws.send_text('420["echo",1,"two"]')
        self.assertEqual(ws.messages(), ['430[1,"two"]'])

    def test_event_and_binary_ack(self) -> None:
        """
        C{42...} with an ack id and an attachment frame gets C{46...} and the bytes.
        """
        ws = self.connected()
        ws.send_text('451-0["echo",{"_placeholder":true,"num":0}]')
        ws.send_binary(b"\x01\x02")
        self.assertEqual(ws.messages(), ['461-0[{"_placeholder":true,"num":0}]', b"\x01\x02"])

    def test_reserved_event_closes(self) -> None:
        """
        C{42["disconnect"]} closes the connection.
        """
        ws = self.connected()
        ws.send_text('42["disconnect"]')
        ws.messages()
        self.assertTrue(ws.closed)
        self.assertEqual(self.engine.sessions, {})

    def test_invalid_packet_closes(self) -> None:
        """
        C{4abc} (not a Socket.IO packet) closes the connection.
        """
        ws = self.connected()
        ws.send_text("4abc")
        ws.messages()
        self.assertTrue(ws.closed)

    def test_namespace_disconnect_keeps_heartbeat(self) -> None:
        """
        After C{41} the Engine.IO connection stays: the next frame is a ping.
        """
        ws = self.connected()
        ws.send_text("41")
        self.clock.advance(25)
        self.assertEqual(ws.messages(), ["2"])
        self.assertFalse(ws.closed)


class ConnectReplyAloneTests(SynchronousTestCase):
    """
    The CONNECT reply leaves in a write of its own: what follows it waits until it
    has been written out (a reactor turn), then until the client speaks or 10 ms
    have passed.  Nothing else is held.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(txaio.config, "loop", self.clock)
        self.server = SocketIOServer(self.clock)
        self.namespace = self.server.of("/")
        self.namespace.on_connect(lambda socket, auth: socket.emit("hello", auth))
        self.namespace.on("echo")(lambda socket, *args: args)
        root = web.Tree()
        self.engine = mount_socketio(
            root, "/socket.io/", self.server, fake_context(self.clock), self.clock
        )
        self.site = web.make_site(root, self.clock)

    def connect(self) -> WebSocketClient:
        """A client that has read the open packet and the CONNECT reply, alone."""
        ws = WebSocketClient(self.site, "/socket.io/?EIO=4&transport=websocket")
        [open_packet] = ws.messages()
        self.assertTrue(str(open_packet).startswith("0{"), open_packet)
        self.clock.advance(0)  # the open packet is written out
        ws.send_text('40{"n":1}')  # the client speaks: nothing waits behind the open packet
        [reply] = ws.messages()
        self.assertTrue(str(reply).startswith('40{"sid":'), reply)
        return ws

    def test_silent_client_gets_the_rest_after_10_ms(self) -> None:
        """
        A client that says nothing after the CONNECT reply gets the connect
        handler's emit 10 ms after the reply was written, not before.
        """
        ws = self.connect()
        self.clock.advance(0)  # written out
        self.clock.advance(0.009)
        self.assertEqual(ws.messages(), [])
        self.clock.advance(0.002)  # past 10 ms, whatever the float rounding
        self.assertEqual(ws.messages(), ['42["hello",{"n":1}]'])

    def test_client_that_speaks_gets_the_rest_at_once(self) -> None:
        """
        A packet from the client once the reply is written out releases what waits
        at once, in order: the emit, then the ack of the client's event.
        """
        ws = self.connect()
        self.clock.advance(0)
        ws.send_text('421["echo","x"]')
        self.assertEqual(ws.messages(), ['42["hello",{"n":1}]', '431["x"]'])

    def test_broadcasts_are_not_held(self) -> None:
        """
        Once the first packets are out, everything sent to a socket in one turn is
        written at once, with no clock advance: a room broadcast is not delayed.
        """
        ws = self.connect()
        self.clock.advance(0)
        self.clock.advance(0.011)
        self.assertEqual(ws.messages(), ['42["hello",{"n":1}]'])
        for i in range(3):
            self.namespace.emit("news", i)
        self.assertEqual(ws.messages(), ['42["news",0]', '42["news",1]', '42["news",2]'])

    def test_close_writes_what_waits_first(self) -> None:
        """
        A session closed while packets wait behind the reply sends them before the
        close frame.
        """
        ws = self.connect()
        [session] = self.engine.sessions.values()
        session.close("server disconnect")
        self.assertEqual(ws.messages(), ['42["hello",{"n":1}]'])
        self.assertTrue(ws.closed)
        self.clock.advance(1)  # the timers that were set end quietly
        self.assertEqual(ws.messages(), [])


class AttachmentLimitsOverWebSocketTests(SynchronousTestCase):
    """The bounds of a binary packet's attachments, over a raw WebSocket."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(txaio.config, "loop", self.clock)
        self.server = SocketIOServer(self.clock)
        self.server.of("/").on("echo")(lambda socket, *args: args)
        root = web.Tree()
        config = EngineIOConfig(ping_interval=1.0, ping_timeout=1.0, max_payload=10_000)
        self.engine = mount_socketio(
            root, "/socket.io/", self.server, fake_context(self.clock), self.clock, config
        )
        self.site = web.make_site(root, self.clock)

    def connected(self) -> WebSocketClient:
        ws = WebSocketClient(self.site, "/socket.io/?EIO=4&transport=websocket")
        ws.messages()
        self.clock.advance(0)
        ws.send_text("40")
        ws.messages()
        return ws

    def test_nine_of_ten_attachments_while_answering_pings(self) -> None:
        """
        Ten attachments announced, nine sent, every ping answered: 10 s after the
        header the session is closed with "attachments timeout" and nothing of it
        is left in the servers.
        """
        ws = self.connected()
        placeholders = ",".join('{"_placeholder":true,"num":%d}' % i for i in range(10))
        ws.send_text('4510-["echo",%s]' % placeholders)
        for _ in range(9):
            ws.send_binary(bytes(1000))
        for _ in range(99):
            self.clock.advance(0.1)
            for message in ws.messages():
                if message == "2":
                    ws.send_text("3")
        self.assertFalse(ws.closed)
        self.clock.advance(0.2)
        ws.messages()
        self.assertEqual((ws.close_code, ws.close_reason), (1000, "attachments timeout"))
        self.assertEqual((self.engine.sessions, self.server.of("/").sockets), ({}, {}))

    def test_attachments_over_max_payload(self) -> None:
        """
        Attachments adding up to more than maxPayload close the session at once,
        though each frame is under it.
        """
        ws = self.connected()
        placeholders = ",".join('{"_placeholder":true,"num":%d}' % i for i in range(2))
        ws.send_text('452-["echo",%s]' % placeholders)
        ws.send_binary(bytes(6000))
        ws.send_binary(bytes(6000))
        ws.messages()
        self.assertEqual((ws.close_code, ws.close_reason), (1000, "attachments too large"))
        self.assertEqual((self.engine.sessions, self.server.of("/").sockets), ({}, {}))
