"""
Rate limits of sign-ups, logins and creations over REST (429 with Retry-After and a JSON
body), the per-user caps on arenas, and their options.  The numbers are the documented
defaults of docs/api.md and docs/operations.md, written out.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gameproto import tap, wire
from gameproto.throttle import RequestLimits, address_key
from gameproto.wire import Rate
from gameproto.testing import HTTPResponse, request
from tests.nodes import Node, http_json, stop_on_cleanup
from tests.restsupport import make_server

ATTACKER = "203.0.113.5"
NEIGHBOUR = "198.51.100.7"
PASSWORD = "password1"


class RateTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """COUNT/PERIOD with s, m, h, d or bare seconds; written back in its shortest form."""
        cases = {
            "10/h": (10, 3600.0, "10/h"), "30/m": (30, 60.0, "30/m"),
            "20/10m": (20, 600.0, "20/10m"), "5/90s": (5, 90.0, "5/90s"),
            "100/3600": (100, 3600.0, "100/h"), " 7 / d ": (7, 86400.0, "7/d"),
        }
        for text, (count, period, written) in cases.items():
            rate = Rate.parse(text)
            self.assertEqual((rate.count, rate.period, str(rate)), (count, period, written), text)
        for text in ["", "10", "0/h", "10/0m", "-1/h", "x/h", "10/w", "10/h/2", "1e3/h"]:
            self.assertRaises(ValueError, Rate.parse, text)

    def test_table_per_key(self) -> None:
        """Each key has its bucket: COUNT at once, then one every PERIOD/COUNT seconds."""
        clock = Clock()
        table = wire.RateTable(Rate(3, 60), clock)
        self.assertEqual([table.take("a") for _ in range(4)], [True, True, True, False])
        self.assertEqual(table.wait("a"), 20.0)
        self.assertTrue(table.take("b"))
        clock.advance(19)
        self.assertFalse(table.take("a"))
        clock.advance(1)
        self.assertEqual(table.wait("a"), 0.0)
        self.assertTrue(table.take("a"))
        table.give_back("a")
        self.assertTrue(table.take("a"))
        self.assertFalse(table.take("a"))

    def test_table_forgets_idle_keys(self) -> None:
        """Keys whose bucket has refilled are dropped: made-up addresses cost no memory for long."""
        clock = Clock()
        table = wire.RateTable(Rate(1, 60), clock)
        for n in range(5000):
            self.assertTrue(table.take(f"key-{n}"))
        self.assertEqual(len(table), 5000)
        clock.advance(60)
        for n in range(5000):
            self.assertTrue(table.take(f"other-{n}"))
        # The first 5000 keys, refilled a period later, went when the table doubled.
        self.assertEqual(len(table), 5000)
        self.assertFalse(table.take("other-1"))
        self.assertTrue(table.take("key-1"))

    def test_address_keys(self) -> None:
        """IPv4 addresses count alone, IPv6 ones by /64, IPv4-mapped ones as IPv4."""
        self.assertEqual(address_key("203.0.113.5"), "203.0.113.5")
        self.assertEqual(address_key("2001:db8::1"), "2001:db8::/64")
        self.assertEqual(address_key("2001:db8::ffff:1"), "2001:db8::/64")
        self.assertEqual(address_key("2001:db8:0:1::1"), "2001:db8:0:1::/64")
        self.assertEqual(address_key("::ffff:203.0.113.5"), "203.0.113.5")


class ThrottledServerTestCase(SynchronousTestCase):
    """A server on a Clock with the default limits unless C{options} says otherwise."""

    options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.server = make_server(**self.options)
        self.clock: Clock = self.server.reactor

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             host: str = ATTACKER) -> HTTPResponse:
        headers = {} if token is None else {"Authorization": f"Token {token}"}
        return request(self.server.site, method, path, body, headers, address=host)

    def sign_up(self, username: str, host: str = ATTACKER) -> HTTPResponse:
        return self.call("POST", "/api/users/sign_up/",
                         {"username": username, "password": PASSWORD}, host=host)

    def log_in(self, username: str, password: str = PASSWORD,
               host: str = ATTACKER) -> HTTPResponse:
        return self.call("POST", "/api/token/", {"username": username, "password": password},
                         host=host)

    def user(self, username: str, host: str = NEIGHBOUR) -> str:
        """A new user's token (signed up and logged in from C{host})."""
        self.assertEqual(self.sign_up(username, host).status, 201)
        response = self.log_in(username, host=host)
        self.assertEqual(response.status, 200, response.body)
        return str(response.json()["token"])

    def assertTooMany(self, response: HTTPResponse, retry_after: int) -> None:
        self.assertEqual(response.status, 429, response.body)
        self.assertEqual(response.headers["content-type"], "application/json")
        self.assertEqual(response.headers["retry-after"], str(retry_after))
        self.assertEqual(response.json(), {
            "error": f"too many requests: try again in {retry_after} s",
            "retry_after": retry_after,
        })


