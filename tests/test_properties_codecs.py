"""
Property-based tests of the pure codecs: the Engine.IO packets and polling payloads,
the Socket.IO packets, and the JSON codec and id parsers of L{gameproto.wire}.  What
encodes decodes back to the same thing, and any input given to a decoder is either
decoded or refused with the module's documented error, never with another exception.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import assume, example, given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gameproto import wire
from gameproto.socketio.engineio.framing import (
    RECORD_SEPARATOR,
    EnginePacket,
    EngineType,
    PacketError,
    decode_payload,
    decode_text_packet,
    encode_for_polling,
    encode_payload,
)
from gameproto.socketio.packets import (
    MAX_ATTACHMENTS,
    RESERVED_EVENTS,
    SocketPacket,
    SocketType,
    deconstruct,
    decode_socket_packet,
    encode_socket_packet,
    reconstruct,
)
from tests.propertysupport import json_objects, json_values, text

# ---------------------------------------------------------------------------
# Engine.IO

# A text packet's data may hold anything but the payload's record separator.
engine_data = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=RECORD_SEPARATOR),
                      max_size=40)
text_packets = st.builds(EnginePacket, st.sampled_from(list(EngineType)), engine_data)
binary_packets = st.builds(EnginePacket.message, st.binary(max_size=40))
engine_packets = text_packets | binary_packets


class EngineIOFramingProperties(SynchronousTestCase):
    @given(text_packets)
    def test_text_packet_round_trip(self, packet: EnginePacket) -> None:
        """A text packet decodes from its own encoding (a WebSocket text frame)."""
        self.assertEqual(decode_text_packet(encode_for_polling(packet)), packet)

    @given(st.lists(engine_packets, min_size=1, max_size=6))
    def test_payload_round_trip(self, packets: list[EnginePacket]) -> None:
        """A polling payload of text and binary packets decodes to the same packets."""
        self.assertEqual(decode_payload(encode_payload(packets)), packets)

    @given(st.text(max_size=40))
    @example("")
    @example("9")
    def test_any_text_packet_decodes_or_is_refused(self, raw: str) -> None:
        try:
            packet = decode_text_packet(raw)
        except PacketError:
            return
        self.assertEqual(packet.type.value + packet.data, raw)

    @given(st.binary(max_size=60) | engine_data.map(lambda s: s.encode("utf-8")))
    @example(b"b!!")
    @example(b"\xff")
    @example(b"\x1e")
    def test_any_payload_decodes_or_is_refused(self, body: bytes) -> None:
        try:
            packets = decode_payload(body)
        except PacketError:
            return
        self.assertEqual(len(packets), body.decode("utf-8").count(RECORD_SEPARATOR) + 1)


# ---------------------------------------------------------------------------
# Socket.IO

namespaces = st.just("/") | st.from_regex(r"/[a-z0-9_-]{1,10}", fullmatch=True)
ack_ids = st.none() | st.integers(min_value=0, max_value=10**16 - 1)
event_names = text.filter(lambda name: name not in RESERVED_EVENTS)


def _event_data(args: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.builds(lambda name, rest: [name, *rest], event_names, st.lists(args, max_size=3))


def _binary_values() -> st.SearchStrategy[Any]:
    """JSON values with bytes among their leaves (the attachments)."""
    return json_values(st.binary(max_size=10) | st.integers(-5, 5) | text)


def _socket_packets() -> st.SearchStrategy[SocketPacket]:
    def packet(kind: SocketType, data: st.SearchStrategy[Any], ack: st.SearchStrategy[Any] = st.none()):
        return st.builds(SocketPacket, st.just(kind), namespaces, data, ack)

    return st.one_of(
        packet(SocketType.CONNECT, st.none() | json_objects),
        packet(SocketType.DISCONNECT, st.none()),
        packet(SocketType.EVENT, _event_data(json_values()), ack_ids),
        packet(SocketType.ACK, st.lists(json_values(), max_size=3), ack_ids),
        packet(SocketType.CONNECT_ERROR, text | json_objects),
    )


class SocketIOPacketProperties(SynchronousTestCase):
    @given(_socket_packets())
    @example(SocketPacket(SocketType.EVENT, "/", ["x", 1], 0))
    @example(SocketPacket(SocketType.EVENT, "/a", [""], None))
    def test_round_trip(self, packet: SocketPacket) -> None:
        """Every packet type with any JSON data decodes from its own encoding."""
        self.assertEqual(decode_socket_packet(encode_socket_packet(packet)), packet)

    @given(st.sampled_from([SocketType.BINARY_EVENT, SocketType.BINARY_ACK]), namespaces, ack_ids,
           st.lists(_binary_values(), max_size=3), st.binary(max_size=10), event_names)
    def test_binary_round_trip(self, kind: SocketType, namespace: str, ack_id: int | None,
                               args: list[Any], first: bytes, name: str) -> None:
        """
        A binary packet: its bytes become placeholders and attachments, the header
        counts them, and the data comes back whole once they are put back.
        """
        data = [name, first, *args] if kind is SocketType.BINARY_EVENT else [first, *args]
        skeleton, buffers = deconstruct(data)
        assume(len(buffers) <= MAX_ATTACHMENTS)
        packet = SocketPacket(kind, namespace, skeleton, ack_id, len(buffers))
        decoded = decode_socket_packet(encode_socket_packet(packet))
        self.assertEqual(decoded, packet)
        self.assertEqual(reconstruct(decoded.data, buffers), data)

    @given(st.text(max_size=60) | st.from_regex(r"[0-6][0-9-]{0,4}(/[a-z]{0,3},?)?[0-9]{0,20}", fullmatch=True)
           .flatmap(lambda head: st.just(head) | json_values().map(lambda v: head + wire.encode(v).decode())))
    @example("51-")
    @example("5-1")
    @example("2" + "9" * 17 + "[]")
    @example('2/x,1["connect"]')
    def test_any_text_decodes_or_is_refused(self, raw: str) -> None:
        try:
            packet = decode_socket_packet(raw)
        except PacketError:
            return
        self.assertIsInstance(packet, SocketPacket)

    @given(json_values(), st.lists(st.binary(max_size=4), max_size=3))
    @example({"_placeholder": True, "num": 0}, [])
    @example({"_placeholder": True, "num": True}, [b"x"])
    def test_reconstruct_any_data_or_refuses(self, data: Any, buffers: list[bytes]) -> None:
        try:
            reconstruct(data, buffers)
        except PacketError:
            pass


# ---------------------------------------------------------------------------
# gameproto.wire


def _same_json(a: Any, b: Any) -> bool:
    """Equality of JSON values where -0.0 and 0.0, and 1 and 1.0, stay apart."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return bool(a == b)


