"""The C{memory:} store: everything in dicts, gone when the process ends."""

from __future__ import annotations

from operator import attrgetter

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from gameproto.store import IStore, TokenRecord, User, UsernameTaken


def sort_users(users: list[User], ordering: str) -> list[User]:
    """Sort by C{ordering} (one of USER_ORDERINGS), ties broken by username."""
    by_name = sorted(users, key=lambda u: u.username.lower())
    field = ordering.lstrip("-")
    key = attrgetter("elo") if field == "elo" else (lambda u: u.username.lower())
    return sorted(by_name, key=key, reverse=ordering.startswith("-"))


@implementer(IStore)
class MemoryStore:
    description = "memory"

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        self._tokens: dict[str, TokenRecord] = {}

    def start(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)

    def create_user(self, user: User) -> Deferred[User]:
        key = user.username.lower()
        if key in self._users:
            return fail(UsernameTaken(user.username))
        self._users[key] = user
        return succeed(user)

    def get_user(self, username: str) -> Deferred[User | None]:
        return succeed(self._users.get(username.lower()))

    def list_users(self, ordering: str, limit: int, offset: int) -> Deferred[list[User]]:
        users = sort_users(list(self._users.values()), ordering)
        return succeed(users[offset : offset + limit])

    def add_token(self, token: TokenRecord) -> Deferred[None]:
        self._tokens[token.digest] = token
        return succeed(None)

    def get_token(self, digest: str) -> Deferred[tuple[TokenRecord, User] | None]:
        token = self._tokens.get(digest)
        if token is None:
            return succeed(None)
        user = self._users.get(token.username.lower())
        return succeed(None if user is None else (token, user))

    def delete_token(self, digest: str) -> Deferred[bool]:
        return succeed(self._tokens.pop(digest, None) is not None)
