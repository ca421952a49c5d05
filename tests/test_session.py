"""The web page's session: POST/GET/DELETE /api/session/ and REST by cookie, in memory."""

from __future__ import annotations

import re
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gameproto import web
from gameproto.testing import HTTPResponse, request
from tests.restsupport import make_server

OWN_ORIGIN = {"Origin": "http://localhost"}  # gameproto.testing sends Host: localhost


def cookie_attributes(response: HTTPResponse) -> dict[str, str | None]:
    """Set-Cookie as {attribute name (lower case): value or None}."""
    attributes: dict[str, str | None] = {}
    for part in response.headers["set-cookie"].split(";"):
        name, sep, value = part.strip().partition("=")
        attributes[name if name == "gameproto_token" else name.lower()] = value if sep else None
    return attributes


class SessionTestCase(SynchronousTestCase):
    config: dict[str, Any] = {}

    def setUp(self) -> None:
        self.server = make_server(**self.config)
        self.call("POST", "/api/users/sign_up/", {"username": "ann", "password": "password1"})

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> HTTPResponse:
        return request(self.server.site, method, path, body, headers)

    def log_in(self, headers: dict[str, str] | None = None) -> HTTPResponse:
        return self.call("POST", "/api/session/", {"username": "ann", "password": "password1"},
                         OWN_ORIGIN if headers is None else headers)

    def session_cookie(self) -> str:
        response = self.log_in()
        self.assertEqual(response.status, 200, response.body)
        key = cookie_attributes(response)["gameproto_token"]
        assert key is not None
        return f"gameproto_token={key}"

    def assertJSONError(self, response: HTTPResponse, status: int) -> None:
        self.assertEqual(response.status, status, response.body)
        self.assertEqual(response.headers["content-type"], "application/json")
        self.assertIsInstance(response.json()["error"], str)


class LogInTests(SessionTestCase):
    def test_cookie(self) -> None:
        """
        Logging in answers the user and sets the token as an HttpOnly, SameSite=Strict
        cookie for the whole server, valid 30 days; the token is not in the body.
        """
        response = self.log_in()
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(response.json(), {"user": {
            "username": "ann", "date_joined": "2027-01-15T08:00:00.250000Z", "elo": 1000,
            "ongoing_match": None, "role": None}})
        attributes = cookie_attributes(response)
        key = attributes.pop("gameproto_token")
        assert key is not None
        self.assertRegex(key, r"\A[0-9a-f]{40}\Z")
        self.assertNotIn(key.encode(), response.body)
        self.assertEqual(attributes, {"path": "/", "max-age": "2592000", "httponly": None,
                                      "samesite": "Strict"})

    def test_secure_over_https(self) -> None:
        """Behind a proxy that says the page came over HTTPS, the cookie is Secure."""
        response = self.log_in({**OWN_ORIGIN, "X-Forwarded-Proto": "https"})
        self.assertIn("secure", cookie_attributes(response))

    def test_without_origin(self) -> None:
        """A client that sends no Origin (not a browser) may log in."""
        self.assertEqual(self.log_in({}).status, 200)

    def test_wrong_credentials(self) -> None:
        """Wrong credentials: the API's 400, and no cookie."""
        response = self.call("POST", "/api/session/", {"username": "ann", "password": "nope1234"},
                             OWN_ORIGIN)
        self.assertJSONError(response, 400)
        self.assertEqual(response.json()["error"], "unable to log in with provided credentials")
        self.assertNotIn("set-cookie", response.headers)
        response = self.call("POST", "/api/session/", {"username": "ann"}, OWN_ORIGIN)
        self.assertJSONError(response, 400)
        self.assertEqual(response.json()["field"], "password")

    def test_other_origin_refused(self) -> None:
        """A page of another origin cannot log a visitor in: 403 and no cookie."""
        response = self.log_in({"Origin": "http://evil.example"})
        self.assertJSONError(response, 403)
        self.assertNotIn("set-cookie", response.headers)

    def test_cookie_path_below_a_prefix(self) -> None:
        """Mounted at /game, the cookie's path is /game/: it goes to nothing else."""
        server = make_server(port=None)
        app_root = web.Tree()
        web.mount(app_root, "/game", server.root)
        site = web.make_site(app_root, server.reactor)
        request(site, "POST", "/game/api/users/sign_up/",
                {"username": "ann", "password": "password1"})
        response = request(site, "POST", "/game/api/session/",
                           {"username": "ann", "password": "password1"}, OWN_ORIGIN)
        self.assertEqual(cookie_attributes(response)["path"], "/game/")


class TokenLifetimeTests(SessionTestCase):
    config = {"token_ttl": 3600.0}

    def test_max_age_is_the_token_ttl(self) -> None:
        """With --token-ttl the cookie lives as long as the token."""
        self.assertEqual(cookie_attributes(self.log_in())["max-age"], "3600")

    def test_expired_session(self) -> None:
        """An expired token: no user, and the cookie is cleared."""
        cookie = self.session_cookie()
        self.server.reactor.advance(3601)
        response = self.call("GET", "/api/session/",
                             headers={"Cookie": cookie, "Sec-Fetch-Site": "same-origin"})
        self.assertEqual(response.json(), {"user": None})
        self.assertEqual(cookie_attributes(response)["max-age"], "0")


