"""
An application's own REST routes on the server's router (docs/embedding.md, "Your own
REST routes"): plain functions, coroutines and Deferreds, returning a Response or a
JSON value; every failure is the JSON 500; routes that ask for the authenticated user.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from gameproto.rest import ApiError, JSONRouter, Response
from gameproto.store import StoreError
from gameproto.testing import HTTPResponse, connect, parse_response, request
from tests.restsupport import RESTTestCase

INTERNAL_ERROR = {"error": "internal error"}


class HandlerKindsTests(RESTTestCase):
    def get(self, path: str, token: str | None = None) -> HTTPResponse:
        return self.call("GET", path, token=token)

    def assertJSON(self, response: HTTPResponse | None, status: int, body: Any) -> None:
        assert response is not None, "no whole response"
        self.assertEqual(response.status, status, response.body)
        self.assertEqual(response.headers["content-type"], "application/json")
        self.assertEqual(response.json(), body)

    def test_plain_function_returning_a_json_value(self) -> None:
        """A plain function's dict, list or string is the 200 JSON body."""
        self.server.router.add("GET", "/api/dict", lambda request: {"mine": True})
        self.server.router.add("GET", "/api/list", lambda request: [1, "two"])
        self.server.router.add("GET", "/api/text", lambda request: "hello")
        self.assertJSON(self.get("/api/dict"), 200, {"mine": True})
        self.assertJSON(self.get("/api/list/"), 200, [1, "two"])
        self.assertJSON(self.get("/api/text"), 200, "hello")

    def test_plain_function_returning_a_response(self) -> None:
        """A Response's status, body and headers are sent as they are."""
        self.server.router.add(
            "POST", "/api/things",
            lambda request: Response(201, {"id": 7}, {"Location": "/api/things/7/"}))
        response = self.call("POST", "/api/things/")
        self.assertJSON(response, 201, {"id": 7})
        self.assertEqual(response.headers["location"], "/api/things/7/")

    def test_none_is_204(self) -> None:
        """A handler that returns nothing answers 204 with an empty body."""
        self.server.router.add("DELETE", "/api/things/{thing}", lambda request, thing: None)
        response = self.call("DELETE", "/api/things/7/")
        self.assertEqual((response.status, response.body), (204, b""))

    def test_coroutine_returning_a_json_value(self) -> None:
        """An async def handler's dict is the 200 JSON body; path parameters are keywords."""

        async def mine(request: Any, name: str) -> dict[str, str]:
            return {"hello": name}

        self.server.router.add("GET", "/api/hello/{name}", mine)
        self.assertJSON(self.get("/api/hello/ann/"), 200, {"hello": "ann"})

    def test_coroutine_returning_a_response(self) -> None:
        async def mine(request: Any) -> Response:
            return Response(202, {"queued": True})

        self.server.router.add("POST", "/api/jobs", mine)
        self.assertJSON(self.call("POST", "/api/jobs"), 202, {"queued": True})

    def test_deferred_answered_later(self) -> None:
        """
        A handler's Deferred is awaited: nothing is written before it fires, then its
        value (a JSON value here, a Response below) is the answer.
        """
        pending: list[Deferred[Any]] = []

        def later(request: Any) -> Deferred[Any]:
            pending.append(Deferred())
            return pending[-1]

        self.server.router.add("GET", "/api/later", later)
        protocol, transport = connect(self.server.site)
        protocol.dataReceived(b"GET /api/later HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual((len(pending), transport.value()), (1, b""))
        pending[0].callback({"late": True})
        self.assertJSON(parse_response(transport.value()), 200, {"late": True})

        self.server.router.add("GET", "/api/later-response",
                               lambda request: succeed(Response(200, ["ok"])))
        self.assertJSON(self.get("/api/later-response"), 200, ["ok"])

    def test_api_error_from_any_kind(self) -> None:
        """An ApiError raised by any kind of handler is that JSON error."""

        def plain(request: Any) -> Any:
            raise ApiError(409, "taken", field="name")

        async def coroutine(request: Any) -> Any:
            raise ApiError(418, "teapot")

        self.server.router.add("GET", "/api/plain", plain)
        self.server.router.add("GET", "/api/coroutine", coroutine)
        self.server.router.add("GET", "/api/deferred",
                               lambda request: fail(ApiError(404, "no such thing")))
        self.assertJSON(self.get("/api/plain"), 409, {"error": "taken", "field": "name"})
        self.assertJSON(self.get("/api/coroutine"), 418, {"error": "teapot"})
        self.assertJSON(self.get("/api/deferred"), 404, {"error": "no such thing"})

    def test_every_exception_is_the_json_500(self) -> None:
        """
        An exception from a plain function, a coroutine or a failed Deferred answers 500
        {"error": "internal error"} without the exception's text, and is logged once.
        """

        def plain(request: Any) -> Any:
            raise KeyError("secret internals")

        async def coroutine(request: Any) -> Any:
            raise ValueError("secret internals")

        self.server.router.add("GET", "/api/plain", plain)
        self.server.router.add("GET", "/api/coroutine", coroutine)
        self.server.router.add("GET", "/api/deferred",
                               lambda request: fail(RuntimeError("secret internals")))
        for path in ("/api/plain", "/api/coroutine", "/api/deferred"):
            response = self.get(path)
            self.assertJSON(response, 500, INTERNAL_ERROR)
            self.assertNotIn(b"secret", response.body)
        self.assertEqual(len(self.flushLoggedErrors(KeyError, ValueError, RuntimeError)), 3)

    def test_store_error_is_503(self) -> None:
        """A StoreError from a custom route is the same 503 as the built-in routes'."""
        self.server.router.add("GET", "/api/stored", lambda request: fail(StoreError("down")))
        self.assertJSON(self.get("/api/stored"), 503,
                        {"error": "service unavailable, try again shortly"})

    def test_a_response_that_cannot_be_sent_is_the_json_500(self) -> None:
        """
        A value JSON cannot carry (a set, bytes) or a Response with a status that is not
        a number is logged and answered with the JSON 500 (with the Server header).
        """
        self.server.router.add("GET", "/api/set", lambda request: {"ids": {1, 2}})
        self.server.router.add("GET", "/api/bytes", lambda request: Response(200, b"raw"))
        self.server.router.add("GET", "/api/status", lambda request: Response("ok", {}))  # type: ignore[arg-type]
        for path in ("/api/set", "/api/bytes", "/api/status"):
            response = self.get(path)
            self.assertJSON(response, 500, INTERNAL_ERROR)
            self.assertEqual(response.headers["server"], "gameproto")
        self.assertEqual(len(self.flushLoggedErrors()), 3)


class AuthenticatedRouteTests(RESTTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.calls: list[str] = []

        async def whoami(request: Any, user: Any, topic: str) -> dict[str, Any]:
            self.calls.append(user.username)
            return {"username": user.username, "elo": user.elo, "topic": topic}

        self.server.router.add("GET", "/api/whoami/{topic}", whoami, authenticated=True)

    def test_the_handler_gets_the_user(self) -> None:
        """With a valid token the handler is called with the token's user."""
        self.sign_up("ann")
        response = self.call("GET", "/api/whoami/games/", token=self.token("ann"))
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(response.json(), {"username": "ann", "elo": 1000, "topic": "games"})

    def test_no_or_bad_token_is_401(self) -> None:
        """
        Without a token, with an unknown one or a malformed header: the JSON 401 with
        WWW-Authenticate: Token, and the handler is never called.
        """
        for headers in ({}, {"Authorization": "Token " + "0" * 40},
                        {"Authorization": "Bearer x"}):
            response = self.call("GET", "/api/whoami/games/", headers=headers)
            self.assertError(response, 401)
            self.assertEqual(response.headers["www-authenticate"], "Token")
        self.assertEqual(self.calls, [])

    def test_a_router_without_accounts_refuses_authenticated_routes(self) -> None:
        """A bare JSONRouter cannot authenticate: asking it to is an error at add()."""
        router = JSONRouter()
        self.assertRaises(ValueError, router.add, "GET", "/api/x", lambda r, u: None,
                          authenticated=True)


class BareRouterTests(SynchronousTestCase):
    def test_router_with_its_own_authentication(self) -> None:
        """A JSONRouter used alone takes any authenticate callable (here a header check)."""
        from gameproto import web

        def authenticate(request: Any) -> str:
            if request.getHeader("x-key") != "k":
                raise ApiError(401, "who are you?")
            return "key-holder"

        router = JSONRouter(authenticate=authenticate)
        router.add("GET", "/api/me", lambda request, user: {"me": user}, authenticated=True)
        root = web.Tree()
        web.mount(root, "/api", router)
        site = web.make_site(root, None)
        self.assertEqual(request(site, "GET", "/api/me", headers={"X-Key": "k"}).json(),
                         {"me": "key-holder"})
        self.assertEqual(request(site, "GET", "/api/me").status, 401)