class WireProperties(SynchronousTestCase):
    @given(json_values())
    def test_json_round_trip(self, value: Any) -> None:
        decoded = wire.decode(wire.encode(value))
        self.assertTrue(_same_json(decoded, value), (decoded, value))

    @given(st.binary(max_size=60) | st.text(max_size=60))
    @example(b"\xff")
    @example('"\\ud800"')
    @example("1e400")
    @example("[" * 2000)
    def test_any_input_decodes_or_is_invalid_json(self, raw: bytes | str) -> None:
        try:
            wire.decode(raw)
        except wire.InvalidJSON:
            pass

    @given(st.recursive(st.none() | st.integers() | st.text() | st.floats(),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
                        max_leaves=8))
    @example("\ud800")
    @example(2**64)
    def test_any_value_encodes_or_is_unencodable(self, value: Any) -> None:
        try:
            wire.encode(value)
        except wire.UnencodableValue:
            pass

    @given(st.none() | st.integers() | st.floats() | st.binary(max_size=5) | st.text(max_size=25)
           | st.from_regex(r"[0-9]{1,25}", fullmatch=True) | json_values())
    @example("١")
    @example("１")
    @example("²")
    @example("1" * 5000)
    @example("12\n")
    def test_parse_id(self, raw: Any) -> None:
        parsed = wire.parse_id(raw)
        if parsed is None:
            return
        self.assertEqual(str(parsed).zfill(len(raw)), raw)
        self.assertLessEqual(len(raw), wire.ID_MAX_DIGITS)
        self.assertTrue(raw.isascii() and raw.isdigit())

    @given(st.none() | st.integers() | st.binary(max_size=5) | st.text(max_size=40)
           | st.from_regex(r"[a-z0-9-]{1,40}", fullmatch=True) | json_values())
    @example("default\n")
    @example("Default")
    def test_parse_name_id(self, raw: Any) -> None:
        parsed = wire.parse_name_id(raw)
        if parsed is None:
            return
        self.assertEqual(parsed, raw)
        self.assertLessEqual(len(raw), wire.NAME_ID_MAX_LENGTH)
        self.assertTrue(set(raw) <= set("abcdefghijklmnopqrstuvwxyz0123456789-"))
