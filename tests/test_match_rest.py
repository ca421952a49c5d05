"""The match REST routes of DESIGN.md §4 "match", over an in-memory Site."""

from __future__ import annotations

from datetime import timedelta

from gameproto.match.elo import rate
from gameproto.store import MatchOutcome
from tests.matchsupport import MatchTestCase


class OngoingMatchTests(MatchTestCase):
    def test_create(self) -> None:
        """POST with no body → 201 with the full ongoing match; the caller is its host."""
        response = self.call("POST", "/api/ongoing_matches/", "hana")
        self.assertEqual(response.status, 201, response.body)
        self.assertEqual(
            response.json(),
            {
                "id": 1,
                "host": "hana",
                "challenger": None,
                "challenger_ready": False,
                "spectators": [],
                "is_full": False,
                "is_started": False,
                "creation_timestamp": "2027-01-15T08:00:00.000000Z",
                "start_timestamp": None,
            },
        )
        user = self.call("GET", "/api/users/hana/", "hana").json()
        self.assertEqual((user["ongoing_match"], user["role"]), (1, "host"))

    def test_create_with_empty_object_and_without_slash(self) -> None:
        """An empty JSON object works as well, and the route answers without the slash."""
        self.assertEqual(self.call("POST", "/api/ongoing_matches", "hana", {}).status, 201)

    def test_create_while_in_a_match(self) -> None:
        """A user who already holds a role (host, challenger, spectator) gets 400."""
        match_id = self.create_match("hana")
        self.assertEqual(self.call("POST", "/api/ongoing_matches/", "hana").status, 400)
        self.joined(match_id, "spectator", "sam")
        response = self.call("POST", "/api/ongoing_matches/", "sam")
        self.assertEqual(response.status, 400)
        self.assertIsInstance(response.json()["error"], str)

    def test_needs_a_token(self) -> None:
        """Every match route answers 401 without a token."""
        for method, path in [
            ("POST", "/api/ongoing_matches/"),
            ("GET", "/api/ongoing_matches/"),
            ("GET", "/api/ongoing_matches/1/"),
            ("DELETE", "/api/ongoing_matches/1/"),
            ("GET", "/api/completed_matches/"),
            ("GET", "/api/completed_matches/1/"),
        ]:
            response = self.call(method, path)
            self.assertEqual(response.status, 401, (method, path))
            self.assertEqual(response.headers["www-authenticate"], "Token")

    def test_list_with_filters(self) -> None:
        """is_full and is_started filter the list (true/false/1/0); a bad value is 400."""
        first = self.create_match("hana")
        second = self.create_match("ivan")
        self.joined(second, "challenger", "cole")

        def ids(query: str) -> list[int]:
            response = self.call("GET", f"/api/ongoing_matches/{query}", "sam")
            self.assertEqual(response.status, 200, response.body)
            return [m["id"] for m in response.json()]

        self.assertEqual(ids(""), [first, second])
        self.assertEqual(ids("?is_full=true"), [second])
        self.assertEqual(ids("?is_full=0"), [first])
        self.assertEqual(ids("?is_started=false&is_full=1"), [second])
        self.assertEqual(ids("?is_started=1"), [])
        self.assertEqual(ids("?limit=1&offset=1"), [second])
        self.assertEqual(self.call("GET", "/api/ongoing_matches/?is_full=maybe", "sam").status, 400)

    def test_get_one_shows_players(self) -> None:
        """GET one match shows its challenger, readiness, spectators and start."""
        match_id = self.create_match("hana")
        self.joined(match_id, "host", "hana")
        challenger = self.joined(match_id, "challenger", "cole")
        self.joined(match_id, "spectator", "sam")
        challenger.send_json({"command": "ready"})
        body = self.call("GET", f"/api/ongoing_matches/{match_id}/", "sam").json()
        self.assertEqual(
            (body["challenger"], body["challenger_ready"], body["spectators"], body["is_full"]),
            ("cole", True, ["sam"], True),
        )
        self.assertIsNone(body["start_timestamp"])
        for name, role in [("cole", "challenger"), ("sam", "spectator")]:
            user = self.call("GET", f"/api/users/{name}/", "hana").json()
            self.assertEqual((user["ongoing_match"], user["role"]), (match_id, role))

    def test_get_missing(self) -> None:
        """An unknown or malformed id is 404."""
        for path in ["/api/ongoing_matches/5/", "/api/ongoing_matches/x/",
                     "/api/ongoing_matches/99999999999999999999999/"]:
            self.assertEqual(self.call("GET", path, "hana").status, 404, path)

    def test_delete_rules(self) -> None:
        """Only the host deletes (403 otherwise), only before the start (409), then 404."""
        match_id, host, challenger = self.started_match()
        path = f"/api/ongoing_matches/{match_id}/"
        self.assertEqual(self.call("DELETE", path, "cole").status, 403)
        self.assertEqual(self.call("DELETE", path, "hana").status, 409)
        other = self.create_match("ivan")
        self.assertEqual(self.call("DELETE", f"/api/ongoing_matches/{other}/", "ivan").status, 204)
        self.assertEqual(self.call("DELETE", f"/api/ongoing_matches/{other}/", "ivan").status, 404)
        self.assertEqual(self.call("GET", "/api/users/ivan/", "ivan").json()["ongoing_match"], None)


class CompletedMatchTests(MatchTestCase):
    def complete(self, winner: str, loser: str, seconds: int) -> int:
        for name in (winner, loser):
            self.token(name)
        start = self.service.now()
        match = self.successResultOf(self.store.create_ongoing_match(winner, start))
        outcome = MatchOutcome(match.id, winner, loser, start, start + timedelta(seconds=seconds), 5, 1)
        return self.successResultOf(self.store.complete_match(outcome, rate)).id

    def test_get_one(self) -> None:
        """GET a completed match: the end frame's fields, timestamps in ISO-8601 Z."""
        match_id = self.complete("ann", "bob", 30)
        response = self.call("GET", f"/api/completed_matches/{match_id}/", "ann")
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.json(),
            {
                "id": match_id,
                "winner": "ann",
                "loser": "bob",
                "start_timestamp": "2027-01-15T08:00:00.000000Z",
                "completion_timestamp": "2027-01-15T08:00:30.000000Z",
                "winner_score": 5,
                "loser_score": 1,
                "winner_elo_before_match": 1000,
                "loser_elo_before_match": 1000,
                "winner_elo_after_match": 1016,
                "loser_elo_after_match": 984,
            },
        )
        self.assertEqual(self.call("GET", "/api/completed_matches/999/", "ann").status, 404)

    def test_list_filters(self) -> None:
        """user, winner and loser filter the list, newest first."""
        a = self.complete("ann", "bob", 1)
        b = self.complete("bob", "cat", 2)
        c = self.complete("cat", "ann", 3)

        def ids(query: str) -> list[int]:
            response = self.call("GET", f"/api/completed_matches/{query}", "ann")
            self.assertEqual(response.status, 200, response.body)
            return [m["id"] for m in response.json()]

        self.assertEqual(ids(""), [c, b, a])
        self.assertEqual(ids("?user=ann"), [c, a])
        self.assertEqual(ids("?winner=bob"), [b])
        self.assertEqual(ids("?loser=ann&user=cat"), [c])
        self.assertEqual(ids("?limit=2"), [c, b])
        self.assertEqual(self.call("GET", "/api/completed_matches/?limit=0", "ann").status, 400)