class SignUpLimitTests(ThrottledServerTestCase):
    def test_ten_an_hour_per_address(self) -> None:
        """
        10 sign-ups from one address at once, then 429 with Retry-After 360 (one every
        6 minutes); another address is not affected.
        """
        for n in range(10):
            self.assertEqual(self.sign_up(f"user{n}").status, 201, n)
        self.assertTooMany(self.sign_up("user10"), 360)
        self.assertEqual(self.sign_up("neighbour", host=NEIGHBOUR).status, 201)
        self.clock.advance(359)
        self.assertTooMany(self.sign_up("user10"), 1)
        self.clock.advance(1)
        self.assertEqual(self.sign_up("user10").status, 201)
        self.assertTooMany(self.sign_up("user11"), 360)
        self.assertIsNone(self.successResultOf(self.server.store.get_user("user11")))

    def test_every_attempt_counts(self) -> None:
        """Refused sign-ups (a taken name, a bad body) count too: they probe the accounts."""
        self.assertEqual(self.sign_up("ann").status, 201)
        for _ in range(8):
            self.assertEqual(self.sign_up("ann").status, 400)
        self.assertEqual(self.call("POST", "/api/users/sign_up/", b"{").status, 400)
        self.assertTooMany(self.sign_up("bob"), 360)

    def test_ipv6_counts_by_64(self) -> None:
        """Addresses of one IPv6 /64 share the limit; the next /64 has its own."""
        for n in range(10):
            self.assertEqual(self.sign_up(f"user{n}", host=f"2001:db8::{n + 1}").status, 201)
        self.assertTooMany(self.sign_up("user10", host="2001:db8::ffff:1"), 360)
        self.assertEqual(self.sign_up("user10", host="2001:db8:0:1::1").status, 201)


class LoginLimitTests(ThrottledServerTestCase):
    def test_thirty_a_minute_per_address(self) -> None:
        """30 logins from one address at once, then 429 with Retry-After 2."""
        self.user("ann")
        for n in range(30):
            self.assertEqual(self.log_in("ann").status, 200, n)
        self.assertTooMany(self.log_in("ann"), 2)
        self.assertEqual(self.log_in("ann", host=NEIGHBOUR).status, 200)
        self.clock.advance(2)
        self.assertEqual(self.log_in("ann").status, 200)

    def test_ten_failures_per_account(self) -> None:
        """
        10 wrong passwords for one account, then every login of it, the right password
        from another address included, is 429 with Retry-After 60 (one try a minute).
        """
        self.user("ann")
        for n in range(10):
            self.assertEqual(self.log_in("ann", "wrong-password").status, 400, n)
        self.assertTooMany(self.log_in("ann", "wrong-password"), 60)
        self.assertTooMany(self.log_in("ANN", PASSWORD, host=NEIGHBOUR), 60)
        self.assertEqual(self.log_in("bob", "wrong-password").status, 400)  # another account
        self.clock.advance(60)
        self.assertEqual(self.log_in("ann", PASSWORD, host=NEIGHBOUR).status, 200)

    def test_unknown_users_count_alike(self) -> None:
        """A username nobody has is throttled like one that exists: the 429 tells nothing."""
        for n in range(10):
            self.assertEqual(self.log_in("nobody", "wrong-password").status, 400, n)
        self.assertTooMany(self.log_in("nobody", "wrong-password"), 60)

    def test_right_passwords_do_not_count(self) -> None:
        """Successful logins leave the account's failure budget alone."""
        self.user("ann")
        for _ in range(15):
            self.assertEqual(self.log_in("ann", host=NEIGHBOUR).status, 200)
        for n in range(10):
            self.assertEqual(self.log_in("ann", "wrong-password").status, 400, n)
        self.assertTooMany(self.log_in("ann", "wrong-password"), 60)


