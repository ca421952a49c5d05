"""
Matchmaking on one node (gameproto.matchmaking): the REST routes, the service on a
Clock with its matcher's rounds, the seat timeout, the Python API and the WebSocket,
over a whole server in memory.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from twisted.internet.defer import CancelledError

from gameproto.matchmaking.rules import Ticket
from gameproto.matchmaking.service import InAMatch
from gameproto.auth import token_digest
from gameproto.store import TokenRecord, User
from gameproto.testing import WebSocketClient
from tests.matchsupport import START, MatchTestCase, _ports, read

SINCE = "2027-01-15T08:00:00.000000Z"  # START


class MatchmakingTestCase(MatchTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.mm = self.server.matchmaking

    def user(self, name: str, elo: int) -> str:
        """A user rated C{elo}; their token."""
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        self.successResultOf(self.store.create_user(User(name, "x", now, elo)))
        key = self._tokens[name] = f"{len(self._tokens) + 1:040x}"
        self.successResultOf(self.store.add_token(TokenRecord(token_digest(key), name, now)))
        return key

    def queue(self, name: str) -> dict[str, Any]:
        response = self.call("POST", "/api/matchmaking/", name)
        self.assertEqual(response.status, 201, response.body)
        return response.json()

    def ticket(self, name: str) -> dict[str, Any] | None:
        response = self.call("GET", "/api/matchmaking/", name)
        if response.status == 404:
            return None
        self.assertEqual(response.status, 200, response.body)
        return response.json()

    def advance(self, seconds: float) -> None:
        """Time passes one matcher round (1 s) at a time."""
        whole = int(seconds)
        for _ in range(whole):
            self.clock.advance(1)
        if seconds > whole:
            self.clock.advance(seconds - whole)

    def matched_pair(self, host: str = "hana", challenger: str = "cole") -> int:
        """Two users queued one second apart (host first) and matched; the match id."""
        self.user(host, 1000)
        self.user(challenger, 1040)
        self.queue(host)
        self.clock.advance(0.5)
        self.queue(challenger)
        self.advance(1)
        ticket = self.ticket(host)
        assert ticket is not None
        self.assertEqual((ticket["state"], ticket["role"]), ("matched", "host"))
        return ticket["match_id"]

    def listener(self, name: str) -> WebSocketClient:
        headers = {"Authorization": f"Token {self.token(name)}"}
        ws = WebSocketClient(self.server.site, "/ws/matchmaking/", headers, port=next(_ports))
        self.assertTrue(ws.accepted)
        return ws


class RESTTests(MatchmakingTestCase):
    def test_queue_show_leave(self) -> None:
        """POST queues (201, the ticket), GET shows it, DELETE leaves (204), then 404s."""
        self.user("hana", 1000)
        self.assertEqual(self.queue("hana"), {"state": "waiting", "since": SINCE,
                                              "match_id": None, "role": None})
        self.assertEqual(self.ticket("hana"), {"state": "waiting", "since": SINCE,
                                               "match_id": None, "role": None})
        self.assertEqual(self.call("DELETE", "/api/matchmaking", "hana").status, 204)
        self.assertIsNone(self.ticket("hana"))
        self.assertEqual(self.call("DELETE", "/api/matchmaking/", "hana").status, 404)

    def test_second_post_is_a_conflict(self) -> None:
        """A second POST answers 409 with the ticket held, unchanged."""
        self.user("hana", 1000)
        first = self.queue("hana")
        self.clock.advance(5)
        response = self.call("POST", "/api/matchmaking/", "hana", {})
        self.assertEqual(response.status, 409)
        self.assertEqual(response.json()["ticket"], first)
        self.assertIsInstance(response.json()["error"], str)

    def test_in_a_match(self) -> None:
        """A user holding a role in a match cannot queue: 400."""
        self.create_match("hana")
        response = self.call("POST", "/api/matchmaking/", "hana")
        self.assertEqual(response.status, 400)
        self.assertIsInstance(response.json()["error"], str)
        self.assertIsNone(self.ticket("hana"))

    def test_needs_a_token(self) -> None:
        """Every method answers 401 without a token."""
        for method in ("POST", "GET", "DELETE"):
            response = self.call(method, "/api/matchmaking/")
            self.assertEqual(response.status, 401, method)
            self.assertEqual(response.headers["www-authenticate"], "Token")

    def test_bad_body(self) -> None:
        """A body that is not a JSON object is a 400, and queues nobody."""
        self.user("hana", 1000)
        response = self.call("POST", "/api/matchmaking/", "hana", "[1]")
        self.assertEqual(response.status, 400)
        self.assertIsNone(self.ticket("hana"))


class PairingTests(MatchmakingTestCase):
    def test_pair_becomes_a_match(self) -> None:
        """
        Two users within the window are matched at the next round: one ordinary match
        hosted by the one who queued first, both tickets naming it with their roles.
        """
        match_id = self.matched_pair("hana", "cole")
        self.assertEqual(self.ticket("cole"), {"state": "matched", "since":
                                               "2027-01-15T08:00:00.500000Z",
                                               "match_id": match_id, "role": "challenger"})
        match = self.call("GET", f"/api/ongoing_matches/{match_id}/", "hana").json()
        self.assertEqual((match["host"], match["challenger"], match["is_started"]),
                         ("hana", None, False))
        self.assertEqual(self.where("hana"), (match_id, "host"))

    def test_window_widens_with_waiting(self) -> None:
        """200 apart: not paired at first; paired once the older has waited 20 s (window 200)."""
        self.user("hana", 1000)
        self.user("cole", 1200)
        self.queue("hana")
        self.queue("cole")
        self.advance(19)
        self.assertEqual(self.ticket("hana")["state"], "waiting")  # type: ignore[index]
        self.advance(1)
        self.assertEqual(self.ticket("hana")["state"], "matched")  # type: ignore[index]

    def test_closest_rating_first_oldest_served_first(self) -> None:
        """Of three, the oldest gets the closest rating; the third keeps waiting."""
        for name, elo in [("ann", 1000), ("bob", 1090), ("cat", 1020)]:
            self.user(name, elo)
            self.queue(name)
            self.clock.advance(0.1)
        self.advance(1)
        ann, bob, cat = (self.ticket(n) for n in ("ann", "bob", "cat"))
        assert ann is not None and bob is not None and cat is not None
        self.assertEqual((ann["role"], cat["role"], ann["match_id"]),
                         ("host", "challenger", cat["match_id"]))
        self.assertEqual(bob["state"], "waiting")

    def test_seated_pair_is_done(self) -> None:
        """Once both connected to their match, their tickets are done (404) and they play."""
        match_id = self.matched_pair()
        self.joined(match_id, "host", "hana")
        self.assertEqual(self.ticket("hana")["state"], "matched")  # type: ignore[index]
        self.joined(match_id, "challenger", "cole")
        self.assertIsNone(self.ticket("hana"))
        self.assertIsNone(self.ticket("cole"))
        self.advance(31)  # past the deadline: nothing left to miss
        self.assertEqual(self.where("cole"), (match_id, "challenger"))

    def refused_as_challenger(self, match_id: int, user: str) -> None:
        """C{user} connects as the challenger and is told the match is full (code 9)."""
        got = read(self.connect(match_id, "challenger", user))
        self.assertEqual(got.messages, [{"error": "trying to join a match while already in "
                                         "another match or the match is full", "code": 9}])
        self.assertEqual([code for code, _ in got.closes], [1000])

    def test_the_challengers_seat_is_held_for_the_matched_user(self) -> None:
        """
        A third user cannot take the challenger's seat of a match made for a pair,
        before or after the host connects; the matched challenger can.  Once both are
        seated and the challenger leaves before the start, the match is an ordinary
        one: the seat is anyone's.
        """
        match_id = self.matched_pair("hana", "cole")
        self.user("zed", 1000)
        self.refused_as_challenger(match_id, "zed")
        self.joined(match_id, "host", "hana")
        self.refused_as_challenger(match_id, "zed")
        self.assertEqual(self.where("zed"), (None, None))
        cole = self.joined(match_id, "challenger", "cole")
        self.assertEqual(self.where("cole"), (match_id, "challenger"))
        cole.send_close()
        self.assertEqual(self.where("cole"), (None, None))
        self.joined(match_id, "challenger", "zed")
        self.assertEqual(self.where("zed"), (match_id, "challenger"))

    def test_the_seat_is_held_while_the_pair_is_being_made(self) -> None:
        """Held by a matcher that has not committed yet: still only the partner gets in."""
        self.held_by_a_dead_matcher()
        match_id = self.create_match("hana")
        self.user("zed", 1000)
        self.refused_as_challenger(match_id, "zed")
        self.joined(match_id, "challenger", "cole")

    def test_a_hosts_own_match_is_open_to_anyone(self) -> None:
        """A queued (waiting) host's own match is not held for anybody."""
        self.user("hana", 1000)
        self.user("zed", 1000)
        self.queue("hana")
        match_id = self.create_match("hana")
        self.joined(match_id, "challenger", "zed")

    def test_no_show_loses_the_ticket(self) -> None:
        """
        The challenger does not connect within 30 s: their ticket is gone, the match
        deleted (the host's socket gets code 4 and a close 1000), and the host is
        back in the queue, at the front: the next user pairs with them first.
        """
        match_id = self.matched_pair()
        host = self.joined(match_id, "host", "hana")
        read(host)
        self.advance(29)
        self.assertEqual(self.ticket("cole")["state"], "matched")  # type: ignore[index]
        self.advance(1)
        self.assertIsNone(self.ticket("cole"))
        self.assertEqual(self.ticket("hana"), {"state": "waiting", "since": SINCE,
                                               "match_id": None, "role": None})
        got = read(host)
        self.assertEqual(got.messages, [{"error": "match ended, stop sending commands",
                                         "code": 4}])
        self.assertEqual([code for code, _ in got.closes], [1000])
        self.assertEqual(self.call("GET", f"/api/ongoing_matches/{match_id}/", "hana").status,
                         404)
        # dan queues before eve and is as close to eve; hana, at the front, goes first.
        self.user("eve", 1010)
        self.user("dan", 1010)
        self.queue("dan")
        self.queue("eve")
        self.advance(1)
        hana, dan = self.ticket("hana"), self.ticket("dan")
        assert hana is not None and dan is not None
        self.assertEqual((hana["role"], dan["role"], hana["match_id"]),
                         ("host", "challenger", dan["match_id"]))

    def test_leaving_a_matched_pair_requeues_the_other(self) -> None:
        """The challenger leaves once matched: the match is deleted, the host requeued."""
        match_id = self.matched_pair()
        self.assertEqual(self.call("DELETE", "/api/matchmaking/", "cole").status, 204)
        self.assertEqual(self.ticket("hana")["state"], "waiting")  # type: ignore[index]
        self.assertEqual(self.call("GET", f"/api/ongoing_matches/{match_id}/", "hana").status,
                         404)
        self.assertEqual(self.where("hana"), (None, None))

    def test_a_user_in_a_match_loses_the_ticket(self) -> None:
        """A queued user who joins a match meanwhile is removed when paired; the other waits."""
        self.user("hana", 1000)
        self.user("cole", 1000)
        self.queue("hana")
        self.queue("cole")
        match_id = self.create_match("zed")
        self.joined(match_id, "spectator", "cole")
        self.advance(1)
        self.assertIsNone(self.ticket("cole"))
        self.assertEqual(self.ticket("hana")["state"], "waiting")  # type: ignore[index]

    def held_by_a_dead_matcher(self) -> None:
        """hana and cole held as a pair by a matcher that died before committing it."""
        self.user("hana", 1000)
        self.user("cole", 1000)
        self.queue("hana")
        self.clock.advance(0.5)
        self.successResultOf(self.mm.queue.join(
            Ticket("cole", 1000, self.clock.seconds())))
        self.assertTrue(self.successResultOf(self.mm.queue.claim("hana", "cole", "dead")))

    def test_dead_matcher_pair_with_its_match(self) -> None:
        """A held pair whose match the dead matcher created is committed to that match."""
        self.held_by_a_dead_matcher()
        match_id = self.create_match("hana")
        self.advance(1)
        self.assertEqual(self.ticket("hana")["match_id"], match_id)  # type: ignore[index]
        self.assertEqual(self.ticket("cole")["role"], "challenger")  # type: ignore[index]
        self.assertEqual(len(self.call("GET", "/api/ongoing_matches/", "hana").json()), 1)

    def test_dead_matcher_pair_without_a_match(self) -> None:
        """A held pair with no match yet is released, then paired again into one match."""
        self.held_by_a_dead_matcher()
        self.advance(2)
        hana, cole = self.ticket("hana"), self.ticket("cole")
        assert hana is not None and cole is not None
        self.assertEqual((hana["state"], hana["role"], cole["role"], hana["match_id"]),
                         ("matched", "host", "challenger", cole["match_id"]))
        self.assertEqual(len(self.call("GET", "/api/ongoing_matches/", "hana").json()), 1)


