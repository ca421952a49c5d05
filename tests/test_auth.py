"""Accounts, password hashing, tokens and handshake authentication."""

from __future__ import annotations

from typing import Any

from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import ensureDeferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import auth
from gameproto.auth import AccountError, Accounts, InvalidCredentials
from gameproto.store.memory import MemoryStore


def synchronously(f: Any, *args: Any) -> Any:
    return maybeDeferred(f, *args)


def make_accounts(token_ttl: float | None = None) -> tuple[Accounts, Clock]:
    clock = Clock()
    clock.advance(1_800_000_000)
    return Accounts(MemoryStore(), clock, synchronously, token_ttl=token_ttl), clock


def handshake(headers: dict[str, str]) -> ConnectionRequest:
    return ConnectionRequest(
        peer="tcp4:127.0.0.1:5000",
        headers=headers,
        host="localhost",
        path="/ws/test",
        params={},
        version=13,
        origin="",
        protocols=[],
        extensions=[],
    )


class PasswordTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """A hash accepts its password and refuses another."""
        encoded = auth.hash_password("correct horse")
        self.assertTrue(encoded.startswith("scrypt$16384$8$1$"))
        self.assertTrue(auth.check_password("correct horse", encoded))
        self.assertFalse(auth.check_password("correct horsE", encoded))

    def test_salted(self) -> None:
        """Two hashes of one password differ (a fresh 16-byte salt each time)."""
        first, second = auth.hash_password("pw123456"), auth.hash_password("pw123456")
        self.assertNotEqual(first, second)
        self.assertEqual(len(first.split("$")[4]), 32)

    def test_garbage_hash(self) -> None:
        """A malformed stored hash never matches and never raises."""
        for encoded in ["", "scrypt$x", "md5$1$2$3$00$00", "scrypt$16384$8$1$zz$00"]:
            self.assertFalse(auth.check_password("whatever", encoded))


class TokenParsingTests(SynchronousTestCase):
    key = "0123456789abcdef0123456789abcdef01234567"

    def test_authorization_header(self) -> None:
        """'Token <40 hex>' gives the key, the scheme in any case."""
        self.assertEqual(auth.token_from_authorization(f"Token {self.key}"), self.key)
        self.assertEqual(auth.token_from_authorization(f"token  {self.key} "), self.key)

    def test_malformed_authorization(self) -> None:
        """Anything else is no key at all (unauthenticated, never an error)."""
        for header in [
            None,
            "",
            "Token",
            f"Bearer {self.key}",
            f"Token {self.key}x",
            "Token " + "Z" * 40,
            f"Token{self.key}",
            "Token \x00\xff",
        ]:
            self.assertIsNone(auth.token_from_authorization(header), header)

    def test_cookie(self) -> None:
        """The gameproto_token cookie is found among others, even in joined headers."""
        self.assertEqual(auth.token_from_cookie(f"a=1; gameproto_token={self.key}"), self.key)
        self.assertEqual(auth.token_from_cookie(f"a=1,gameproto_token={self.key}"), self.key)
        self.assertIsNone(auth.token_from_cookie("gameproto_token=nothex"))
        self.assertIsNone(auth.token_from_cookie(None))

    def test_new_token_shape(self) -> None:
        """New tokens are 40 lower-case hex characters and differ."""
        first, second = auth.new_token(), auth.new_token()
        self.assertRegex(first, r"\A[0-9a-f]{40}\Z")
        self.assertNotEqual(first, second)