class SessionLoginLimitTests(ThrottledServerTestCase):
    def session_log_in(self, username: str, password: str, host: str = ATTACKER) -> HTTPResponse:
        """The web page's login: POST /api/session/ from the server's own page."""
        return request(self.server.site, "POST", "/api/session/",
                       {"username": username, "password": password},
                       {"Origin": "http://localhost"},  # the request's Host is localhost
                       address=host)

    def test_session_login_shares_the_limits(self) -> None:
        """
        Wrong passwords through the web page's session count like those through
        /api/token/: together 10, then 429 on either route.
        """
        self.user("ann")
        for n in range(5):
            self.assertEqual(self.session_log_in("ann", "wrong-password").status, 400, n)
            self.assertEqual(self.log_in("ann", "wrong-password").status, 400, n)
        self.assertTooMany(self.session_log_in("ann", PASSWORD, host=NEIGHBOUR), 60)
        self.assertTooMany(self.log_in("ann", PASSWORD, host=NEIGHBOUR), 60)


class CreationLimitTests(ThrottledServerTestCase):
    def create_match(self, token: str, host: str = ATTACKER) -> HTTPResponse:
        return self.call("POST", "/api/ongoing_matches/", token=token, host=host)

    def create_and_delete_match(self, token: str, host: str = ATTACKER) -> None:
        response = self.create_match(token, host)
        self.assertEqual(response.status, 201, response.body)
        deleted = self.call("DELETE", f"/api/ongoing_matches/{response.json()['id']}/",
                            token=token, host=host)
        self.assertEqual(deleted.status, 204)

    def test_twenty_per_account(self) -> None:
        """
        Matches and arenas together: 20 creations per account at once, then 429 with
        Retry-After 30 (20 every 10 minutes), from any address.
        """
        ann = self.user("ann")
        for _ in range(19):
            self.create_and_delete_match(ann)
        self.assertEqual(self.call("POST", "/api/arenas/", token=ann).status, 201)
        self.assertTooMany(self.call("POST", "/api/arenas/", token=ann), 30)
        self.assertTooMany(self.create_match(ann, host=NEIGHBOUR), 30)
        bob = self.user("bob")
        self.assertEqual(self.create_match(bob).status, 201)
        self.clock.advance(30)
        self.assertEqual(self.create_match(ann).status, 201)

    def test_sixty_per_address(self) -> None:
        """60 creations from one address, whoever makes them, then 429 with Retry-After 10."""
        tokens = [self.user(f"user{n}") for n in range(4)]
        for token in tokens:
            for _ in range(15):
                self.create_and_delete_match(token)
        late = self.user("late")
        self.assertTooMany(self.create_match(late), 10)
        self.assertEqual(self.create_match(late, host=NEIGHBOUR).status, 201)

    def test_unauthenticated_requests_are_not_charged(self) -> None:
        """A creation without a valid token is a 401 and costs the address nothing."""
        for _ in range(70):
            self.assertEqual(self.call("POST", "/api/arenas/").status, 401)
        self.assertEqual(self.call("POST", "/api/arenas/", token=self.user("ann")).status, 201)

    def test_fresh_accounts_cannot_fill_the_server(self) -> None:
        """
        One address signing up accounts and creating arenas as fast as it can stops at
        10 accounts and 60 arenas: a user elsewhere can still create one.
        """
        created = accounts = 0
        for n in range(20):
            if self.sign_up(f"fresh{n}").status != 201:
                continue
            accounts += 1
            token = str(self.log_in(f"fresh{n}").json()["token"])
            for _ in range(10):
                created += self.call("POST", "/api/arenas/", token=token).status == 201
        self.assertEqual((accounts, created), (10, 60))
        victim = self.user("victim")
        self.assertEqual(self.call("POST", "/api/arenas/", token=victim, host=NEIGHBOUR).status,
                         201)


class LimitOptionsTests(ThrottledServerTestCase):
    options = {
        "request_limits": RequestLimits(sign_ups_per_address=Rate(2, 60),
                                        creations_per_account=None),
        "arena_max_per_user": 2,
        "arena_max": 4,
    }

    def test_configured_rates_and_caps(self) -> None:
        """
        The server applies its configured rates (a rate of None is no limit) and arena
        caps: 2 arenas per user (403), 4 in all with the default one (503).
        """
        self.assertEqual([self.sign_up(n).status for n in ("a1", "a2", "a3")], [201, 201, 429])
        ann, bob = self.user("ann"), self.user("bob")
        statuses = [self.call("POST", "/api/arenas/", token=ann).status for _ in range(3)]
        self.assertEqual(statuses, [201, 201, 403])
        self.assertEqual(self.call("POST", "/api/arenas/", token=bob).status, 201)
        self.assertEqual(self.call("POST", "/api/arenas/", token=bob).status, 503)


class OptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(os, "environ", {k: v for k, v in os.environ.items()
                                   if not k.startswith("GAMEPROTO_")})

    def config(self, *argv: str) -> Any:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options.config()

    def test_defaults(self) -> None:
        """The documented defaults: 10/h, 30/m, 10/10m, 20/10m, 60/10m; 10 and 200 arenas."""
        config = self.config()
        limits = config.request_limits
        self.assertEqual(
            [str(limits.sign_ups_per_address), str(limits.logins_per_address),
             str(limits.failed_logins_per_account), str(limits.creations_per_account),
             str(limits.creations_per_address)],
            ["10/h", "30/m", "10/10m", "20/10m", "60/10m"],
        )
        self.assertEqual((config.arena_max_per_user, config.arena_max), (10, 200))

    def test_flags_and_environment(self) -> None:
        """Each limit is a flag with a GAMEPROTO_* fallback; "off" turns a rate off."""
        config = self.config(
            "--sign-ups-per-address", "3/m", "--logins-per-address", "off",
            "--failed-logins-per-account", "5/90s", "--creations-per-account", "100/3600",
            "--creations-per-address", "OFF", "--arena-max-per-user", "3", "--arena-max", "50",
        )
        self.assertEqual(config.request_limits, RequestLimits(
            sign_ups_per_address=Rate(3, 60), logins_per_address=None,
            failed_logins_per_account=Rate(5, 90), creations_per_account=Rate(100, 3600),
            creations_per_address=None,
        ))
        self.assertEqual((config.arena_max_per_user, config.arena_max), (3, 50))
        self.patch(os, "environ", {"GAMEPROTO_SIGN_UPS_PER_ADDRESS": "off",
                                   "GAMEPROTO_CREATIONS_PER_ADDRESS": "7/h",
                                   "GAMEPROTO_ARENA_MAX_PER_USER": "4"})
        config = self.config("--creations-per-address", "8/h")
        self.assertIsNone(config.request_limits.sign_ups_per_address)
        self.assertEqual(config.request_limits.creations_per_address, Rate(8, 3600))
        self.assertEqual(config.arena_max_per_user, 4)

    def test_bad_values(self) -> None:
        """A rate that is not COUNT/PERIOD and a cap that is not positive are usage errors."""
        for argv in (["--sign-ups-per-address", "10"], ["--logins-per-address", "0/m"],
                     ["--arena-max-per-user", "0"], ["--arena-max", "x"]):
            self.assertRaises(usage.UsageError, tap.Options().parseOptions, argv)
        self.patch(os, "environ", {"GAMEPROTO_CREATIONS_PER_ACCOUNT": "lots"})
        self.assertRaises(usage.UsageError, tap.Options)


class EndToEndTests(TestCase):
    """The limits of a real C{twistd -n gameproto}, set by its flags."""

    timeout = 60

    def test_429_over_the_wire(self) -> Deferred[None]:
        """A node started with low limits answers 429 JSON past them."""
        node = stop_on_cleanup(self, Node(
            "--store", "memory:", "--sign-ups-per-address", "2/h",
            "--failed-logins-per-account", "2/h",
        ))

        async def scenario() -> None:
            await node.start()
            statuses = []
            for name in ("ann", "bob", "cid"):
                status, _ = await http_json("POST", node.url("/api/users/sign_up/"),
                                            {"username": name, "password": PASSWORD})
                statuses.append(status)
            self.assertEqual(statuses, [201, 201, 429])
            wrong = {"username": "ann", "password": "wrong-password"}
            self.assertEqual((await http_json("POST", node.url("/api/token/"), wrong))[0], 400)
            self.assertEqual((await http_json("POST", node.url("/api/token/"), wrong))[0], 400)
            status, body = await http_json("POST", node.url("/api/token/"),
                                           {"username": "ann", "password": PASSWORD})
            self.assertEqual((status, body),
                             (429, {"error": "too many requests: try again in 1800 s",
                                    "retry_after": 1800}))
            self.assertEqual(await node.stop(), 0)

        return ensureDeferred(scenario())
