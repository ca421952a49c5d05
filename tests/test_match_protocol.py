"""
The match WebSocket protocol and its service, in memory on a Clock: handshake
checks in DESIGN order, lobby, commands and their errors, a full game, reconnects,
replacement, deletion, shutdown and malformed input.
"""

from __future__ import annotations

from typing import Any

from types import SimpleNamespace

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from gameproto.match import frames
from gameproto.match.frames import Role
from gameproto.match.lobby import JoinRefused
from gameproto.match.protocol import MatchCore, MatchMachine
from gameproto.server import ServerConfig
from gameproto.store import CompletedMatch, MatchOutcome, Rating
from gameproto.store.memory import MemoryStore
from gameproto.testing import BINARY
from tests.matchsupport import MatchTestCase, non_status, read

INVALID = {"error": "invalid command", "code": 2}
NO_COMMAND = {"error": "no command sent", "code": 2}
NOT_READY = {"error": "challenger not ready", "code": 3}
ENDED = {"error": "match ended, stop sending commands", "code": 4}
INIT = {"message_type": "init", "ball_radius": 0.02, "paddle_height": 0.13, "paddle_width": 0.02}


class HandshakeTests(MatchTestCase):
    """Each refused handshake: one error frame, then a close with the DESIGN code."""

    def assertRefused(self, ws: Any, frame: dict[str, Any], close: int) -> None:
        got = read(ws)
        self.assertEqual(got.messages, [frame])
        self.assertEqual([code for code, _ in got.closes], [close])

    def test_unauthenticated_first(self) -> None:
        """No token → code 6 and 4001, even with a bad query and an unknown match."""
        ws = self.connect(999, query="?x=1", user=None)
        self.assertRefused(
            ws, {"error": "unauthenticated user, please send auth token", "code": 6}, 4001
        )

    def test_bad_query_key(self) -> None:
        """A query that is not exactly role=... → code 7 (bad key) and 4000, before code 5."""
        bad_key = {"error": "bad key in query string. expected: role", "code": 7}
        for query in ["", "?", "?rol=host", "?role=host&x=1", "?role=host&role=host", "?x"]:
            ws = self.connect(999, query=query)
            self.assertRefused(ws, bad_key, 4000)

    def test_bad_query_value(self) -> None:
        """A role outside [spectator, host, challenger] → code 7 (bad value) and 4000."""
        bad_value = {
            "error": "bad value in query string. expected: [spectator, host, challenger]",
            "code": 7,
        }
        for role in ["king", "", "HOST"]:
            self.assertRefused(self.connect(999, role=role), bad_value, 4000)

    def test_no_such_match(self) -> None:
        """An unknown or non-numeric match id → code 5 and 4004, before the host check."""
        frame = {"error": "non existent requested match", "code": 5}
        self.create_match("hana")
        for match_id in ["999", "abc", "1/2", "-1"]:
            self.assertRefused(self.connect(match_id, role="host", user="other"), frame, 4004)

    def test_host_of_another_match(self) -> None:
        """role=host on a match someone else created → code 8 and close 1000."""
        match_id = self.create_match("hana")
        self.assertRefused(
            self.connect(match_id, "host", "mallory"),
            {"error": "trying to join a match as host which you did not start", "code": 8},
            1000,
        )

    def test_already_elsewhere_or_full(self) -> None:
        """Another match, another role or a taken challenger slot → code 9 and close 1000."""
        frame = {
            "error": "trying to join a match while already in another match or the match is full",
            "code": 9,
        }
        first = self.create_match("hana")
        second = self.create_match("ivan")
        # The host of one match cannot join another as challenger or spectator...
        self.assertRefused(self.connect(second, "challenger", "hana"), frame, 1000)
        self.assertRefused(self.connect(second, "spectator", "hana"), frame, 1000)
        # ...nor their own match in another role.
        self.assertRefused(self.connect(first, "challenger", "hana"), frame, 1000)
        # The challenger slot is taken on connect.
        self.joined(first, "challenger", "cole")
        self.assertRefused(self.connect(first, "challenger", "dana"), frame, 1000)
        # A spectator of one match cannot join another.
        self.joined(second, "spectator", "sam")
        self.assertRefused(self.connect(first, "spectator", "sam"), frame, 1000)

    def test_spectator_limit(self) -> None:
        """Past the spectator limit a new spectator gets code 9."""
        self.service.max_spectators = 2
        match_id = self.create_match("hana")
        self.joined(match_id, "spectator", "s1")
        self.joined(match_id, "spectator", "s2")
        ws = self.connect(match_id, "spectator", "s3")
        self.assertEqual(read(ws).messages[0]["code"], 9)

    def test_success_then_lobby(self) -> None:
        """A host is admitted with the success frame then one lobby frame; no slash needed."""
        match_id = self.create_match("hana")
        ws = self.connect(match_id, "host", "hana", slash=False)
        got = read(ws)
        self.assertEqual(got.messages, [{"status": "success", "code": 0}, self.lobby()])
        self.assertEqual(got.closes, [])


