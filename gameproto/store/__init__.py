"""
Persistence behind one interface, L{IStore}, with three implementations:

- C{memory:}: a dict, for tests and throw-away servers;
- C{sqlite:PATH}: the embedded default, one SQLite file, every query on a
  dedicated thread;
- C{redis://HOST:PORT/DB}: several nodes sharing one Redis (scale-out).

Every implementation passes the same contract suite (C{tests/store_contract.py}).
Services receive an L{IStore}; nothing imports a store as a global.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface


@attrs.frozen
class User:
    """An account.  C{username} keeps the spelling chosen at sign-up."""

    username: str
    password_hash: str
    date_joined: datetime
    elo: int = 1000


@attrs.frozen
class TokenRecord:
    """A token as stored: the SHA-256 of the key (never the key), its owner and age."""

    digest: str
    username: str
    created: datetime


class StoreError(Exception):
    """The store could not answer (its database or Redis is unavailable)."""


class UsernameTaken(Exception):
    """A user with that username (ignoring case) already exists."""


USER_ORDERINGS = ("elo", "-elo", "username", "-username")


class IStore(Interface):
    """
    Where gameproto keeps what must outlive a connection.  Every method returns a
    Deferred; usernames are matched ignoring case.
    """

    description: str  # type: ignore[misc]
    """How the store presents itself in /healthz and logs: C{memory}, C{sqlite:PATH}."""

    def start() -> Deferred[None]:
        """Open the database; called once before any other method."""

    def close() -> Deferred[None]:
        """Flush and close; no method is called afterwards."""

    def create_user(user: User) -> Deferred[User]:
        """Add C{user}; fails with L{UsernameTaken}."""

    def get_user(username: str) -> Deferred[User | None]:
        """The user called C{username} (any case), or C{None}."""

    def list_users(ordering: str, limit: int, offset: int) -> Deferred[list[User]]:
        """
        Users sorted by one of L{USER_ORDERINGS}; ties are broken by username so that
        pages are stable.
        """

    def add_token(token: TokenRecord) -> Deferred[None]:
        """Store a new token."""

    def get_token(digest: str) -> Deferred[tuple[TokenRecord, User] | None]:
        """The token with this digest and its owner, or C{None}."""

    def delete_token(digest: str) -> Deferred[bool]:
        """Revoke one token; C{True} if it existed."""


def check_store_description(description: str) -> None:
    """Raise C{ValueError} with a message unless C{description} names a store."""
    if description == "memory:":
        return
    if description.startswith("sqlite:"):
        if not description[len("sqlite:") :]:
            raise ValueError("sqlite: needs a path, e.g. sqlite:gameproto.sqlite3")
        return
    if description.startswith("redis://"):
        raise ValueError("the Redis store is not available yet (scale-out)")
    raise ValueError(
        f"unknown store {description!r}: expected memory:, sqlite:PATH or redis://HOST:PORT/DB"
    )


def store_from_string(reactor: Any, description: str) -> Any:
    """
    Build the store a C{--store} value names: C{memory:}, C{sqlite:PATH} or
    C{redis://HOST:PORT/DB}.  Raises C{ValueError} with a message for anything else.
    """
    check_store_description(description)
    if description == "memory:":
        from gameproto.store.memory import MemoryStore

        return MemoryStore()
    from gameproto.store.sqlite import SQLiteStore

    return SQLiteStore(reactor, description[len("sqlite:") :])
