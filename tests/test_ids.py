"""
Ids are ASCII of bounded length everywhere a client writes one: a match id in a REST
path or a WebSocket path, an arena id in a REST path, a WebSocket path or a processor
context, and the numbers of C{?limit=}/C{?offset=}.  Anything else is "not found" in the
protocol's own words, never a traceback, and never another object.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gameproto import wire
from gameproto.processor.protocol import BadContext, parse_context
from gameproto.testing import CLOSE, TEXT, request
from tests.arenasupport import ArenaServerTestCase
from tests.matchsupport import MatchTestCase, read

# What str.isdigit() or int() accept and an id must not be: superscript two (isdigit()
# accepts it, int() raises), Arabic-Indic one and fullwidth one (int() reads both as 1).
SUPERSCRIPT_TWO = "%C2%B2"
ARABIC_INDIC_ONE = "%D9%A1"
FULLWIDTH_ONE = "%EF%BC%91"
# Python refuses to convert strings of more than 4300 digits to int.
TOO_MANY_DIGITS = "1" * 4301


class ParserTests(SynchronousTestCase):
    def test_numeric_ids(self) -> None:
        """1 to 18 ASCII digits are an id; nothing else is."""
        self.assertEqual(wire.parse_id("0"), 0)
        self.assertEqual(wire.parse_id("42"), 42)
        self.assertEqual(wire.parse_id("9" * 18), 999_999_999_999_999_999)
        for raw in ["", "²", "١", "１", "1²", "9" * 19, TOO_MANY_DIGITS, "-1", "+1", " 1",
                    "1 ", "1\n", "1_000", "0x1", "1.0", None, 1, ["1"]]:
            self.assertIsNone(wire.parse_id(raw), repr(raw)[:40])

    def test_named_ids(self) -> None:
        """1 to 32 characters of a-z, 0-9 and -; nothing else, not even a trailing newline."""
        self.assertEqual(wire.parse_name_id("default"), "default")
        self.assertEqual(wire.parse_name_id("pit-1"), "pit-1")
        self.assertEqual(wire.parse_name_id("a" * 32), "a" * 32)
        for raw in ["", "a" * 33, "Pit", "pit\n", "pit 1", "p/t", "١", "ｐｉｔ", "²", None, 7]:
            self.assertIsNone(wire.parse_name_id(raw), repr(raw))


class MatchRESTIdTests(MatchTestCase):
    def assertNotFound(self, method: str, path: str) -> None:
        response = self.call(method, path, "hana")
        self.assertEqual(response.status, 404, (method, path, response.body))
        self.assertEqual(response.headers["content-type"], "application/json")
        self.assertEqual(response.json(), {"error": "no such match"})

    def test_ongoing_match_ids(self) -> None:
        """
        GET and DELETE /api/ongoing_matches/{id}/ with ², ١, １ or an over-long id answer
        404 JSON, although match 1 exists; nothing is logged as a failure.
        """
        self.assertEqual(self.create_match("hana"), 1)
        for raw in [SUPERSCRIPT_TWO, ARABIC_INDIC_ONE, FULLWIDTH_ONE, "1" * 19, TOO_MANY_DIGITS]:
            self.assertNotFound("GET", f"/api/ongoing_matches/{raw}/")
            self.assertNotFound("DELETE", f"/api/ongoing_matches/{raw}/")
        self.assertEqual(self.call("GET", "/api/ongoing_matches/1/", "hana").status, 200)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_completed_match_ids(self) -> None:
        """GET /api/completed_matches/{id}/ with a non-ASCII or over-long id answers 404 JSON."""
        for raw in [SUPERSCRIPT_TWO, ARABIC_INDIC_ONE, FULLWIDTH_ONE, TOO_MANY_DIGITS]:
            self.assertNotFound("GET", f"/api/completed_matches/{raw}/")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_page_numbers(self) -> None:
        """?limit= and ?offset= take ASCII digits only: anything else is a 400 naming them."""
        self.create_match("hana")
        for name in ("limit", "offset"):
            for raw in [SUPERSCRIPT_TWO, ARABIC_INDIC_ONE, FULLWIDTH_ONE, TOO_MANY_DIGITS]:
                response = self.call("GET", f"/api/ongoing_matches/?{name}={raw}", "hana")
                self.assertEqual(response.status, 400, (name, raw, response.body))
                self.assertEqual(response.json()["field"], name)
        self.assertEqual(self.flushLoggedErrors(), [])


class MatchSocketIdTests(MatchTestCase):
    def test_match_socket_ids(self) -> None:
        """
        /ws/game/{id}/ with ², ١, １ or 4301 digits is refused with code 5 and close 4004
        (not 4011 "internal error"), although match 1 exists.
        """
        self.assertEqual(self.create_match("hana"), 1)
        frame = {"error": "non existent requested match", "code": 5}
        for raw in [SUPERSCRIPT_TWO, ARABIC_INDIC_ONE, FULLWIDTH_ONE, TOO_MANY_DIGITS]:
            for role in ("spectator", "host"):
                got = read(self.connect(raw, role=role, user="sam"))
                self.assertEqual(got.messages, [frame], (raw[:20], role))
                self.assertEqual([code for code, _ in got.closes], [4004], (raw[:20], role))
        self.assertEqual(self.flushLoggedErrors(), [])


class ArenaIdTests(ArenaServerTestCase):
    def test_arena_rest_ids(self) -> None:
        """GET and DELETE /api/arenas/{id}/ with an id that is not one answer 404 JSON."""
        headers = {"Authorization": f"Token {self.tokens['ann']}"}
        for raw in ["D%C3%A9fault", "DEFAULT", "default%0A", "a" * 33, FULLWIDTH_ONE]:
            for method in ("GET", "DELETE"):
                response = request(self.server.site, method, f"/api/arenas/{raw}/", None, headers)
                self.assertEqual(response.status, 404, (method, raw, response.body))
                self.assertEqual(response.json(), {"error": "no such arena"})

    def test_arena_socket_ids(self) -> None:
        """/ws/arena/{id}/player with an id that is not one: "no such arena" and close 4004."""
        for raw in ["DEFAULT", "default%0A", "%EF%BD%84efault", "a" * 33]:
            ws = self.player(raw)
            frames = ws.frames()
            self.assertEqual([wire.decode(p) for op, p in frames if op == TEXT],
                             [{"type": "InvalidCommandError", "data": {"reason": "no such arena"}}])
            self.assertEqual(([op for op, _ in frames].count(CLOSE), ws.close_code), (1, 4004))


class ProcessorContextIdTests(SynchronousTestCase):
    def context(self, arena: Any) -> dict[str, Any]:
        return {"type": "context", "language": "python", "engine": "arena", "arena": arena}

    def test_arena_id_in_context(self) -> None:
        """
        A context naming an arena by something that is not an arena id is refused at once
        with "no such arena: ...", whatever arenas exist.
        """
        self.assertEqual(parse_context(self.context("pit-1")).arena, "pit-1")
        for raw in ["DEFAULT", "default\n", "ｄefault", "a" * 33, "../default"]:
            with self.assertRaises(BadContext) as raised:
                parse_context(self.context(raw))
            self.assertTrue(raised.exception.reason.startswith("no such arena: "), raw)