class LobbyTests(MatchTestCase):
    def test_lobby_frames_on_every_change(self) -> None:
        """Challenger join, ready, spectator join and leave each send a lobby frame to all."""
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        challenger = self.connect(match_id, "challenger", "cole")
        self.assertEqual(
            read(challenger).messages,
            [{"status": "success", "code": 0}, self.lobby("cole")],
        )
        self.assertEqual(read(host).messages, [self.lobby("cole")])
        challenger.send_json({"command": "ready"})
        self.assertEqual(read(host).messages, [self.lobby("cole", ready=True)])
        self.assertEqual(read(challenger).messages, [self.lobby("cole", ready=True)])
        spectator = self.connect(match_id, "spectator", "sam")
        self.assertEqual(
            read(spectator).messages,
            [{"status": "success", "code": 0}, self.lobby("cole", True, 1)],
        )
        self.assertEqual(read(host).messages, [self.lobby("cole", True, 1)])
        spectator.transport.loseConnection()
        self.assertEqual(read(host).messages, [self.lobby("cole", True, 0)])

    def test_challenger_leaving_frees_slot(self) -> None:
        """A challenger who leaves before the start frees the slot and resets ready."""
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        challenger = self.joined(match_id, "challenger", "cole")
        challenger.send_json({"command": "ready"})
        read(host)
        challenger.transport.loseConnection()
        self.assertEqual(read(host).messages, [self.lobby(None, False)])
        self.assertEqual(self.where("cole"), (None, None))
        self.joined(match_id, "challenger", "dana")
        self.assertEqual(read(host).messages, [self.lobby("dana", False)])

    def test_challenger_commands_after_ready(self) -> None:
        """After ready every challenger command gets invalid command until the start."""
        match_id = self.create_match("hana")
        self.joined(match_id, "host", "hana")
        challenger = self.joined(match_id, "challenger", "cole")
        challenger.send_json({"command": "ready"})
        read(challenger)
        for command in ["ready", "up", "start_match", "nonsense"]:
            challenger.send_json({"command": command})
        self.assertEqual(read(challenger).messages, [INVALID] * 4)

    def test_start_without_ready_challenger(self) -> None:
        """start_match with no challenger, or one not ready, gets code 3; no game starts."""
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        host.send_json({"command": "start_match"})
        self.assertEqual(read(host).messages, [NOT_READY])
        self.joined(match_id, "challenger", "cole")
        read(host)
        host.send_json({"command": "start_match"})
        self.assertEqual(read(host).messages, [NOT_READY])
        self.tick(5)
        self.assertEqual(read(host).messages, [])
        match = self.call("GET", f"/api/ongoing_matches/{match_id}/", "hana").json()
        self.assertFalse(match["is_started"])

    def test_host_paddle_commands_before_start(self) -> None:
        """Before the start the host's paddle commands and ready are invalid commands."""
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        for command in ["up", "fdown", "ready"]:
            host.send_json({"command": command})
        self.assertEqual(read(host).messages, [INVALID] * 3)

    def test_replaced_ready_challenger_must_ready_again(self) -> None:
        """A ready challenger replaced before the start is not ready on the new socket."""
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        old = self.joined(match_id, "challenger", "cole")
        old.send_json({"command": "ready"})
        read(host)
        new = self.connect(match_id, "challenger", "cole")
        self.assertEqual(
            read(new).messages, [{"status": "success", "code": 0}, self.lobby("cole", False)]
        )
        self.assertEqual([code for code, _ in read(old).closes], [4009])
        host.send_json({"command": "start_match"})
        self.assertEqual(read(host).messages, [self.lobby("cole", False), NOT_READY])
        new.send_json({"command": "ready"})
        host.send_json({"command": "start_match"})
        self.assertEqual(read(host).messages, [self.lobby("cole", True), INIT])

    def test_no_command_sent(self) -> None:
        """An object without command gets code 2 "no command sent", in every role but spectator."""
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        challenger = self.joined(match_id, "challenger", "cole")
        read(host)
        host.send_json({"comand": "start_match"})
        challenger.send_json({})
        self.assertEqual(read(host).messages, [NO_COMMAND])
        self.assertEqual(read(challenger).messages, [NO_COMMAND])

    def test_start_sends_init_no_ack(self) -> None:
        """start_match with a ready challenger: init to everyone, then status every tick."""
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        challenger = self.joined(match_id, "challenger", "cole")
        spectator = self.joined(match_id, "spectator", "sam")
        challenger.send_json({"command": "ready"})
        for ws in (host, challenger, spectator):
            read(ws)
        host.send_json({"command": "start_match"})
        for ws in (host, challenger, spectator):
            self.assertEqual(read(ws).messages, [INIT])
        self.tick(3)
        for ws in (host, challenger, spectator):
            statuses = read(ws).messages
            self.assertEqual([m["message_type"] for m in statuses], ["status"] * 3)
        self.assertEqual(self.where("cole"), (match_id, "challenger"))