class PythonAPITests(MatchmakingTestCase):
    def test_matched(self) -> None:
        """matched() queues the user and fires with (match_id, role) once matched."""
        self.user("hana", 1000)
        self.user("cole", 1000)
        d = self.mm.matched("hana")
        self.assertNoResult(d)
        self.assertEqual(self.ticket("hana")["state"], "waiting")  # type: ignore[index]
        self.clock.advance(0.5)
        other = self.mm.matched("cole")
        self.advance(1)
        match_id, role = self.successResultOf(d)
        self.assertEqual(role, "host")
        self.assertEqual(self.successResultOf(other), (match_id, "challenger"))

    def test_matched_already(self) -> None:
        """A user matched already gets their match at once."""
        match_id = self.matched_pair()
        self.assertEqual(self.successResultOf(self.mm.matched("cole")), (match_id, "challenger"))

    def test_cancel_leaves_the_queue(self) -> None:
        """Cancelling the Deferred leaves the queue: nobody is matched with a gone user."""
        self.user("hana", 1000)
        self.user("cole", 1000)
        d = self.mm.matched("hana")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.clock.advance(0)
        self.assertIsNone(self.ticket("hana"))
        self.queue("cole")
        self.advance(2)
        self.assertEqual(self.ticket("cole")["state"], "waiting")  # type: ignore[index]

    def test_in_a_match(self) -> None:
        """A user holding a role in a match gets InAMatch."""
        self.create_match("hana")
        self.failureResultOf(self.mm.matched("hana"), InAMatch)


