"""
The processor's match engine on a Clock: a program's seat (L{MatchEngine}) in matches of a
real match service with a memory store, against human players on in-memory WebSockets;
and the processor endpoint's context and code for the match engine, with fake runs.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import orjson
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from gameproto import web, wire
from gameproto.match.frames import Role
from gameproto.processor.match_engine import MatchEngine, MatchSeats
from gameproto.processor.protocol import processor_resource
from gameproto.testing import TEXT, WebSocketClient
from tests.matchsupport import MatchTestCase, non_status, read
from tests.processor_fakes import FakeRuns

OK = {"status": "ok"}
INVALID = {"error": "invalid command", "code": 2}


def plain(reply: Any) -> Any:
    """A reply as the program reads it (frames are passed on encoded)."""
    return orjson.loads(orjson.dumps(reply))


class EngineTestCase(MatchTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.done: list[str] = []
        self.calls = 0

    def engine(self, username: str, seats: MatchSeats | None = None) -> MatchEngine:
        self.token(username)  # the user exists
        engine = MatchEngine(seats or self.server.match_seats, username, self.clock, 9.0,
                             done=lambda: self.done.append(username))
        self.addCleanup(engine.close)
        return engine

    def send(self, engine: MatchEngine, command: Any) -> Any:
        """One engine call answered at once, as the program reads it."""
        self.calls += 1
        reply = engine.call(self.calls, command)
        if isinstance(reply, Deferred):
            return plain(self.successResultOf(reply))
        return plain(reply)

    def later(self, engine: MatchEngine, command: Any) -> Deferred[Any]:
        """One engine call not answered yet."""
        self.calls += 1
        reply = engine.call(self.calls, command)
        self.assertIsInstance(reply, Deferred)
        self.assertNoResult(reply)
        return reply.addCallback(plain)

    def seated(self, engine: MatchEngine, match_id: int, role: str) -> None:
        self.assertIsNone(self.successResultOf(engine.take_seat(str(match_id), Role(role))))

    def challenger_program(self) -> tuple[int, WebSocketClient, MatchEngine]:
        """hana hosts on a WebSocket; cole's program takes the challenger seat."""
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        read(host)
        program = self.engine("cole")
        self.seated(program, match_id, "challenger")
        return match_id, host, program

    def short_games(self) -> None:
        """Games of one point (with two still paddles, the challenger's)."""
        self.service.games.rules = attrs.evolve(self.service.rules, winning_score=1)