class CommandTests(MatchTestCase):
    def test_paddle_commands_move_paddles(self) -> None:
        """up/down/fup/fdown from host and challenger move their own paddle."""
        match_id, host, challenger = self.started_match()
        host.send_json({"command": "fup"})
        challenger.send_json({"command": "down"})
        self.tick()
        status = read(host).messages[-1]
        self.assertEqual(status["left_paddle_y"], 0.498)
        self.assertEqual(status["right_paddle_y"], 0.501)
        host.send_json({"command": "fdown"})
        challenger.send_json({"command": "up"})
        self.tick()
        status = read(host).messages[-1]
        # Speeds accumulate: -0.2 + 0.2 = 0 and 0.1 - 0.1 = 0.
        self.assertEqual((status["left_paddle_y"], status["right_paddle_y"]), (0.498, 0.501))

    def test_commands_during_game_that_are_not_paddle_commands(self) -> None:
        """ready or start_match during the game get invalid command; nothing is acked."""
        match_id, host, challenger = self.started_match()
        host.send_json({"command": "start_match"})
        challenger.send_json({"command": "ready"})
        self.assertEqual(non_status(read(host).messages), [INVALID])
        self.assertEqual(non_status(read(challenger).messages), [INVALID])

    def test_spectator_commands_ignored(self) -> None:
        """A spectator gets no reply to anything it sends, and moves nothing."""
        match_id, host, challenger = self.started_match()
        spectator = self.joined(match_id, "spectator", "sam")
        read(spectator), read(host)
        for message in [{"command": "up"}, {"command": "start_match"}, {}, {"command": 5}]:
            spectator.send_json(message)
        spectator.send(b"{nope")
        spectator.send(b"\x00", opcode=BINARY)
        self.tick()
        self.assertEqual([m["message_type"] for m in read(spectator).messages], ["status"])
        self.assertEqual(read(host).messages[-1]["left_paddle_y"], 0.5)

    def test_malformed_input(self) -> None:
        """Binary, invalid JSON, a list, {"command": 5}: invalid command; the socket lives."""
        match_id, host, challenger = self.started_match()
        challenger.send(b"\x01\x02", opcode=BINARY)
        challenger.send(b"{nope")
        challenger.send(b"[1, 2]")
        challenger.send_json({"command": 5})
        challenger.send_json({"command": None})
        challenger.send_json({"command": "UP"})
        got = read(challenger)
        self.assertEqual(got.messages, [INVALID] * 6)
        self.assertEqual(got.closes, [])
        challenger.send_json({"command": "down"})
        self.tick()
        self.assertEqual(read(host).messages[-1]["right_paddle_y"], 0.501)

    def test_oversized_frame_closes_only_that_socket(self) -> None:
        """A 100 KiB frame closes that socket with 1009; the match goes on for everyone else."""
        match_id, host, challenger = self.started_match()
        spectator = self.joined(match_id, "spectator", "sam")
        read(spectator)
        spectator.send(b'{"command": "' + b"u" * (100 * 1024) + b'"}')
        self.assertEqual([code for code, _ in read(spectator).closes], [1009])
        self.clock.advance(2)  # Autobahn's close handshake times out; the socket is gone
        read(host), read(challenger)
        challenger.send(b'{"command": "' + b"u" * (100 * 1024) + b'"}')
        self.assertEqual([code for code, _ in read(challenger).closes], [1009])
        self.clock.advance(2)
        read(host)
        self.tick(2)
        self.assertEqual([m["message_type"] for m in read(host).messages], ["status"] * 2)
        self.assertEqual(self.where("cole"), (match_id, "challenger"))


