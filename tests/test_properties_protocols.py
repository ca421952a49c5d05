"""
Property-based tests of every protocol's connection machine, driven over the
in-memory WebSocket client of L{gameproto.testing} into a whole server on a Clock:
match, arena player and controller, processor, Socket.IO (the chat) over WebSocket,
the matchmaking socket and a replay's stream.  (Engine.IO over polling, its upgrade
and probe are driven by the seeded fuzzer of tests/test_socketio_fuzz.py.)

Each example brings a connection to some state (a match with its host alone, its
challenger ready, its game running...), then plays a sequence of frames -- commands
of the protocol mixed with arbitrary JSON objects and values, text that is not JSON,
binary frames, invalid UTF-8 -- with pauses of the clock between them.  Whatever the
sequence, the server logs no failure, never closes with 4011 "internal error" (the
catch-all for an exception in a protocol's hook) nor drops a connection without a
close frame, sends only messages of the protocol's documented shape, and still
serves a well-behaved client afterwards.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gameproto import wire
from gameproto.socketio.engineio.framing import EngineType, decode_text_packet
from gameproto.socketio.packets import decode_socket_packet
from tests.propertysupport import (
    STEP,
    Heard,
    ServerUnderTest,
    commands,
    json_objects,
    json_scalars,
    json_values,
    play,
    sequences,
    text,
)

ARENA_TICK = 0.02  # the default tick_ms
# Close codes every WebSocket endpoint may use on its own (docs/architecture.md):
# 1007 invalid UTF-8 and 1009 too big (Autobahn), 4008 rate limited.
TRANSPORT_CLOSES = {1007, 1009, 4008}


class MachineTestCase(SynchronousTestCase):
    """How every protocol's property is checked."""

    def explore(self, prepare: Callable[[ServerUnderTest], Any], steps: list[tuple[str, Any]],
                check: Callable[[Heard], None], still_served: Callable[[ServerUnderTest], None]) -> None:
        server = ServerUnderTest()
        try:
            ws = prepare(server)
            play(server, ws, steps, check)
            if ws.disconnected:
                self.assertTrue(ws.closed, "the connection was dropped without a close frame")
            still_served(server)
        finally:
            server.stop()
        self.assertEqual(server.logged_failures, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def check_closes(self, heard: Heard, allowed: set[int],
                     also: frozenset[tuple[int, str]] = frozenset()) -> None:
        for code, reason in heard.closes:
            if (code, reason) in also:
                continue
            self.assertIn(code, allowed | TRANSPORT_CLOSES, reason)

    def json_objects(self, heard: Heard) -> list[dict[str, Any]]:
        """Every text message, which must be one JSON object; no binary message."""
        self.assertEqual(heard.binaries, [])
        messages = [wire.decode(t) for t in heard.texts]
        for message in messages:
            self.assertIsInstance(message, dict)
        return messages


# ---------------------------------------------------------------------------
# match

MATCH_COMMANDS = commands(
    st.sampled_from(["start_match", "ready", "up", "down", "fup", "fdown", "UP"]).map(lambda c: {"command": c})
    | json_values().map(lambda c: {"command": c})
)
# The errors docs/match.md lists for a connection once it has joined.
MATCH_ERRORS = [
    {"error": "invalid command", "code": 2},
    {"error": "no command sent", "code": 2},
    {"error": "rate limit exceeded, message dropped", "code": 2},
    {"error": "challenger not ready", "code": 3},
    {"error": "match ended, stop sending commands", "code": 4},
]
MATCH_STATES = ["host alone", "challenger joined", "challenger ready", "game started"]


class MatchProperties(MachineTestCase):
    @given(st.sampled_from(MATCH_STATES), st.sampled_from(["host", "challenger", "spectator"]),
           sequences(MATCH_COMMANDS))
    def test_any_frames_in_any_state(self, state: str, role: str, steps: list[tuple[str, Any]]) -> None:
        def prepare(server: ServerUnderTest) -> Any:
            match_id = server.call("POST", "/api/ongoing_matches/", "hana").json()["id"]
            sockets = {"host": server.connect(f"/ws/game/{match_id}/?role=host", "hana")}
            stage = MATCH_STATES.index(state)
            if stage >= 1:
                sockets["challenger"] = server.connect(f"/ws/game/{match_id}/?role=challenger", "cole")
            if stage >= 2:
                sockets["challenger"].send_json({"command": "ready"})
            if stage >= 3:
                sockets["host"].send_json({"command": "start_match"})
            sockets["spectator"] = server.connect(f"/ws/game/{match_id}/?role=spectator", "sam")
            return sockets.get(role, sockets["host"])

        self.explore(prepare, steps, self.check_match, self.match_still_served)

    def check_match(self, heard: Heard) -> None:
        for message in self.json_objects(heard):
            if "message_type" in message:
                self.assertIsInstance(message["message_type"], str)
            elif "error" in message:
                self.assertIn(message, MATCH_ERRORS)
            else:
                self.assertEqual(message, {"status": "success", "code": 0})
        self.check_closes(heard, {1000, 4009})

    def match_still_served(self, server: ServerUnderTest) -> None:
        match_id = server.call("POST", "/api/ongoing_matches/", "walt").json()["id"]
        ws = server.connect(f"/ws/game/{match_id}/?role=host", "walt")
        messages = ws.json_messages()
        self.assertEqual(messages[0], {"status": "success", "code": 0})
        self.assertEqual(messages[1]["message_type"], "lobby")


# ---------------------------------------------------------------------------
# arena

ARENA_COMMANDS = commands(
    st.sampled_from([
        {"type": "RegisterPlayerCommand"},
        {"type": "MovePlayerCommand", "data": [{"rotate": 60}, {"move": "forward"}]},
        {"type": "MovePlayerCommand", "data": [{"move": "backward"}]},
        {"type": "PlayerShootCommand"},
        {"type": "PlayerShootComman", "data": {}},
        {"type": "ConfigurePlayerCommand", "data": [{"op": "radarType", "args": ["long_range_scan"]}]},
        {"type": "StartGameCommand"},
    ])
    | st.builds(lambda steps: {"type": "MovePlayerCommand", "data": steps},
                st.lists(st.dictionaries(st.sampled_from(["move", "rotate"]),
                                         st.sampled_from(["forward", "backward"]) | json_scalars,
                                         max_size=2), max_size=3))
    | st.builds(lambda op, args: {"type": "ConfigurePlayerCommand", "data": [{"op": op, "args": args}]},
                st.sampled_from(["radarType"]) | json_scalars,
                st.sampled_from([["long_range_scan"], ["circular_scan"], "long_range_scan"]) | json_values())
    | st.builds(lambda kind, data: {"type": kind, "data": data},
                st.sampled_from(["RegisterPlayerCommand", "MovePlayerCommand", "PlayerShootCommand",
                                 "ConfigurePlayerCommand", "StartGameCommand"]) | text,
                json_values())
)
ARENA_STATES = ["player", "registered player", "player in a started game", "controller",
                "controller of a started game"]


class ArenaProperties(MachineTestCase):
    @given(st.sampled_from(ARENA_STATES), sequences(ARENA_COMMANDS))
    def test_any_frames_in_any_state(self, state: str, steps: list[tuple[str, Any]]) -> None:
        def prepare(server: ServerUnderTest) -> Any:
            player = server.connect("/ws/arena/default/player")
            controller = server.connect("/ws/arena/default/control", "ann")
            if state != "player" and state != "controller":
                player.send_json({"type": "RegisterPlayerCommand"})
                server.clock.advance(ARENA_TICK)
            if "started" in state:
                controller.send_json({"type": "StartGameCommand"})
                server.clock.advance(ARENA_TICK)
            return controller if "controller" in state else player

        self.explore(prepare, steps, self.check_arena, self.arena_still_served)

    def check_arena(self, heard: Heard) -> None:
        for message in self.json_objects(heard):
            self.assertIsInstance(message["type"], str)
            self.assertIsInstance(message["data"], (dict, list))
            if message["type"] == "InvalidCommandError":
                self.assertIsInstance(message["data"]["reason"], str)
        self.check_closes(heard, {1000, 4009})

    def arena_still_served(self, server: ServerUnderTest) -> None:
        ws = server.connect("/ws/arena/default/player")
        ws.send_json({"type": "RegisterPlayerCommand"})
        server.clock.advance(ARENA_TICK)
        kinds = {m["type"] for m in ws.json_messages()}
        self.assertTrue(kinds & {"RegisterPlayerAck", "InvalidCommandError"}, kinds)


# ---------------------------------------------------------------------------
# processor

PROCESSOR_COMMANDS = st.one_of(
    commands(st.sampled_from([
        {"type": "context", "language": "python"},
        {"type": "context", "language": "javascript", "engine": "client"},
        {"type": "context", "language": "python", "engine": "arena", "arena": "default"},
        {"type": "context", "language": "cobol"},
        {"type": "context", "language": "python", "engine": "arena"},
        {"type": "stop"},
        {"type": "result", "id": 1, "message": {"echo": 1}},
        {"type": "result", "id": "1"},
    ])),
    commands(st.builds(lambda kind, extra: {**extra, "type": kind},
                       st.sampled_from(["context", "stop", "result"]) | text,
                       st.dictionaries(st.sampled_from(["language", "engine", "arena", "id", "message"]),
                                       json_values(), max_size=3))),
    st.tuples(st.just("text"), st.sampled_from(["print(1)", "while True: pass", "x = 1 / 0"])),
)
PROCESSOR_MESSAGES = {"ready", "started", "output", "command", "error", "end"}


class ProcessorProperties(MachineTestCase):
    @given(st.booleans(), sequences(PROCESSOR_COMMANDS))
    def test_any_frames_in_any_state(self, context_sent: bool, steps: list[tuple[str, Any]]) -> None:
        def prepare(server: ServerUnderTest) -> Any:
            ws = server.connect("/ws/processor/", "ann")
            if context_sent:
                ws.send_json({"type": "context", "language": "python"})
            return ws

        self.explore(prepare, steps, self.check_processor, self.processor_still_served)

    def check_processor(self, heard: Heard) -> None:
        for message in self.json_objects(heard):
            self.assertIn(message["type"], PROCESSOR_MESSAGES)
            if message["type"] == "error":
                self.assertIn(message["code"], {"SERVER_ERROR", "INTERPRETER_ERROR"})
                self.assertIsInstance(message["message"], str)
        self.check_closes(heard, {1000, 4029}, frozenset({(4011, "cannot start the program")}))

    def processor_still_served(self, server: ServerUnderTest) -> None:
        ws = server.connect("/ws/processor/", "bob")
        self.assertEqual([m["message"] for m in ws.json_messages()], ["send context"])
        ws.send_json({"type": "context", "language": "python"})
        # On a Clock the sandbox has not started: its documented error stands for "send code".
        self.assertIn([(m["type"], m["message"]) for m in ws.json_messages()],
                      [[("ready", "send code")], [("error", "processor unavailable")]])


# ---------------------------------------------------------------------------
# Socket.IO and Engine.IO (the chat)

SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"
# Packets a chat client sends in its life (all but a second CONNECT, which closes
# the session as the official server does, keep it open)...
SOCKETIO_GOOD = st.tuples(st.just("text"), st.sampled_from([
    '40{"room":"lobby"}', "40/nope,", "41", "3", "6",
    '42["register","fuzzer"]', '421["register","fuzzer"]', '42["message",{"message":"hi"}]',
    '4230["message",{"message":"hi"}]', "430[]", "42[1]",
    '451-["message",{"_placeholder":true,"num":0}]',
]))
# ...and, a fifth as often, Engine.IO packets and Socket.IO events of any content.
SOCKETIO_COMMANDS = st.one_of(
    *[SOCKETIO_GOOD] * 4,
    st.tuples(st.just("text"), text.map(lambda t: "4" + t) | text.map(lambda t: "2" + t)
              | json_values().map(lambda v: "42" + wire.encode(v).decode())),
)
SOCKETIO_STATES = ["open", "connected", "registered"]


class SocketIOProperties(MachineTestCase):
    # Most invalid packets close the session: valid ones dominate so that sequences
    # go on, and pauses are long enough (up to 50 s) for the heartbeat to run.
    @given(st.sampled_from(SOCKETIO_STATES), sequences(SOCKETIO_COMMANDS, weight=16, longest_pause=5000))
    def test_any_frames_in_any_state(self, state: str, steps: list[tuple[str, Any]]) -> None:
        def prepare(server: ServerUnderTest) -> Any:
            ws = server.connect(SOCKETIO_PATH)
            if state != "open":
                ws.send_text('40{"room":"lobby"}')
                server.clock.advance(0)
            if state == "registered":
                ws.send_text('421["register","fuzzer"]')
                server.clock.advance(0)
            return ws

        self.explore(prepare, steps, self.check_socketio, self.socketio_still_served)

    def check_socketio(self, heard: Heard) -> None:
        for raw in heard.texts:
            packet = decode_text_packet(raw)
            if packet.type is EngineType.MESSAGE:
                decode_socket_packet(packet.data)
        self.check_closes(heard, {1000, 4000})  # 4000: an invalid packet (docs/chat.md)

    def socketio_still_served(self, server: ServerUnderTest) -> None:
        ws = server.connect(SOCKETIO_PATH)
        self.assertEqual(ws.messages()[0][:1], "0")  # the Engine.IO open packet
        ws.send_text('40{"room":"survivors"}')
        server.clock.advance(0)
        replies = ws.messages()
        self.assertTrue(any(isinstance(r, str) and r.startswith("40{") for r in replies), replies)


# ---------------------------------------------------------------------------
# matchmaking

MATCHMAKING_STATES = ["no ticket", "waiting", "matched"]
MATCHMAKING_ERROR = {"type": "error", "message": "this socket only listens"}


class MatchmakingProperties(MachineTestCase):
    @given(st.sampled_from(MATCHMAKING_STATES), sequences(commands(json_objects)))
    def test_any_frames_in_any_state(self, state: str, steps: list[tuple[str, Any]]) -> None:
        def prepare(server: ServerUnderTest) -> Any:
            if state != "no ticket":
                self.assertEqual(server.call("POST", "/api/matchmaking/", "hana").status, 201)
            if state == "matched":
                self.assertEqual(server.call("POST", "/api/matchmaking/", "cole").status, 201)
                server.clock.advance(1)  # a round of the matcher
            return server.connect("/ws/matchmaking/", "hana")

        self.explore(prepare, steps, self.check_matchmaking, self.matchmaking_still_served)

    def check_matchmaking(self, heard: Heard) -> None:
        for message in self.json_objects(heard):
            if message["type"] == "error":
                self.assertEqual(message, MATCHMAKING_ERROR)
            elif message["type"] == "matched":
                self.assertEqual(set(message), {"type", "match_id", "role"})
            else:
                # The seat timeout may pass in a long pause: the ticket's end is told.
                self.assertIn(message["type"], {"requeued", "removed"})
        self.check_closes(heard, {1000})

    def matchmaking_still_served(self, server: ServerUnderTest) -> None:
        for user in ("walt", "xena"):
            self.assertEqual(server.call("POST", "/api/matchmaking/", user).status, 201)
        ws = server.connect("/ws/matchmaking/", "walt")
        server.clock.advance(1)
        messages = ws.json_messages()
        # walt is paired with xena, or with hana when her ticket still waits.
        self.assertEqual([m["type"] for m in messages], ["matched"])
        self.assertIn(messages[0]["role"], {"host", "challenger"})


# ---------------------------------------------------------------------------
# a replay's stream (a spectator of a completed match)

REPLAY_FRAMES = 50
REPLAY_COMMANDS = commands(
    st.builds(lambda ms: {"command": "seek", "ms": ms},
              st.integers(min_value=-10, max_value=REPLAY_FRAMES * 10 + 10) | json_scalars)
    | st.sampled_from([{"command": "seek"}, {"command": "up"}, {"ms": 0}])
)
REPLAY_ERRORS = [
    {"error": "invalid command", "code": 2},
    {"error": "no command sent", "code": 2},
    {"error": "rate limit exceeded, message dropped", "code": 2},
]
GAME_FRAMES = {"init", "status", "end"}


def kept_replay(server: ServerUnderTest) -> int:
    """A completed match of w and l with a replay of REPLAY_FRAMES frames; its id."""
    from gameproto.match.elo import rate
    from gameproto.match.pong import PongGame, PongRules
    from gameproto.store import MatchOutcome, User

    store, clock = server.store, server.clock
    now = datetime.fromtimestamp(clock.seconds(), timezone.utc)
    for name in ("w", "l"):
        store.create_user(User(name, "x", now))
    match = store.create_ongoing_match("w", now).result
    store.complete_match(MatchOutcome(match.id, "w", "l", now, now, 5, 0), rate)
    game = PongGame(PongRules())
    recorder = server.server.replays.recorder()
    recorder.frame(wire.encode(game.init_frame()))
    for _ in range(REPLAY_FRAMES - 2):
        clock.advance(STEP)
        recorder.frame(wire.encode(game.step()))
    clock.advance(STEP)
    server.server.replays.keep(match.id, recorder, wire.encode(game.step()))
    return match.id


class ReplayProperties(MachineTestCase):
    @given(st.sampled_from(["0.25", "1", "16"]), sequences(REPLAY_COMMANDS))
    def test_any_frames_while_streaming(self, speed: str, steps: list[tuple[str, Any]]) -> None:
        def prepare(server: ServerUnderTest) -> Any:
            self.match_id = kept_replay(server)
            return server.connect(f"/ws/game/{self.match_id}/?role=spectator&speed={speed}", "sam")

        self.explore(prepare, steps, self.check_replay, self.replay_still_served)

    def check_replay(self, heard: Heard) -> None:
        for message in self.json_objects(heard):
            if "error" in message:
                self.assertIn(message, REPLAY_ERRORS)
            elif "status" in message:
                self.assertEqual(message, {"status": "success", "code": 0})
            elif message["message_type"] in ("replay", "replay_end"):
                self.assertEqual(message["id"], self.match_id)
            else:
                self.assertIn(message["message_type"], GAME_FRAMES)
        self.check_closes(heard, {1000})

    def replay_still_served(self, server: ServerUnderTest) -> None:
        ws = server.connect(f"/ws/game/{self.match_id}/?role=spectator", "tom")
        messages = ws.json_messages()
        self.assertEqual(messages[0], {"status": "success", "code": 0})
        self.assertEqual((messages[1]["message_type"], messages[1]["position_ms"]), ("replay", 0))
