"""
The C{sqlite:PATH} store, gameproto's embedded default.

SQLite calls block, so every query runs on one dedicated thread (a thread pool of
size one): the reactor thread never waits on the disk, and one connection used by
one thread needs no locking of its own.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from gameproto.store import (
    USER_ORDERINGS,
    IStore,
    StoreError,
    TokenRecord,
    User,
    UsernameTaken,
)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT NOT NULL,
    username_key TEXT NOT NULL PRIMARY KEY,
    password_hash TEXT NOT NULL,
    date_joined TEXT NOT NULL,
    elo INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT NOT NULL PRIMARY KEY,
    username_key TEXT NOT NULL REFERENCES users(username_key) ON DELETE CASCADE,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens(username_key);
"""

_ORDER_BY = {
    "elo": "elo ASC, username_key ASC",
    "-elo": "elo DESC, username_key ASC",
    "username": "username_key ASC",
    "-username": "username_key DESC",
}
assert set(_ORDER_BY) == set(USER_ORDERINGS)


def _timestamp(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _datetime(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _user(row: sqlite3.Row) -> User:
    return User(
        username=row["username"],
        password_hash=row["password_hash"],
        date_joined=_datetime(row["date_joined"]),
        elo=row["elo"],
    )


@implementer(IStore)
class SQLiteStore:
    _log = Logger()

    def __init__(self, reactor: Any, path: str) -> None:
        self._reactor = reactor
        self.path = path
        self.description = f"sqlite:{path}"
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="gameproto-sqlite")
        self._db: sqlite3.Connection | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Deferred[None]:
        self._pool.start()
        return self._run(self._open)

    def close(self) -> Deferred[None]:
        def stopped(result: Any) -> Any:
            # Joins the one worker thread, which has nothing left to do.
            self._pool.stop()
            return result

        return self._run(self._close).addBoth(stopped)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        # WAL survives a crash without losing committed rows and lets readers in
        # while a write is in progress.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _run(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        def guarded() -> T:
            try:
                return work(*args)
            except sqlite3.Error as e:
                if isinstance(e, sqlite3.IntegrityError):
                    raise
                raise StoreError(f"sqlite: {e}") from e

        return deferToThreadPool(self._reactor, self._pool, guarded)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the sqlite store is not open")
        return self._db

    # -- users ----------------------------------------------------------------

    def create_user(self, user: User) -> Deferred[User]:
        def insert() -> User:
            try:
                self.db.execute(
                    "INSERT INTO users (username, username_key, password_hash, date_joined, elo)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        user.username,
                        user.username.lower(),
                        user.password_hash,
                        _timestamp(user.date_joined),
                        user.elo,
                    ),
                )
            except sqlite3.IntegrityError:
                raise UsernameTaken(user.username) from None
            return user

        return self._run(insert)

    def get_user(self, username: str) -> Deferred[User | None]:
        def select() -> User | None:
            row = self.db.execute(
                "SELECT * FROM users WHERE username_key = ?", (username.lower(),)
            ).fetchone()
            return None if row is None else _user(row)

        return self._run(select)

    def list_users(self, ordering: str, limit: int, offset: int) -> Deferred[list[User]]:
        order_by = _ORDER_BY[ordering]

        def select() -> list[User]:
            rows = self.db.execute(
                f"SELECT * FROM users ORDER BY {order_by} LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
            return [_user(row) for row in rows]

        return self._run(select)

    # -- tokens ---------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> Deferred[None]:
        def insert() -> None:
            self.db.execute(
                "INSERT INTO tokens (digest, username_key, created) VALUES (?, ?, ?)",
                (token.digest, token.username.lower(), _timestamp(token.created)),
            )

        return self._run(insert)

    def get_token(self, digest: str) -> Deferred[tuple[TokenRecord, User] | None]:
        def select() -> tuple[TokenRecord, User] | None:
            row = self.db.execute(
                "SELECT tokens.created AS created, users.* FROM tokens"
                " JOIN users USING (username_key) WHERE digest = ?",
                (digest,),
            ).fetchone()
            if row is None:
                return None
            user = _user(row)
            return TokenRecord(digest, user.username, _datetime(row["created"])), user

        return self._run(select)

    def delete_token(self, digest: str) -> Deferred[bool]:
        def delete() -> bool:
            cursor = self.db.execute("DELETE FROM tokens WHERE digest = ?", (digest,))
            return cursor.rowcount > 0

        return self._run(delete)
