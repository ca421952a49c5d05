"""The arena REST API: /api/arenas/ over an in-memory Site."""

from __future__ import annotations

from gameproto.arena.config import ArenaConfig
from tests.restsupport import RESTTestCase


class ArenaRESTTests(RESTTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.sign_up("ann")
        self.sign_up("bob")
        self.ann = self.token("ann")
        self.bob = self.token("bob")

    def test_create_with_id_and_config(self) -> None:
        """POST /api/arenas/ answers 201 with the full config echoed and the arena's state."""
        response = self.call("POST", "/api/arenas/",
                             {"id": "pit-1", "config": {"width": 500, "spawn_points": [[10, 10, 90]]}},
                             token=self.ann)
        self.assertEqual(response.status, 201, response.body)
        expected = ArenaConfig(width=500).asdict()
        expected["spawn_points"] = [[10, 10, 90]]
        self.assertEqual(response.json(), {
            "id": "pit-1", "owner": "ann", "config": expected, "players": [],
            "started": False, "controller_connected": False,
        })

    def test_create_empty_body(self) -> None:
        """An empty body creates an arena with a random 8-character id and default config."""
        response = self.call("POST", "/api/arenas", token=self.ann)
        self.assertEqual(response.status, 201, response.body)
        body = response.json()
        self.assertRegex(body["id"], r"\A[a-z0-9]{8}\Z")
        self.assertEqual(body["config"], ArenaConfig().asdict())

    def test_bad_requests(self) -> None:
        """Bad ids, unknown keys and bad values are 400 naming the field."""
        cases = [
            ({"id": "Upper"}, "id"),
            ({"id": "x" * 33}, "id"),
            ({"id": 7}, "id"),
            ({"config": {"widht": 500}}, "widht"),
            ({"config": {"width": 50}}, "width"),
            ({"config": []}, "config"),
            ({"name": "x"}, "name"),
        ]
        for body, field in cases:
            self.assertError(self.call("POST", "/api/arenas/", body, token=self.ann), 400, field)

    def test_duplicate_and_default(self) -> None:
        """A taken id is 409, default included."""
        self.assertEqual(self.call("POST", "/api/arenas/", {"id": "a"}, token=self.ann).status, 201)
        self.assertError(self.call("POST", "/api/arenas/", {"id": "a"}, token=self.bob), 409, "id")
        self.assertError(self.call("POST", "/api/arenas/", {"id": "default"}, token=self.ann),
                         409, "id")

    def test_token_required(self) -> None:
        """Every arena route needs a token (401 with WWW-Authenticate)."""
        for method, path in [("POST", "/api/arenas/"), ("GET", "/api/arenas/"),
                             ("GET", "/api/arenas/default/"), ("DELETE", "/api/arenas/default/")]:
            response = self.call(method, path)
            self.assertError(response, 401)
            self.assertEqual(response.headers["www-authenticate"], "Token")

    def test_list_and_get(self) -> None:
        """GET lists every arena (default first), paged; GET one, 404 for unknown ids."""
        self.call("POST", "/api/arenas/", {"id": "b"}, token=self.ann)
        listed = self.call("GET", "/api/arenas/", token=self.bob).json()
        self.assertEqual([a["id"] for a in listed], ["default", "b"])
        self.assertIsNone(listed[0]["owner"])
        paged = self.call("GET", "/api/arenas/?limit=1&offset=1", token=self.bob).json()
        self.assertEqual([a["id"] for a in paged], ["b"])
        one = self.call("GET", "/api/arenas/b/", token=self.bob)
        self.assertEqual((one.status, one.json()["owner"]), (200, "ann"))
        self.assertError(self.call("GET", "/api/arenas/none/", token=self.bob), 404)

    def test_delete(self) -> None:
        """DELETE: the owner only (403 otherwise), the default arena never, 404 unknown."""
        self.call("POST", "/api/arenas/", {"id": "c"}, token=self.ann)
        self.assertError(self.call("DELETE", "/api/arenas/c/", token=self.bob), 403)
        self.assertError(self.call("DELETE", "/api/arenas/default/", token=self.ann), 403)
        self.assertError(self.call("DELETE", "/api/arenas/zz/", token=self.ann), 404)
        self.assertEqual(self.call("DELETE", "/api/arenas/c/", token=self.ann).status, 204)
        self.assertError(self.call("GET", "/api/arenas/c/", token=self.ann), 404)

    def test_per_user_limit(self) -> None:
        """A user owns at most 10 arenas (403 beyond); others still may create."""
        for n in range(10):
            self.assertEqual(
                self.call("POST", "/api/arenas/", {"id": f"a{n}"}, token=self.ann).status, 201)
        self.assertError(self.call("POST", "/api/arenas/", {"id": "a10"}, token=self.ann), 403)
        self.assertEqual(self.call("POST", "/api/arenas/", {"id": "b0"}, token=self.bob).status,
                         201)

    def test_server_limit(self) -> None:
        """The server runs at most 200 arenas in all, the default included (503 beyond)."""
        self.assertEqual(self.server.arenas.max_arenas, 200)
        self.server.arenas.max_arenas = 3
        self.assertEqual(self.call("POST", "/api/arenas/", token=self.ann).status, 201)
        self.assertEqual(self.call("POST", "/api/arenas/", token=self.bob).status, 201)
        self.assertError(self.call("POST", "/api/arenas/", token=self.bob), 503)