class SeatTests(EngineTestCase):
    def test_challenger_seat(self) -> None:
        """
        A program takes the challenger seat as its user: the host sees it in the lobby,
        the program reads the same lobby frame, and GetSeat names the seat.
        """
        match_id, host, program = self.challenger_program()
        lobby = self.lobby("cole")
        self.assertEqual(read(host).messages, [lobby])
        self.assertEqual(self.send(program, {"type": "GetFrame"}), lobby)
        self.assertEqual(self.send(program, {"type": "GetSeat"}),
                         {"match": match_id, "role": "challenger"})
        self.assertEqual(self.where("cole"), (match_id, "challenger"))

    def test_refusals(self) -> None:
        """A seat is refused as a WebSocket is: codes 5, 8 and 9 with their frames."""
        match_id = self.create_match("hana")
        program = self.engine("cole")
        self.assertEqual(self.successResultOf(program.take_seat("999", Role.CHALLENGER)),
                         {"error": "non existent requested match", "code": 5})
        self.assertEqual(self.successResultOf(program.take_seat(str(match_id), Role.HOST)),
                         {"error": "trying to join a match as host which you did not start",
                          "code": 8})
        self.create_match("dora")
        other = self.engine("dora")
        refusal = self.successResultOf(other.take_seat(str(match_id), Role.CHALLENGER))
        self.assertEqual(refusal["code"], 9)
        self.assertEqual(self.send(program, {"command": "ready"}),
                         {"error": "no seat: this run has no seat in a match (send Matchmake first)"})

    def test_commands_answered_as_the_websocket(self) -> None:
        """
        ready is answered ok, then invalid command (code 2) as the WebSocket's second ready;
        an object without command gets code 2 "no command sent", a non-object or an
        unknown command "invalid command"; the host's lobby shows the challenger ready.
        """
        _, host, program = self.challenger_program()
        read(host)
        self.assertEqual(self.send(program, {"command": "ready"}), OK)
        self.assertEqual(read(host).messages, [self.lobby("cole", ready=True)])
        self.assertEqual(self.send(program, {"command": "ready"}), INVALID)
        self.assertEqual(self.send(program, {"command": "up"}), INVALID)  # not started
        self.assertEqual(self.send(program, {}), {"error": "no command sent", "code": 2})
        self.assertEqual(self.send(program, [1]), INVALID)
        self.assertEqual(self.send(program, {"command": 7}), INVALID)
        self.assertEqual(self.send(program, {"type": "Dance"})["error"][:31],
                         "unknown request type: Dance (ex")

    def test_play(self) -> None:
        """
        Once the host starts, WaitFrame gives init then each status; a paddle command is
        answered ok and moves the challenger's paddle in what the host sees.
        """
        _, host, program = self.challenger_program()
        self.send(program, {"command": "ready"})
        host.send_json({"command": "start_match"})
        read(host)
        frame = self.send(program, {"type": "WaitFrame"})
        self.assertEqual(frame["message_type"], "init")
        waiting = self.later(program, {"type": "WaitFrame", "timeout_ms": 100})
        self.tick()
        status = self.successResultOf(waiting)
        self.assertEqual(status["message_type"], "status")
        self.assertEqual(status["right_paddle_y"], 0.5)
        for _ in range(3):
            self.assertEqual(self.send(program, {"command": "down"}), OK)
        self.tick(3)
        seen = [m for m in read(host).messages if m.get("message_type") == "status"]
        self.assertGreater(seen[-1]["right_paddle_y"], 0.5)
        self.assertEqual(self.send(program, {"type": "WaitFrame"}), seen[-1])
        self.assertEqual(self.send(program, {"type": "GetFrame"}), seen[-1])
        self.assertEqual(program.frames_read, 4)

    def test_host_program(self) -> None:
        """
        A host program's start_match gets code 3 while the challenger is not ready, then
        ok once they are; the challenger's WebSocket gets init.
        """
        match_id = self.create_match("hana")
        program = self.engine("hana")
        self.seated(program, match_id, "host")
        self.assertEqual(self.send(program, {"command": "start_match"}),
                         {"error": "challenger not ready", "code": 3})
        challenger = self.joined(match_id, "challenger", "cole")
        challenger.send_json({"command": "ready"})
        self.assertEqual(self.send(program, {"type": "WaitFrame"}), self.lobby("cole", True))
        self.assertEqual(self.send(program, {"command": "start_match"}), OK)
        self.assertIn("init", [m.get("message_type") for m in read(challenger).messages])
        self.assertEqual(self.send(program, {"command": "start_match"}), INVALID)

    def test_wait_frame_timeout(self) -> None:
        """WaitFrame with nothing new is null after timeout_ms; a bad timeout is refused."""
        _, _, program = self.challenger_program()
        self.send(program, {"type": "GetFrame"})
        waiting = self.later(program, {"type": "WaitFrame", "timeout_ms": 250})
        self.clock.advance(0.2)
        self.assertNoResult(waiting)
        self.clock.advance(0.05)
        self.assertIsNone(self.successResultOf(waiting))
        for bad in (-1, 9001, True, "5", None):
            self.assertEqual(self.send(program, {"type": "WaitFrame", "timeout_ms": bad}),
                             {"error": "WaitFrame takes timeout_ms from 0 to 9000"})

    def test_cancelled_wait(self) -> None:
        """A WaitFrame the runner gave up on is forgotten: the next frame stays unread."""
        match_id, _, program = self.challenger_program()
        self.send(program, {"type": "GetFrame"})
        self.calls += 1
        waiting = program.call(self.calls, {"type": "WaitFrame"})
        program.cancelled(self.calls)
        deadline = self.clock.seconds() + 9.0
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.getTime() == deadline], [])
        self.joined(match_id, "spectator", "dora")
        self.assertNoResult(waiting)
        self.assertEqual(self.send(program, {"type": "WaitFrame", "timeout_ms": 0}),
                         self.lobby("cole", spectators=1))