class AccountsTests(SynchronousTestCase):
    def run_coroutine(self, coroutine: Any) -> Any:
        return self.successResultOf(ensureDeferred(coroutine))

    def fail_coroutine(self, coroutine: Any, *errors: type[Exception]) -> Any:
        return self.failureResultOf(ensureDeferred(coroutine), *errors).value

    def test_sign_up(self) -> None:
        """A new user has Elo 1000, the clock's time and a hash that is not the password."""
        accounts, clock = make_accounts()
        user = self.run_coroutine(accounts.sign_up("ann", "password1"))
        self.assertEqual(user.elo, 1000)
        self.assertEqual(user.date_joined.timestamp(), clock.seconds())
        self.assertNotIn("password1", user.password_hash)

    def test_sign_up_validation(self) -> None:
        """Bad names and passwords name the offending field."""
        accounts, _ = make_accounts()
        cases = [
            ("", "password1", "username"),
            ("a" * 31, "password1", "username"),
            ("bad name", "password1", "username"),
            ("émile", "password1", "username"),
            (".", "password1", "username"),
            ("..", "password1", "username"),
            ("-", "password1", "username"),
            ("_.-", "password1", "username"),
            (5, "password1", "username"),
            ("ann", "short", "password"),
            ("ann", "x" * 1025, "password"),
            ("ann", None, "password"),
        ]
        for username, password, field in cases:
            error = self.fail_coroutine(accounts.sign_up(username, password), AccountError)
            self.assertEqual(error.field, field, (username, password))

    def test_sign_up_limits_accepted(self) -> None:
        """30-character names of the allowed alphabet and 8/1024-character passwords pass."""
        accounts, _ = make_accounts()
        self.run_coroutine(accounts.sign_up("A_b.c-" + "9" * 24, "x" * 8))
        self.run_coroutine(accounts.sign_up("long", "y" * 1024))

    def test_duplicate_ignoring_case(self) -> None:
        """A name taken in another case is refused on the username field."""
        accounts, _ = make_accounts()
        self.run_coroutine(accounts.sign_up("Ann", "password1"))
        error = self.fail_coroutine(accounts.sign_up("aNN", "password2"), AccountError)
        self.assertEqual(error.field, "username")

    def test_log_in_and_authenticate(self) -> None:
        """The right password mints a token that authenticates its user; each is new."""
        accounts, _ = make_accounts()
        self.run_coroutine(accounts.sign_up("ann", "password1"))
        first = self.run_coroutine(accounts.log_in("ANN", "password1"))
        second = self.run_coroutine(accounts.log_in("ann", "password1"))
        self.assertNotEqual(first, second)
        for key in (first, second):
            self.assertEqual(self.run_coroutine(accounts.user_for_token(key)).username, "ann")

    def test_wrong_credentials(self) -> None:
        """A wrong password, an unknown user or non-strings raise InvalidCredentials."""
        accounts, _ = make_accounts()
        self.run_coroutine(accounts.sign_up("ann", "password1"))
        for username, password in [("ann", "password2"), ("bob", "password1"), (1, 2)]:
            self.fail_coroutine(accounts.log_in(username, password), InvalidCredentials)

    def test_revoke(self) -> None:
        """A revoked token no longer authenticates; the user's other token does."""
        accounts, _ = make_accounts()
        self.run_coroutine(accounts.sign_up("ann", "password1"))
        kept = self.run_coroutine(accounts.log_in("ann", "password1"))
        revoked = self.run_coroutine(accounts.log_in("ann", "password1"))
        self.assertTrue(self.run_coroutine(accounts.revoke(revoked)))
        self.assertIsNone(self.run_coroutine(accounts.user_for_token(revoked)))
        self.assertIsNotNone(self.run_coroutine(accounts.user_for_token(kept)))

    def test_token_ttl(self) -> None:
        """With a TTL a token works until it is older than the TTL."""
        accounts, clock = make_accounts(token_ttl=60)
        self.run_coroutine(accounts.sign_up("ann", "password1"))
        key = self.run_coroutine(accounts.log_in("ann", "password1"))
        clock.advance(60)
        self.assertIsNotNone(self.run_coroutine(accounts.user_for_token(key)))
        clock.advance(1)
        self.assertIsNone(self.run_coroutine(accounts.user_for_token(key)))

    def test_handshake_header_and_cookie(self) -> None:
        """A handshake authenticates by header, or by cookie unless cookies are off."""
        accounts, _ = make_accounts()
        self.run_coroutine(accounts.sign_up("ann", "password1"))
        key = self.run_coroutine(accounts.log_in("ann", "password1"))
        by_header = handshake({"authorization": f"Token {key}"})
        by_cookie = handshake({"cookie": f"gameproto_token={key}"})
        self.assertEqual(
            self.successResultOf(accounts.authenticate_handshake(by_header, False)).username,
            "ann",
        )
        self.assertEqual(
            self.successResultOf(accounts.authenticate_handshake(by_cookie, True)).username,
            "ann",
        )
        self.assertIsNone(self.successResultOf(accounts.authenticate_handshake(by_cookie, False)))

    def test_handshake_malformed(self) -> None:
        """A malformed or unknown token is unauthenticated (None), not an error."""
        accounts, _ = make_accounts()
        for headers in [{}, {"authorization": "Token nope"}, {"authorization": "Token " + "a" * 40}]:
            self.assertIsNone(
                self.successResultOf(accounts.authenticate_handshake(handshake(headers), True))
            )
