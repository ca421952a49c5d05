"""
The C{sqlite:PATH} store, gameproto's embedded default.

SQLite calls block, so every query runs on one dedicated thread (a thread pool of
size one): the reactor thread never waits on the disk, and one connection used by
one thread needs no locking of its own.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import datetime
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from gameproto.store import (
    ArenaRecord,
    ArenaTaken,
    CompletedMatch,
    IStore,
    MatchOutcome,
    NoSuchMatch,
    OngoingMatch,
    Rating,
    ReplayRecord,
    StoreError,
    TokenRecord,
    TooManyArenas,
    User,
    UsernameTaken,
    rate_outcome,
)
from gameproto.store.sqlite_schema import (
    SCHEMA,
    USER_ORDER_BY,
    arena_from_row,
    completed_from_row,
    ongoing_from_row,
    parse_timestamp,
    replay_from_row,
    timestamp_text,
    user_from_row,
)

T = TypeVar("T")


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
        self._make_private()
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
        db.executescript(SCHEMA)
        self._db = db

    def _make_private(self) -> None:
        """
        A new database file is created mode 0600 (SQLite gives its -wal and -shm files the
        database's mode): it holds password hashes and token digests, and the processor's
        programs, among others, must not read it whatever directory it is in.  An existing
        file that others can read is left as it is, with a warning.
        """
        if self.path == ":memory:" or self.path.startswith("file:"):
            return
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            for path in (self.path, self.path + "-wal", self.path + "-shm"):
                try:
                    mode = os.stat(path).st_mode
                except FileNotFoundError:
                    continue
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    self._log.warn(
                        "{path} is readable or writable by other users (mode {mode:o}): "
                        "chmod 600 it; it holds password hashes and token digests",
                        path=path,
                        mode=stat.S_IMODE(mode),
                    )

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
                        timestamp_text(user.date_joined),
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
            return None if row is None else user_from_row(row)

        return self._run(select)

    def list_users(self, ordering: str, limit: int, offset: int) -> Deferred[list[User]]:
        order_by = USER_ORDER_BY[ordering]

        def select() -> list[User]:
            rows = self.db.execute(
                f"SELECT * FROM users ORDER BY {order_by} LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
            return [user_from_row(row) for row in rows]

        return self._run(select)

    # -- tokens ---------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> Deferred[None]:
        def insert() -> None:
            self.db.execute(
                "INSERT INTO tokens (digest, username_key, created) VALUES (?, ?, ?)",
                (token.digest, token.username.lower(), timestamp_text(token.created)),
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
            user = user_from_row(row)
            return TokenRecord(digest, user.username, parse_timestamp(row["created"])), user

        return self._run(select)

    def delete_token(self, digest: str) -> Deferred[bool]:
        def delete() -> bool:
            cursor = self.db.execute("DELETE FROM tokens WHERE digest = ?", (digest,))
            return cursor.rowcount > 0

        return self._run(delete)

    # -- matches --------------------------------------------------------------

    def create_ongoing_match(self, host: str, created: datetime) -> Deferred[OngoingMatch]:
        def insert() -> OngoingMatch:
            cursor = self.db.execute(
                "INSERT INTO ongoing_matches (host, creation_timestamp) VALUES (?, ?)",
                (host, timestamp_text(created)),
            )
            assert cursor.lastrowid is not None
            return OngoingMatch(id=cursor.lastrowid, host=host, creation_timestamp=created)

        return self._run(insert)

    def get_ongoing_match(self, match_id: int) -> Deferred[OngoingMatch | None]:
        def select() -> OngoingMatch | None:
            row = self.db.execute(
                "SELECT * FROM ongoing_matches WHERE id = ?", (match_id,)
            ).fetchone()
            return None if row is None else ongoing_from_row(row)

        return self._run(select)

    def list_ongoing_matches(
        self, is_full: bool | None, is_started: bool | None, limit: int, offset: int
    ) -> Deferred[list[OngoingMatch]]:
        where = ["1"]
        if is_full is not None:
            where.append("challenger IS NOT NULL" if is_full else "challenger IS NULL")
        if is_started is not None:
            where.append("start_timestamp IS NOT NULL" if is_started else "start_timestamp IS NULL")
        query = (
            f"SELECT * FROM ongoing_matches WHERE {' AND '.join(where)}"
            " ORDER BY id LIMIT ? OFFSET ?"
        )

        def select() -> list[OngoingMatch]:
            return [ongoing_from_row(row) for row in self.db.execute(query, (limit, offset))]

        return self._run(select)

    def update_ongoing_match(self, match: OngoingMatch) -> Deferred[None]:
        def update() -> None:
            cursor = self.db.execute(
                "UPDATE ongoing_matches SET host = ?, creation_timestamp = ?, challenger = ?,"
                " challenger_ready = ?, spectators = ?, start_timestamp = ? WHERE id = ?",
                (
                    match.host,
                    timestamp_text(match.creation_timestamp),
                    match.challenger,
                    int(match.challenger_ready),
                    json.dumps(list(match.spectators)),
                    None if match.start_timestamp is None else timestamp_text(match.start_timestamp),
                    match.id,
                ),
            )
            if cursor.rowcount == 0:
                raise NoSuchMatch(match.id)

        return self._run(update)

    def delete_ongoing_match(self, match_id: int) -> Deferred[bool]:
        def delete() -> bool:
            cursor = self.db.execute("DELETE FROM ongoing_matches WHERE id = ?", (match_id,))
            return cursor.rowcount > 0

        return self._run(delete)

    def complete_match(self, outcome: MatchOutcome, rate: Rating) -> Deferred[CompletedMatch]:
        def transaction() -> CompletedMatch:
            db = self.db
            # IMMEDIATE takes the write lock before the ratings are read, so no other
            # writer can change them between the read and the update.
            db.execute("BEGIN IMMEDIATE")
            try:
                completed = record(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return completed

        def record(db: sqlite3.Connection) -> CompletedMatch:
            ongoing = db.execute(
                "SELECT id FROM ongoing_matches WHERE id = ?", (outcome.id,)
            ).fetchone()
            players = [
                db.execute("SELECT * FROM users WHERE username_key = ?", (name.lower(),)).fetchone()
                for name in (outcome.winner, outcome.loser)
            ]
            if ongoing is None or None in players:
                raise NoSuchMatch(outcome.id)
            winner, loser = (user_from_row(row) for row in players)
            m = rate_outcome(outcome, winner, loser, rate)
            db.execute(
                "INSERT INTO completed_matches (id, winner, winner_key, loser, loser_key,"
                " start_timestamp, completion_timestamp, completion_order, winner_score,"
                " loser_score, winner_elo_before_match, loser_elo_before_match,"
                " winner_elo_after_match, loser_elo_after_match)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    m.id,
                    m.winner,
                    m.winner.lower(),
                    m.loser,
                    m.loser.lower(),
                    timestamp_text(m.start_timestamp),
                    timestamp_text(m.completion_timestamp),
                    m.completion_timestamp.timestamp(),
                    m.winner_score,
                    m.loser_score,
                    m.winner_elo_before_match,
                    m.loser_elo_before_match,
                    m.winner_elo_after_match,
                    m.loser_elo_after_match,
                ),
            )
            for name, elo in ((m.winner, m.winner_elo_after_match), (m.loser, m.loser_elo_after_match)):
                db.execute("UPDATE users SET elo = ? WHERE username_key = ?", (elo, name.lower()))
            db.execute("DELETE FROM ongoing_matches WHERE id = ?", (m.id,))
            return m

        return self._run(transaction)

    def get_completed_match(self, match_id: int) -> Deferred[CompletedMatch | None]:
        def select() -> CompletedMatch | None:
            row = self.db.execute(
                "SELECT * FROM completed_matches WHERE id = ?", (match_id,)
            ).fetchone()
            return None if row is None else completed_from_row(row)

        return self._run(select)

    def list_completed_matches(
        self, user: str | None, winner: str | None, loser: str | None, limit: int, offset: int
    ) -> Deferred[list[CompletedMatch]]:
        where, args = ["1"], []
        if user is not None:
            where.append("(winner_key = ? OR loser_key = ?)")
            args += [user.lower(), user.lower()]
        if winner is not None:
            where.append("winner_key = ?")
            args.append(winner.lower())
        if loser is not None:
            where.append("loser_key = ?")
            args.append(loser.lower())
        query = (
            f"SELECT * FROM completed_matches WHERE {' AND '.join(where)}"
            " ORDER BY completion_order DESC, id DESC LIMIT ? OFFSET ?"
        )

        def select() -> list[CompletedMatch]:
            return [completed_from_row(row) for row in self.db.execute(query, (*args, limit, offset))]

        return self._run(select)

    # -- replays ---------------------------------------------------------------

    def save_replay(self, replay: ReplayRecord) -> Deferred[None]:
        def insert() -> None:
            try:
                self.db.execute(
                    "INSERT OR REPLACE INTO replays (id, recorded, recorded_order, tick_ms,"
                    " duration_ms, truncated, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (replay.id, timestamp_text(replay.recorded), replay.recorded.timestamp(),
                     replay.tick_ms, replay.duration_ms, int(replay.truncated), replay.data),
                )
            except sqlite3.IntegrityError:  # the foreign key: no such completed match
                raise NoSuchMatch(replay.id) from None

        return self._run(insert)

    def get_replay(self, match_id: int) -> Deferred[ReplayRecord | None]:
        def select() -> ReplayRecord | None:
            row = self.db.execute("SELECT * FROM replays WHERE id = ?", (match_id,)).fetchone()
            return None if row is None else replay_from_row(row)

        return self._run(select)

    def prune_replays(self, recorded_before: datetime) -> Deferred[int]:
        def delete() -> int:
            cursor = self.db.execute("DELETE FROM replays WHERE recorded_order < ?",
                                     (recorded_before.timestamp(),))
            return cursor.rowcount

        return self._run(delete)

    # -- arenas ---------------------------------------------------------------

    def create_arena(
        self, record: ArenaRecord, max_per_owner: int, max_arenas: int
    ) -> Deferred[ArenaRecord]:
        def transaction() -> ArenaRecord:
            db = self.db
            db.execute("BEGIN IMMEDIATE")  # the counts and the insert as one
            try:
                insert(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return record

        def insert(db: sqlite3.Connection) -> None:
            (count,) = db.execute("SELECT COUNT(*) FROM arenas").fetchone()
            if count >= max_arenas:
                raise TooManyArenas("all")
            (owned,) = db.execute(
                "SELECT COUNT(*) FROM arenas WHERE owner_key = ?", (record.owner.lower(),)
            ).fetchone()
            if owned >= max_per_owner:
                raise TooManyArenas("owner")
            try:
                db.execute(
                    "INSERT INTO arenas (id, owner, owner_key, config, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (record.id, record.owner, record.owner.lower(), json.dumps(record.config),
                     timestamp_text(record.created)),
                )
            except sqlite3.IntegrityError:
                raise ArenaTaken(record.id) from None

        return self._run(transaction)

    def get_arena(self, arena_id: str) -> Deferred[ArenaRecord | None]:
        def select() -> ArenaRecord | None:
            row = self.db.execute("SELECT * FROM arenas WHERE id = ?", (arena_id,)).fetchone()
            return None if row is None else arena_from_row(row)

        return self._run(select)

    def list_arenas(self, limit: int, offset: int) -> Deferred[list[ArenaRecord]]:
        def select() -> list[ArenaRecord]:
            rows = self.db.execute(
                "SELECT * FROM arenas ORDER BY seq LIMIT ? OFFSET ?", (limit, offset)
            )
            return [arena_from_row(row) for row in rows]

        return self._run(select)

    def delete_arena(self, arena_id: str) -> Deferred[bool]:
        def delete() -> bool:
            return self.db.execute("DELETE FROM arenas WHERE id = ?", (arena_id,)).rowcount > 0

        return self._run(delete)