class EndTests(EngineTestCase):
    def test_match_end(self) -> None:
        """
        The end frame reaches a waiting program; then commands and waits get "seat closed"
        with close code 1000, GetFrame still the end frame, and the run is told to stop
        once the grace has passed.
        """
        self.short_games()
        _, host, program = self.challenger_program()
        self.send(program, {"command": "ready"})
        host.send_json({"command": "start_match"})
        self.send(program, {"type": "WaitFrame"})
        last = None
        for _ in range(2000):
            frame = self.send(program, {"type": "GetFrame"})
            if frame["message_type"] == "end":
                last = frame
                break
            self.tick()
        assert last is not None
        self.assertEqual({last["winner"], last["loser"]}, {"hana", "cole"})
        self.assertEqual((last["winner_elo_after_match"], last["loser_elo_after_match"]),
                         (1016, 984))
        closed = {"error": "seat closed: match ended", "close_code": 1000}
        self.assertEqual(self.send(program, {"command": "up"}), closed)
        self.assertEqual(self.send(program, {"type": "WaitFrame"}), closed)
        self.assertEqual(self.send(program, {"type": "GetFrame"}), last)
        self.assertEqual(self.done, [])
        self.clock.advance(self.server.match_seats.over_grace)
        self.assertEqual(self.done, ["cole"])
        self.assertEqual(self.where("cole"), (None, None))

    def test_replaced(self) -> None:
        """
        The user's own WebSocket in the same seat replaces the program's (4009): its
        waiting call gets "seat closed", the run is told to stop.
        """
        match_id, host, program = self.challenger_program()
        self.send(program, {"type": "GetFrame"})
        waiting = self.later(program, {"type": "WaitFrame"})
        self.joined(match_id, "challenger", "cole")
        self.assertEqual(self.successResultOf(waiting), {
            "error": "seat closed: replaced by a newer connection", "close_code": 4009})
        self.clock.advance(self.server.match_seats.over_grace)
        self.assertEqual(self.done, ["cole"])
        self.assertEqual(self.where("cole"), (match_id, "challenger"))  # the new socket's

    def test_run_over_frees_the_seat(self) -> None:
        """The run's end gives the seat back as a closed WebSocket: the slot is free."""
        match_id, host, program = self.challenger_program()
        read(host)
        program.close()
        self.assertEqual(read(host).messages, [self.lobby()])
        self.assertEqual(self.where("cole"), (None, None))
        self.assertEqual(self.done, [])

    def test_rate_limit(self) -> None:
        """
        Commands over the match endpoint's rate get the rate-limit error; 5 s over it the
        seat is lost as the WebSocket is closed with 4008, and given back.
        """
        seats = attrs.evolve(self.server.match_seats,
                             limits=wire.EndpointLimits(wire.KiB, messages_per_second=10, burst=5))
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        program = self.engine("cole", seats)
        self.seated(program, match_id, "challenger")
        read(host)
        replies = [self.send(program, {"command": "up"}) for _ in range(7)]
        self.assertEqual(replies[:5], [INVALID] * 5)  # within the burst: the match's answer
        self.assertEqual(replies[5:], [{"error": "rate limit exceeded, message dropped",
                                        "code": 2}] * 2)
        for _ in range(6):
            self.clock.advance(0.9)
            for _ in range(20):
                reply = self.send(program, {"command": "up"})
        self.assertEqual(reply, {"error": "seat closed: rate limit exceeded", "close_code": 4008})
        self.assertEqual(read(host).messages, [self.lobby()])


class FakeMatchmaking:
    """A queue the test pairs by hand: C{username -> Deferred[(match_id, role)]}."""

    def __init__(self) -> None:
        self.queued: dict[str, Deferred[tuple[int, str]]] = {}
        self.left: list[str] = []

    def __call__(self, username: str) -> Deferred[tuple[int, str]]:
        d: Deferred[tuple[int, str]] = Deferred(lambda _: self.left.append(username))
        self.queued[username] = d
        return d


class MatchmakeTests(EngineTestCase):
    def test_unavailable(self) -> None:
        """Mounted without matchmaking (an application's choice), Matchmake is refused."""
        program = self.engine("cole", attrs.evolve(self.server.match_seats, matchmake=None))
        self.assertEqual(self.send(program, {"type": "Matchmake"}),
                         {"error": "matchmaking is not available"})

    def test_paired(self) -> None:
        """
        Matchmake queues the user and answers with the seat once paired; the program then
        plays it as with a seat named in the context.
        """
        queue = FakeMatchmaking()
        seats = attrs.evolve(self.server.match_seats, matchmake=queue)
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        read(host)
        program = self.engine("cole", seats)
        waiting = self.later(program, {"type": "Matchmake", "timeout_ms": 1000})
        self.clock.advance(1)
        self.assertIsNone(self.successResultOf(waiting))  # still queued
        waiting = self.later(program, {"type": "Matchmake"})
        queue.queued["cole"].callback((match_id, "challenger"))
        seat = {"match": match_id, "role": "challenger"}
        self.assertEqual(self.successResultOf(waiting), seat)
        self.assertEqual(read(host).messages, [self.lobby("cole")])
        self.assertEqual(self.send(program, {"command": "ready"}), OK)
        self.assertEqual(self.send(program, {"type": "Matchmake"}), seat)
        self.assertEqual(queue.left, [])

    def test_run_over_leaves_the_queue(self) -> None:
        """A run that ends while queued cancels its matchmaking: it leaves the queue."""
        queue = FakeMatchmaking()
        program = self.engine("cole", attrs.evolve(self.server.match_seats, matchmake=queue))
        self.later(program, {"type": "Matchmake"})
        program.close()
        self.assertEqual(queue.left, ["cole"])

    def test_seat_refused(self) -> None:
        """A matchmade seat the match refuses is the Matchmake's error; the next one queues again."""
        queue = FakeMatchmaking()
        program = self.engine("cole", attrs.evolve(self.server.match_seats, matchmake=queue))
        waiting = self.later(program, {"type": "Matchmake"})
        queue.queued.pop("cole").callback((999, "challenger"))
        self.assertEqual(self.successResultOf(waiting),
                         {"error": "non existent requested match", "code": 5})
        self.later(program, {"type": "Matchmake"})
        self.assertIn("cole", queue.queued)