class GameTests(MatchTestCase):
    def test_full_game_to_the_end(self) -> None:
        """
        A host steering into the top wall loses 0-5: every socket gets end with the
        Elo before and after, then a close 1000; the completed match and ratings are
        stored and the roles freed.
        """
        match_id, host, challenger = self.started_match()
        spectator = self.joined(match_id, "spectator", "sam")
        read(spectator)
        ends: list[Any] = []
        closes: list[Any] = []
        for _ in range(5000):
            host.send_json({"command": "fup"})
            self.tick()
            for ws in (host, challenger, spectator):
                got = read(ws)
                ends += [m for m in got.messages if m.get("message_type") == "end"]
                closes += got.closes
            if ends:
                break
        self.assertEqual(len(ends), 3)
        end = ends[0]
        self.assertEqual(ends, [end] * 3)
        self.assertEqual(
            {k: v for k, v in end.items() if "timestamp" not in k},
            {
                "message_type": "end",
                "id": match_id,
                "winner": "cole",
                "loser": "hana",
                "winner_score": 5,
                "loser_score": 0,
                "winner_elo_before_match": 1000,
                "loser_elo_before_match": 1000,
                "winner_elo_after_match": 1016,
                "loser_elo_after_match": 984,
            },
        )
        self.assertEqual([code for code, _ in closes], [1000] * 3)
        self.assertEqual(self.call("GET", "/api/users/cole/", "sam").json()["elo"], 1016)
        self.assertEqual(self.call("GET", "/api/users/hana/", "sam").json()["elo"], 984)
        stored = self.call("GET", f"/api/completed_matches/{match_id}/", "sam").json()
        self.assertEqual(stored, {k: v for k, v in end.items() if k != "message_type"})
        self.assertEqual(self.call("GET", f"/api/ongoing_matches/{match_id}/", "sam").status, 404)
        for name in ("hana", "cole", "sam"):
            self.assertEqual(self.where(name), (None, None))

    def test_spectator_joining_mid_game_gets_init(self) -> None:
        """A late spectator gets success, lobby and init, then the status frames."""
        match_id, host, challenger = self.started_match()
        self.tick(10)
        spectator = self.connect(match_id, "spectator", "sam")
        self.assertEqual(
            read(spectator).messages,
            [{"status": "success", "code": 0}, self.lobby("cole", True, 1), INIT],
        )
        self.assertEqual(non_status(read(host).messages), [self.lobby("cole", True, 1)])
        self.tick()
        self.assertEqual(read(spectator).messages[0]["message_type"], "status")

    def test_challenger_reconnects_mid_game(self) -> None:
        """
        A challenger who drops mid-game keeps the slot, its paddle idles, and on
        reconnecting gets success, lobby and init and steers again.
        """
        match_id, host, challenger = self.started_match()
        challenger.send_json({"command": "fdown"})
        self.tick()
        challenger.transport.loseConnection()
        self.tick(5)
        statuses = read(host).messages
        self.assertEqual(len(statuses), 6)
        self.assertEqual(statuses[-1]["right_paddle_y"], 0.502)  # idle since the drop
        self.assertEqual(self.where("cole"), (match_id, "challenger"))
        self.assertEqual(read(self.connect(match_id, "challenger", "dana")).messages[0]["code"], 9)
        again = self.connect(match_id, "challenger", "cole")
        self.assertEqual(
            read(again).messages,
            [{"status": "success", "code": 0}, self.lobby("cole", True), INIT],
        )
        again.send_json({"command": "fdown"})
        self.tick()
        self.assertEqual(read(again).messages[-1]["right_paddle_y"], 0.504)

    def test_newer_connection_replaces_older(self) -> None:
        """The same user in the same role is admitted; the older socket closes with 4009."""
        match_id, host, challenger = self.started_match()
        newer = self.connect(match_id, "challenger", "cole")
        self.assertEqual(read(newer).messages[0], {"status": "success", "code": 0})
        got = read(challenger)
        self.assertEqual([code for code, _ in got.closes], [4009])
        self.clock.advance(2)  # the old socket is dropped: the slot stays with the new one
        newer.send_json({"command": "fdown"})
        self.tick()
        self.assertEqual(read(newer).messages[-1]["right_paddle_y"], 0.502)
        self.assertEqual(read(challenger).messages, [])


