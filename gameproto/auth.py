"""
Accounts and tokens: sign-up, password checks, minting and revoking tokens, and
finding the user behind a REST request or a WebSocket handshake.

Passwords are hashed with scrypt (n=2**14, r=8, p=1, 16-byte salt) on a thread:
one hash costs tens of milliseconds of CPU, which the reactor must never spend.
A token is 40 random hex characters given to the client once; the store keeps
only its SHA-256, so a leaked database holds no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, TypeVar

from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from gameproto.store import IStore, TokenRecord, User, UsernameTaken

T = TypeVar("T")

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,30}\Z")
# A new name also needs a letter or a digit: ".", ".." and "-" read as paths or as
# nothing in URLs (/api/users/../), logs and chat lines.
_LETTER_OR_DIGIT = re.compile(r"[A-Za-z0-9]")
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
INITIAL_ELO = 1000
TOKEN_PATTERN = re.compile(r"[0-9a-f]{40}\Z")
TOKEN_COOKIE = "gameproto_token"

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_DKLEN = 32


class AccountError(Exception):
    """Bad sign-up data; C{field} names the offending field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidCredentials(Exception):
    """No such user, or the wrong password: the two are not told apart."""


# -- passwords ---------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None) -> str:
    """C{scrypt$N$r$p$SALT$HASH}, hex encoded: the parameters travel with the hash."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=_SCRYPT_N,
        r=_SCRYPT_R,
        p=_SCRYPT_P,
        dklen=_SCRYPT_DKLEN,
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected) // 2,
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected)


# Compared against when the username does not exist, so that a wrong username
# takes as long as a wrong password and does not reveal which accounts exist.
_DUMMY_HASH = hash_password("gameproto-dummy-password", salt=b"\0" * 16)


# -- tokens --------------------------------------------------------------------


def new_token() -> str:
    return secrets.token_hex(20)


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def token_from_authorization(header: str | None) -> str | None:
    """The key of C{Authorization: Token <key>}; C{None} for anything malformed."""
    if not header:
        return None
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "token" or not TOKEN_PATTERN.match(key):
        return None
    return key


def token_from_cookie(header: str | None) -> str | None:
    """
    The C{gameproto_token} cookie.  Autobahn joins repeated Cookie headers with
    commas, so both C{;} and C{,} separate cookies here.
    """
    if not header:
        return None
    for part in re.split(r"[;,]", header):
        name, _, value = part.strip().partition("=")
        if name == TOKEN_COOKIE and TOKEN_PATTERN.match(value.strip('"')):
            return value.strip('"')
    return None


def validate_sign_up(username: Any, password: Any) -> tuple[str, str]:
    if not isinstance(username, str) or not username:
        raise AccountError("this field is required and must be a string", "username")
    if not USERNAME_PATTERN.match(username) or not _LETTER_OR_DIGIT.search(username):
        raise AccountError(
            "1 to 30 characters: letters, digits and _ . - only, with at least one letter "
            "or digit",
            "username",
        )
    if not isinstance(password, str) or not password:
        raise AccountError("this field is required and must be a string", "password")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AccountError(
            f"the password must have {PASSWORD_MIN} to {PASSWORD_MAX} characters",
            "password",
        )
    return username, password


class Accounts:
    """
    The account operations of the REST API and the handshake authentication of
    every WebSocket endpoint.

    @param run_in_thread: runs a blocking callable and returns a Deferred of its
        result (C{deferToThreadPool} in the server, synchronous in unit tests).
    @param token_ttl: seconds a token stays valid, or C{None} for no expiry.
    """

    _log = Logger()

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        run_in_thread: Callable[..., Deferred[Any]],
        token_ttl: float | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self._run_in_thread = run_in_thread
        self.token_ttl = token_ttl

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    async def sign_up(self, username: Any, password: Any) -> User:
        """Create an account with Elo 1000; L{AccountError} on bad input or a taken name."""
        username, password = validate_sign_up(username, password)
        if await self.store.get_user(username) is not None:
            raise AccountError("a user with that username already exists", "username")
        password_hash = await self._run_in_thread(hash_password, password)
        user = User(username, password_hash, self.now(), INITIAL_ELO)
        try:
            await self.store.create_user(user)
        except UsernameTaken:  # lost a race with a concurrent sign-up
            raise AccountError("a user with that username already exists", "username")
        self._log.info("New user {username}", username=username)
        return user

    async def log_in(self, username: Any, password: Any) -> str:
        """Check the password and mint a new token; L{InvalidCredentials} otherwise."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidCredentials()
        if len(password) > PASSWORD_MAX or not USERNAME_PATTERN.match(username):
            raise InvalidCredentials()
        user = await self.store.get_user(username)
        encoded = _DUMMY_HASH if user is None else user.password_hash
        matches = await self._run_in_thread(check_password, password, encoded)
        if user is None or not matches:
            raise InvalidCredentials()
        key = new_token()
        await self.store.add_token(TokenRecord(token_digest(key), user.username, self.now()))
        return key

    async def user_for_token(self, key: str | None) -> User | None:
        """The owner of a valid, unexpired token key, or C{None}."""
        if key is None:
            return None
        found = await self.store.get_token(token_digest(key))
        if found is None:
            return None
        token, user = found
        if self.token_ttl is not None:
            if self.now() - token.created > timedelta(seconds=self.token_ttl):
                return None
        return user

    async def revoke(self, key: str) -> bool:
        return await self.store.delete_token(token_digest(key))

    def authenticate_handshake(
        self, request: ConnectionRequest, cookies_allowed: bool
    ) -> Deferred[User | None]:
        """
        The user of a WebSocket opening handshake: the Authorization header first,
        then (unless every origin is allowed) the C{gameproto_token} cookie.
        """
        key = token_from_authorization(request.headers.get("authorization"))
        if key is None and cookies_allowed:
            key = token_from_cookie(request.headers.get("cookie"))
        return ensureDeferred(self.user_for_token(key))