class EndpointTests(EngineTestCase):
    """The processor endpoint with the match engine (fake runs, the real match service)."""

    def setUp(self) -> None:
        super().setUp()
        self.runs = FakeRuns()
        root = web.Tree()
        web.mount(root, "/ws/processor", processor_resource(
            self.runs, wire.EndpointLimits(max_message_size=wire.MiB, messages_per_second=None),
            self.server.context, matches=self.server.match_seats))
        self.site = web.make_site(root, self.clock)

    def processor(self, user: str) -> WebSocketClient:
        ws = WebSocketClient(self.site, "/ws/processor/",
                             {"Authorization": f"Token {self.token(user)}"})
        self.assertEqual(self.messages(ws)[0]["message"], "send context")
        return ws

    def messages(self, ws: WebSocketClient) -> list[Any]:
        return [wire.decode(p) for op, p in ws.frames() if op == TEXT]

    def test_bad_contexts(self) -> None:
        """A bad seat in the context gets SERVER_ERROR and the context is awaited again."""
        ws = self.processor("cole")
        for context, error in [
            ({"match": "x1", "role": "host"}, 'context: "match" must be a match id (with "role")'),
            ({"match": True, "role": "host"}, 'context: "match" must be a match id (with "role")'),
            ({"match": 1}, 'context: "role" must be "host" or "challenger" (with "match")'),
            ({"match": 1, "role": "spectator"},
             'context: "role" must be "host" or "challenger" (with "match")'),
            ({"role": "host"}, 'context: "match" must be a match id (with "role")'),
        ]:
            ws.send_json({"type": "context", "language": "python", "engine": "match", **context})
            [message] = self.messages(ws)
            self.assertEqual((message["code"], message["message"]), ("SERVER_ERROR", error))

    def test_seat_refused_at_the_code(self) -> None:
        """
        The seat is taken when the code arrives: a refusal is SERVER_ERROR with the match's
        text and code, and the code is awaited again; a free seat starts the run.
        """
        ws = self.processor("cole")
        ws.send_json({"type": "context", "language": "python", "engine": "match",
                      "match": 999, "role": "challenger"})
        self.messages(ws)
        ws.send_text("print(1)")
        [message] = self.messages(ws)
        self.assertEqual(message["message"], "match: non existent requested match (code 5)")
        self.assertEqual(self.runs.runs, [])

    def test_run_plays_and_ends_with_the_match(self) -> None:
        """
        A run seated as challenger: its engine calls reach the match (no command relayed to
        the client, output not held for calls), and the run is stopped once the match is
        over and the grace has passed.
        """
        self.short_games()
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        ws = self.processor("cole")
        ws.send_json({"type": "context", "language": "python", "engine": "match",
                      "match": match_id, "role": "challenger"})
        ws.send_text("print(1)")
        run = self.runs.run
        self.assertFalse(run.output_before_calls)
        run.started.callback(None)
        self.assertEqual(plain(run.engine({"command": "ready"})), OK)
        host.send_json({"command": "start_match"})
        seen: list[Any] = []
        while not seen or seen[-1].get("message_type") != "end":
            self.tick()
            seen += non_status(read(host).messages)
        self.assertEqual(run.stops, 0)
        self.clock.advance(self.server.match_seats.over_grace)
        self.assertEqual(run.stops, 1)
        self.assertEqual([m["type"] for m in self.messages(ws)], ["ready", "started"])

    def test_anonymous_refused(self) -> None:
        """With anonymous runs allowed, the match engine still needs a user."""
        root = web.Tree()
        web.mount(root, "/ws/processor", processor_resource(
            self.runs, wire.EndpointLimits(max_message_size=wire.MiB, messages_per_second=None),
            self.server.context, anonymous=True, matches=self.server.match_seats))
        ws = WebSocketClient(web.make_site(root, self.clock), "/ws/processor/", {})
        self.messages(ws)
        ws.send_json({"type": "context", "language": "python", "engine": "match"})
        [message] = self.messages(ws)
        self.assertEqual(message["message"], "the match engine needs an authenticated user")


class DocsTests(SynchronousTestCase):
    def test_processor_docs_show_the_example_bot(self) -> None:
        """docs/processor.md shows examples/pong_bot.py as it is (without its docstring)."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "examples", "pong_bot.py")) as f:
            example = f.read()
        with open(os.path.join(root, "docs", "processor.md")) as f:
            docs = f.read()
        body = example[example.index('"""\n\n', 3) + 5:]
        self.assertIn("```python\n" + body + "```\n", docs)