class CurrentSessionTests(SessionTestCase):
    def test_signed_in(self) -> None:
        """GET /api/session/ names the cookie's user."""
        cookie = self.session_cookie()
        response = self.call("GET", "/api/session/",
                             headers={"Cookie": cookie, "Sec-Fetch-Site": "same-origin"})
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["user"]["username"], "ann")

    def test_visitor(self) -> None:
        """Without a cookie the answer is 200 with no user: not an error for the page."""
        response = self.call("GET", "/api/session/")
        self.assertEqual((response.status, response.json()), (200, {"user": None}))
        self.assertNotIn("set-cookie", response.headers)


class RESTByCookieTests(SessionTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.cookie = self.session_cookie()

    def users(self, **headers: str) -> HTTPResponse:
        return self.call("GET", "/api/users/", headers={"Cookie": self.cookie, **headers})

    def test_from_own_page(self) -> None:
        """
        The cookie authenticates a request that shows it comes from the server's own
        origin: its Origin, Sec-Fetch-Site (which browsers send on a same-origin GET
        instead), or the page's X-Requested-With header.
        """
        for headers in [OWN_ORIGIN, {"Sec-Fetch-Site": "same-origin"},
                        {"X-Requested-With": "gameproto"}]:
            response = self.users(**headers)
            self.assertEqual(response.status, 200, (headers, response.body))
            self.assertEqual([user["username"] for user in response.json()], ["ann"])

    def test_without_proof(self) -> None:
        """A cookie on a request that says nothing of its origin is ignored: 401."""
        for headers in [{}, {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site"}]:
            response = self.users(**headers)
            self.assertJSONError(response, 401)
            self.assertEqual(response.headers["www-authenticate"], "Token")

    def test_other_origins(self) -> None:
        """A cookie sent from a page of another origin (another host or port) is 403."""
        for origin in ["http://evil.example", "http://localhost:8001", "http://local.host",
                       "null"]:
            self.assertJSONError(self.users(Origin=origin), 403)

    def test_changes_need_own_origin(self) -> None:
        """A match is created by cookie from the own origin, and not from another."""
        refused = self.call("POST", "/api/ongoing_matches/",
                            headers={"Cookie": self.cookie, "Origin": "http://evil.example"})
        self.assertJSONError(refused, 403)
        self.assertEqual(self.users(**OWN_ORIGIN).json()[0]["ongoing_match"], None)
        created = self.call("POST", "/api/ongoing_matches/",
                            headers={"Cookie": self.cookie, **OWN_ORIGIN})
        self.assertEqual(created.status, 201, created.body)
        self.assertEqual(created.json()["host"], "ann")

    def test_header_first(self) -> None:
        """An Authorization header is used even when a cookie is present."""
        response = self.users(Authorization="Token " + "0" * 40, **OWN_ORIGIN)
        self.assertJSONError(response, 401)
        self.assertEqual(response.json()["error"], "invalid token")


class LogOutTests(SessionTestCase):
    def test_log_out_revokes_the_token(self) -> None:
        """DELETE revokes the cookie's token (for headers too) and clears the cookie."""
        cookie = self.session_cookie()
        key = cookie.partition("=")[2]
        response = self.call("DELETE", "/api/session/", headers={"Cookie": cookie, **OWN_ORIGIN})
        self.assertEqual(response.status, 204)
        self.assertEqual(response.body, b"")
        attributes = cookie_attributes(response)
        self.assertEqual((attributes["gameproto_token"], attributes["max-age"]), ("", "0"))
        self.assertEqual(
            self.call("GET", "/api/users/", headers={"Authorization": f"Token {key}"}).status, 401
        )
        self.assertEqual(self.call("GET", "/api/session/", headers={
            "Cookie": cookie, **OWN_ORIGIN}).json(), {"user": None})

    def test_log_out_from_another_origin(self) -> None:
        """Another origin cannot log a visitor out: 403, the token keeps working."""
        cookie = self.session_cookie()
        response = self.call("DELETE", "/api/session/",
                             headers={"Cookie": cookie, "Origin": "http://evil.example"})
        self.assertJSONError(response, 403)
        self.assertEqual(self.call("GET", "/api/users/", headers={
            "Cookie": cookie, **OWN_ORIGIN}).status, 200)

    def test_log_out_without_session(self) -> None:
        """Logging out without a session is harmless: 204."""
        self.assertEqual(self.call("DELETE", "/api/session/", headers=OWN_ORIGIN).status, 204)


class AllOriginsTests(SessionTestCase):
    config = {"allowed_origins": ("*",)}

    def test_no_sessions_when_every_origin_is_allowed(self) -> None:
        """With --allowed-origin '*' there is no session: 403 at log-in, cookies ignored."""
        response = self.log_in()
        self.assertJSONError(response, 403)
        self.assertNotIn("set-cookie", response.headers)
        key = self.call("POST", "/api/token/", {"username": "ann", "password": "password1"}
                        ).json()["token"]
        response = self.call("GET", "/api/users/",
                             headers={"Cookie": f"gameproto_token={key}", **OWN_ORIGIN})
        self.assertJSONError(response, 401)
        self.assertTrue(re.match(r"\A[0-9a-f]{40}\Z", key))