class WebSocketTests(MatchmakingTestCase):
    def test_matched_frame(self) -> None:
        """Both users' sockets hear {"type": "matched", "match_id", "role"}, once."""
        self.user("hana", 1000)
        self.user("cole", 1040)
        sockets = {name: self.listener(name) for name in ("hana", "cole")}
        self.queue("hana")
        self.clock.advance(0.5)
        self.queue("cole")
        self.advance(1)
        match_id = self.ticket("hana")["match_id"]  # type: ignore[index]
        self.assertEqual(read(sockets["hana"]).messages,
                         [{"type": "matched", "match_id": match_id, "role": "host"}])
        self.assertEqual(read(sockets["cole"]).messages,
                         [{"type": "matched", "match_id": match_id, "role": "challenger"}])

    def test_connecting_once_matched(self) -> None:
        """A socket opened after the match was made is told at once."""
        match_id = self.matched_pair()
        ws = self.listener("cole")
        self.clock.advance(0)
        self.assertEqual(read(ws).messages,
                         [{"type": "matched", "match_id": match_id, "role": "challenger"}])

    def test_no_show_frames(self) -> None:
        """The no-show hears "removed" with the reason; the host "requeued"."""
        match_id = self.matched_pair()
        host, challenger = self.listener("hana"), self.listener("cole")
        self.joined(match_id, "host", "hana")
        self.clock.advance(0)
        read(host), read(challenger)
        self.advance(30)
        self.assertEqual(read(host).messages, [{"type": "requeued"}])
        self.assertEqual(read(challenger).messages, [
            {"type": "removed", "reason": "you did not connect to the match in time"}])

    def test_unauthenticated(self) -> None:
        """Without a token: an error frame, then close 4001."""
        ws = WebSocketClient(self.server.site, "/ws/matchmaking/", {}, port=next(_ports))
        got = read(ws)
        self.assertEqual(got.messages, [{"type": "error", "message": "unauthenticated"}])
        self.assertEqual([code for code, _ in got.closes], [4001])

    def test_client_frames_get_an_error(self) -> None:
        """The socket only listens: anything sent gets an error frame, and it stays open."""
        self.user("hana", 1000)
        ws = self.listener("hana")
        ws.send_json({"type": "hello"})
        ws.send_text("not json")
        ws.send_binary(b"\x00")
        got = read(ws)
        self.assertEqual(got.messages, [{"type": "error", "message": "this socket only listens"}] * 3)
        self.assertEqual(got.closes, [])
