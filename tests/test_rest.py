"""The account REST API and the REST contract of DESIGN.md §2, over an in-memory Site."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gameproto.testing import request
from gameproto.throttle import RequestLimits
from tests.restsupport import RESTTestCase, make_server


class SignUpTests(RESTTestCase):
    def test_sign_up(self) -> None:
        """POST /api/users/sign_up/ answers 201 with the user, timestamps in ISO-8601 Z."""
        response = self.sign_up()
        self.assertEqual(response.status, 201)
        self.assertEqual(
            response.json(),
            {
                "username": "ann",
                "date_joined": "2027-01-15T08:00:00.250000Z",
                "elo": 1000,
                "ongoing_match": None,
                "role": None,
            },
        )

    def test_both_slash_forms(self) -> None:
        """Routes answer with and without the trailing slash, never with a redirect."""
        self.assertEqual(self.call("POST", "/api/users/sign_up",
                                   {"username": "a", "password": "password1"}).status, 201)
        self.assertEqual(self.call("GET", "/healthz/").status, 200)
        self.assertEqual(self.call("GET", "/healthz").status, 200)

    def test_bad_bodies(self) -> None:
        """Bad JSON, a non-object, and missing or mistyped fields are 400 JSON errors."""
        self.assertError(self.call("POST", "/api/users/sign_up/", b"{nope"), 400)
        self.assertError(self.call("POST", "/api/users/sign_up/", b"[1, 2]"), 400)
        self.assertError(self.call("POST", "/api/users/sign_up/", b""), 400)
        self.assertError(self.call("POST", "/api/users/sign_up/", {"password": "password1"}),
                         400, "username")
        self.assertError(self.call("POST", "/api/users/sign_up/", {"username": "ann"}),
                         400, "password")
        self.assertError(self.call("POST", "/api/users/sign_up/",
                                   {"username": ["ann"], "password": "password1"}), 400, "username")

    def test_short_password_and_bad_name(self) -> None:
        """A short password and a name outside [A-Za-z0-9_.-]{1,30} are refused by field."""
        self.assertError(self.sign_up("ann", "short"), 400, "password")
        self.assertError(self.sign_up("no spaces", "password1"), 400, "username")

    def test_username_needs_a_letter_or_digit(self) -> None:
        """
        Names made only of ".", "_" and "-" are refused on the username field; one letter
        or digit among them is enough.
        """
        self.server = make_server(request_limits=RequestLimits(sign_ups_per_address=None))
        for name in [".", "..", "-", "_", "...", "-_.", "__"]:
            self.assertError(self.sign_up(name), 400, "username")
        for name in ["a.", "_1", "-x-", "..9"]:
            self.assertEqual(self.sign_up(name).status, 201, name)

    def test_form_bodies_are_json_errors(self) -> None:
        """
        A multipart or form body, well-formed or not, is read as JSON like any other: a 400
        JSON error, not a bare 400 from the HTTP layer.
        """
        cases = [
            ("multipart/form-data; boundary=x", b"x"),
            ("multipart/form-data; boundary=x",
             b'--x\r\nContent-Disposition: form-data; name="username"\r\n\r\nann\r\n--x--\r\n'),
            ("multipart/form-data", b"--\r\n"),
            ("application/x-www-form-urlencoded", b"username=ann&password=password1"),
        ]
        for content_type, body in cases:
            response = self.call("POST", "/api/users/sign_up/", body,
                                 headers={"Content-Type": content_type})
            self.assertError(response, 400)
            self.assertEqual(response.json()["error"], "the request body is not valid JSON")

    def test_duplicate_username(self) -> None:
        """A taken username, in any case, is 400 on the username field."""
        self.sign_up("ann")
        self.assertError(self.sign_up("ANN"), 400, "username")

    def test_oversized_body(self) -> None:
        """A body over 64 KiB is refused with 413."""
        self.assertError(self.call("POST", "/api/users/sign_up/", b" " * (65 * 1024)), 413)


class TokenTests(RESTTestCase):
    def test_token_authenticates(self) -> None:
        """POST /api/token/ mints a 40-hex token that opens the API."""
        self.sign_up()
        token = self.token()
        self.assertRegex(token, r"\A[0-9a-f]{40}\Z")
        self.assertEqual(self.call("GET", "/api/users/ann/", token=token).status, 200)

    def test_wrong_credentials(self) -> None:
        """A wrong password or unknown user is a 400 JSON error; missing fields name the field."""
        self.sign_up()
        self.assertError(self.call("POST", "/api/token/",
                                   {"username": "ann", "password": "password2"}), 400)
        self.assertError(self.call("POST", "/api/token/",
                                   {"username": "zed", "password": "password1"}), 400)
        self.assertError(self.call("POST", "/api/token/", {"username": "ann"}), 400, "password")

    def test_revoke(self) -> None:
        """DELETE /api/token/ answers 204 and revokes only the token presented."""
        self.sign_up()
        kept, revoked = self.token(), self.token()
        response = self.call("DELETE", "/api/token/", token=revoked)
        self.assertEqual(response.status, 204)
        self.assertEqual(response.body, b"")
        self.assertError(self.call("GET", "/api/users/", token=revoked), 401)
        self.assertEqual(self.call("GET", "/api/users/", token=kept).status, 200)

    def test_missing_and_malformed_tokens(self) -> None:
        """No, malformed or unknown tokens are 401 with WWW-Authenticate: Token."""
        self.sign_up()
        for headers in [{}, {"Authorization": "Token x"}, {"Authorization": "Basic YTpi"},
                        {"Authorization": "Token " + "0" * 40}]:
            response = self.call("GET", "/api/users/", headers=headers)
            self.assertError(response, 401)
            self.assertEqual(response.headers["www-authenticate"], "Token")

    def test_cookie_not_accepted_by_rest(self) -> None:
        """
        REST ignores the gameproto_token cookie on a request that does not show it comes
        from a page of the server's own origin (tests/test_session.py has the rest).
        """
        self.sign_up()
        token = self.token()
        response = self.call("GET", "/api/users/", headers={"Cookie": f"gameproto_token={token}"})
        self.assertError(response, 401)


class UserListTests(RESTTestCase):
    def setUp(self) -> None:
        super().setUp()
        for name in ["carol", "alice", "bob"]:
            self.sign_up(name)
        self.key = self.token("alice")

    def names(self, query: str) -> list[str]:
        response = self.call("GET", "/api/users/" + query, token=self.key)
        self.assertEqual(response.status, 200, response.body)
        body = response.json()
        self.assertIsInstance(body, list)
        return [user["username"] for user in body]

    def test_orderings(self) -> None:
        """?ordering= sorts by username or elo, either way."""
        self.assertEqual(self.names("?ordering=username"), ["alice", "bob", "carol"])
        self.assertEqual(self.names("?ordering=-username"), ["carol", "bob", "alice"])
        self.assertEqual(self.names("?ordering=elo"), ["alice", "bob", "carol"])

    def test_bad_ordering(self) -> None:
        """An unknown ordering is a 400 on the ordering field."""
        self.assertError(self.call("GET", "/api/users/?ordering=password", token=self.key),
                         400, "ordering")

    def test_pages(self) -> None:
        """?limit= and ?offset= page the list; out-of-range values are 400."""
        self.assertEqual(self.names("?ordering=username&limit=1&offset=1"), ["bob"])
        for query, field in [("?limit=0", "limit"), ("?limit=1001", "limit"),
                             ("?limit=x", "limit"), ("?offset=-1", "offset")]:
            self.assertError(self.call("GET", "/api/users/" + query, token=self.key), 400, field)

    def test_get_user(self) -> None:
        """GET /api/users/{name}/ finds a user in any case; an unknown one is 404 JSON."""
        response = self.call("GET", "/api/users/CAROL/", token=self.key)
        self.assertEqual(response.json()["username"], "carol")
        self.assertError(self.call("GET", "/api/users/nobody/", token=self.key), 404)


class RoutingTests(RESTTestCase):
    def test_unknown_paths(self) -> None:
        """Unknown paths inside and outside /api are JSON 404s."""
        self.assertError(self.call("GET", "/api/nothing/"), 404)
        self.assertError(self.call("GET", "/nothing"), 404)

    def test_wrong_method(self) -> None:
        """A known path with another method is a JSON 405 naming the allowed ones."""
        response = self.call("PUT", "/api/token/")
        self.assertError(response, 405)
        self.assertEqual(response.headers["allow"], "POST, DELETE")

    def test_health(self) -> None:
        """/healthz reports status, version and store without a token."""
        response = self.call("GET", "/healthz")
        self.assertEqual(response.headers["server"], "gameproto")
        body = response.json()
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["store"], "memory")
        self.assertRegex(body["version"], r"^\d+\.\d+")
        # This server's services are not started: its processor says so.
        self.assertEqual(body["details"], {"processor": {"state": "starting"}})

    def test_store_outage_is_503(self) -> None:
        """A store failure answers 503 JSON, not a traceback."""
        from twisted.internet.defer import fail

        from gameproto.store import StoreError

        self.server.store.get_user = lambda name: fail(StoreError("down"))
        self.assertError(self.sign_up("newbie"), 503)
        self.flushLoggedErrors()

    def test_bug_is_500_without_traceback(self) -> None:
        """An unexpected exception answers 500 JSON without internals and is logged."""

        def broken(name: str) -> Any:
            raise RuntimeError("secret internals")

        self.server.store.get_user = broken
        response = self.sign_up("newbie")
        self.assertError(response, 500)
        self.assertNotIn(b"secret", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class EmbeddingTests(SynchronousTestCase):
    def test_routes_work_below_a_prefix(self) -> None:
        """gameproto's tree mounted at /game in another Site serves /game/api/... routes."""
        from gameproto import web

        server = make_server(port=None)
        app_root = web.Tree()
        web.mount(app_root, "/game", server.root)
        site = web.make_site(app_root, server.reactor)
        response = request(site, "POST", "/game/api/users/sign_up/",
                           {"username": "ann", "password": "password1"})
        self.assertEqual(response.status, 201, response.body)
        self.assertEqual(request(site, "GET", "/game/healthz").json()["status"], "ok")

    def test_percent_encoded_path(self) -> None:
        """A percent-encoded username is decoded once: %2541 stays the literal '%41'."""
        server = make_server()
        request(server.site, "POST", "/api/users/sign_up/",
                {"username": "ann", "password": "password1"})
        token = request(server.site, "POST", "/api/token/",
                        {"username": "ann", "password": "password1"}).json()["token"]
        headers = {"Authorization": f"Token {token}"}
        self.assertEqual(request(server.site, "GET", "/api/users/%61nn/", headers=headers)
                         .json()["username"], "ann")
        self.assertEqual(request(server.site, "GET", "/api/users/%2561nn/", headers=headers)
                         .status, 404)