class SlowStore(MemoryStore):
    """A memory store whose writes of a completed match wait for L{release}: a slow disk."""

    def __init__(self) -> None:
        super().__init__()
        self.released: Deferred[None] = Deferred()

    def complete_match(self, outcome: MatchOutcome, rate: Rating) -> Deferred[CompletedMatch]:
        store = super()
        return self.released.addCallback(lambda _: store.complete_match(outcome, rate))

    def release(self) -> None:
        self.released.callback(None)


class ResultBeingStoredTests(MatchTestCase):
    """The end of a match on a store slow to record its result."""

    store: SlowStore

    def make_store(self) -> SlowStore:
        return SlowStore()

    def test_commands_after_the_end(self) -> None:
        """While the result is being stored, player messages get code 4."""
        match_id, host, challenger = self.started_match()
        for _ in range(5000):
            host.send_json({"command": "fup"})
            self.tick()
            if self.service.matches[match_id].ended:
                break
        read(host), read(challenger)
        host.send_json({"command": "up"})
        challenger.send_json({})
        self.assertEqual(read(host).messages, [ENDED])
        self.assertEqual(read(challenger).messages, [ENDED])
        self.store.release()
        self.assertEqual(read(host).messages[0]["message_type"], "end")


class RemovalTests(MatchTestCase):
    def test_rest_delete_closes_every_socket(self) -> None:
        """DELETE by the host sends code 4 to every socket and closes them with 1000."""
        match_id = self.create_match("hana")
        sockets = [
            self.joined(match_id, "host", "hana"),
            self.joined(match_id, "challenger", "cole"),
            self.joined(match_id, "spectator", "sam"),
        ]
        for ws in sockets:
            read(ws)
        self.assertEqual(self.call("DELETE", f"/api/ongoing_matches/{match_id}/", "hana").status, 204)
        for ws in sockets:
            got = read(ws)
            self.assertEqual(got.messages, [ENDED])
            self.assertEqual([code for code, _ in got.closes], [1000])
        self.assertEqual(self.where("cole"), (None, None))
        self.assertEqual(read(self.connect(match_id, "host", "hana")).messages[0]["code"], 5)

    def test_lobby_timeout(self) -> None:
        """An unstarted match with no host socket for 10 minutes is deleted."""
        match_id = self.create_match("hana")
        self.clock.advance(599)
        host = self.joined(match_id, "host", "hana")
        self.clock.advance(3600)  # the host is connected: kept
        host.transport.loseConnection()
        self.clock.advance(599)
        self.assertEqual(self.call("GET", f"/api/ongoing_matches/{match_id}/", "hana").status, 200)
        self.clock.advance(1.5)
        self.assertEqual(self.call("GET", f"/api/ongoing_matches/{match_id}/", "hana").status, 404)
        self.assertEqual(self.where("hana"), (None, None))

    def test_shutdown(self) -> None:
        """At shutdown every socket gets code 4 "server shutting down", then 4012."""
        match_id, host, challenger = self.started_match()
        spectator = self.joined(match_id, "spectator", "sam")
        read(host), read(challenger)
        self.server.connections.close_all()
        for ws in (host, challenger, spectator):
            got = read(ws)
            self.assertEqual(got.messages, [{"error": "server shutting down", "code": 4}])
            self.assertEqual([code for code, _ in got.closes], [4012])
        self.successResultOf(self.service.stopService())
        self.assertIsNone(self.successResultOf(self.store.get_ongoing_match(match_id)))


class StartUpTests(MatchTestCase):
    def test_started_matches_dropped_unstarted_kept(self) -> None:
        """At start-up started matches are dropped; unstarted ones keep only their host."""
        import attrs

        from gameproto.match.service import MatchService

        now = self.service.now()
        started = self.successResultOf(self.store.create_ongoing_match("hana", now))
        self.successResultOf(self.store.update_ongoing_match(
            attrs.evolve(started, challenger="cole", start_timestamp=now)))
        waiting = self.successResultOf(self.store.create_ongoing_match("ivan", now))
        self.successResultOf(self.store.update_ongoing_match(
            attrs.evolve(waiting, challenger="dana", challenger_ready=True, spectators=("sam",))))
        service = MatchService(self.store, self.clock)
        self.successResultOf(service.startService())
        self.addCleanup(service.stopService)
        self.assertIsNone(self.successResultOf(self.store.get_ongoing_match(started.id)))
        self.assertEqual(
            self.successResultOf(self.store.get_ongoing_match(waiting.id)), waiting.__class__(
                id=waiting.id, host="ivan", creation_timestamp=now))
        self.assertEqual(self.successResultOf(service.whereabouts("ivan")), (waiting.id, "host"))
        self.assertEqual(self.successResultOf(service.whereabouts("dana")), (None, None))
        self.clock.advance(601)
        self.assertIsNone(self.successResultOf(self.store.get_ongoing_match(waiting.id)))


class Recorder:
    """The socket side of a machine: what it sends and how it closes."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def sendObject(self, message: Any) -> bool:
        self.sent.append(message)
        return True

    def sendPrepared(self, prepared: Any) -> None:
        self.sent.append(prepared)

    def closeWith(self, code: Any, reason: str) -> None:
        self.sent.append(int(code))


class JoiningService:
    """The service side of a machine: joins answered when the test says."""

    def __init__(self, sent: list[Any]) -> None:
        self.sent = sent
        self.joins: list[Deferred[Any]] = []

    def join(self, match_id: str, username: str, role: Role, socket: Any) -> Deferred[Any]:
        self.joins.append(Deferred())
        return self.joins[-1]

    def welcome(self, seat: Any) -> None:
        self.sent.append("welcome")

    def leave(self, seat: Any) -> None:
        self.sent.append("leave")


def seat(role: Role, started: bool = False) -> Any:
    """What the machine reads of a seat: its role, and whether its match has started."""
    record = SimpleNamespace(is_started=started)
    return SimpleNamespace(role=role, match=SimpleNamespace(record=record))


class MachineTests(SynchronousTestCase):
    """The connection's state machine alone, with no socket and no match service."""

    def machine(self) -> tuple[Any, Recorder, JoiningService]:
        connection = Recorder()
        service = JoiningService(connection.sent)
        return MatchMachine(MatchCore(connection, service)), connection, service  # type: ignore[arg-type]

    def test_spectator_ignores_commands(self) -> None:
        """A spectator ignores commands; a closed connection ignores everything."""
        machine, connection, service = self.machine()
        machine.join("1", "sam", Role.SPECTATOR)
        service.joins[0].callback(seat(Role.SPECTATOR))
        machine.startMatch()
        machine.invalidCommand()
        machine.matchOver()
        machine.farewell("bye")
        machine.ready()
        machine.lost()
        self.assertEqual(connection.sent, [{"status": "success", "code": 0}, "welcome", "bye",
                                           1000])

    def test_commands_while_joining_wait_for_the_seat(self) -> None:
        """What a client sends while it joins is handled, in order, once it is seated."""
        machine, connection, service = self.machine()
        machine.join("1", "hana", Role.HOST)
        machine.noCommand()
        machine.ready()
        self.assertEqual(connection.sent, [])
        service.joins[0].callback(seat(Role.HOST))
        self.assertEqual(connection.sent, [{"status": "success", "code": 0}, "welcome",
                                           NO_COMMAND, INVALID])

    def test_refused_while_joining(self) -> None:
        """A refused join sends the refusal, closes, and drops what was held."""
        machine, connection, service = self.machine()
        machine.join("1", "cole", Role.CHALLENGER)
        machine.ready()
        service.joins[0].errback(JoinRefused(frames.ALREADY_ELSEWHERE))
        self.assertEqual(connection.sent, [frames.ALREADY_ELSEWHERE.frame(), 1000])

    def test_lost_while_joining_gives_the_seat_back(self) -> None:
        """A connection lost while joining gives back the seat its join then gets."""
        machine, connection, service = self.machine()
        machine.join("1", "cole", Role.CHALLENGER)
        machine.lost()
        service.joins[0].callback(seat(Role.CHALLENGER))
        self.assertEqual(connection.sent, ["leave"])


class RateLimitTests(MatchTestCase):
    config = ServerConfig(store="memory:", port=None, messages_per_second=10, message_burst=5)

    def test_players_told_spectators_not(self) -> None:
        """Past the burst a player gets one rate-limit error; a spectator gets nothing."""
        match_id, host, challenger = self.started_match()
        spectator = self.joined(match_id, "spectator", "sam")
        read(spectator), read(challenger)
        for _ in range(8):
            challenger.send_json({"command": "up"})
            spectator.send_json({"command": "up"})
        self.assertEqual(
            read(challenger).messages, [{"error": "rate limit exceeded, message dropped", "code": 2}]
        )
        self.assertEqual(read(spectator).messages, [])
