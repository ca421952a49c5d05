"""
The tables of the C{sqlite:} store (L{gameproto.store.sqlite}) and the conversions
between their rows and gameproto's records.  Timestamps are stored as ISO-8601 text
in UTC; spectators and arena configs as JSON.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

from gameproto.store import (
    USER_ORDERINGS,
    ArenaRecord,
    CompletedMatch,
    OngoingMatch,
    ReplayRecord,
    User,
)

SCHEMA = """
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
-- AUTOINCREMENT: an id is never reused, even after its row is deleted, so a
-- completed match can keep the id of its ongoing match.
CREATE TABLE IF NOT EXISTS ongoing_matches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    creation_timestamp TEXT NOT NULL,
    challenger TEXT,
    challenger_ready INTEGER NOT NULL DEFAULT 0,
    spectators TEXT NOT NULL DEFAULT '[]',
    start_timestamp TEXT
);
CREATE TABLE IF NOT EXISTS completed_matches (
    id INTEGER PRIMARY KEY,
    winner TEXT NOT NULL,
    winner_key TEXT NOT NULL,
    loser TEXT NOT NULL,
    loser_key TEXT NOT NULL,
    start_timestamp TEXT NOT NULL,
    completion_timestamp TEXT NOT NULL,
    completion_order REAL NOT NULL,
    winner_score INTEGER NOT NULL,
    loser_score INTEGER NOT NULL,
    winner_elo_before_match INTEGER NOT NULL,
    loser_elo_before_match INTEGER NOT NULL,
    winner_elo_after_match INTEGER NOT NULL,
    loser_elo_after_match INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS completed_by_time ON completed_matches(completion_order, id);
CREATE INDEX IF NOT EXISTS completed_by_winner ON completed_matches(winner_key);
CREATE INDEX IF NOT EXISTS completed_by_loser ON completed_matches(loser_key);
-- A completed match's replay: data is its encoding (gameproto.match.replay);
-- recorded_order (epoch seconds) is what pruning compares.
CREATE TABLE IF NOT EXISTS replays (
    id INTEGER PRIMARY KEY REFERENCES completed_matches(id) ON DELETE CASCADE,
    recorded TEXT NOT NULL,
    recorded_order REAL NOT NULL,
    tick_ms REAL NOT NULL,
    duration_ms INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS replays_by_time ON replays(recorded_order);
-- seq gives the creation order.
CREATE TABLE IF NOT EXISTS arenas (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    owner_key TEXT NOT NULL,
    config TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS arenas_by_owner ON arenas(owner_key);
"""

# The ORDER BY clause of each ordering IStore.list_users accepts.
USER_ORDER_BY = {
    "elo": "elo ASC, username_key ASC",
    "-elo": "elo DESC, username_key ASC",
    "username": "username_key ASC",
    "-username": "username_key DESC",
}
assert set(USER_ORDER_BY) == set(USER_ORDERINGS)


def timestamp_text(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


def user_from_row(row: sqlite3.Row) -> User:
    return User(
        username=row["username"],
        password_hash=row["password_hash"],
        date_joined=parse_timestamp(row["date_joined"]),
        elo=row["elo"],
    )


def parse_optional_timestamp(value: str | None) -> datetime | None:
    return None if value is None else parse_timestamp(value)


def ongoing_from_row(row: sqlite3.Row) -> OngoingMatch:
    return OngoingMatch(
        id=row["id"],
        host=row["host"],
        creation_timestamp=parse_timestamp(row["creation_timestamp"]),
        challenger=row["challenger"],
        challenger_ready=bool(row["challenger_ready"]),
        spectators=tuple(json.loads(row["spectators"])),
        start_timestamp=parse_optional_timestamp(row["start_timestamp"]),
    )


def completed_from_row(row: sqlite3.Row) -> CompletedMatch:
    return CompletedMatch(
        id=row["id"],
        winner=row["winner"],
        loser=row["loser"],
        start_timestamp=parse_timestamp(row["start_timestamp"]),
        completion_timestamp=parse_timestamp(row["completion_timestamp"]),
        winner_score=row["winner_score"],
        loser_score=row["loser_score"],
        winner_elo_before_match=row["winner_elo_before_match"],
        loser_elo_before_match=row["loser_elo_before_match"],
        winner_elo_after_match=row["winner_elo_after_match"],
        loser_elo_after_match=row["loser_elo_after_match"],
    )


def arena_from_row(row: sqlite3.Row) -> ArenaRecord:
    return ArenaRecord(
        id=row["id"],
        owner=row["owner"],
        config=json.loads(row["config"]),
        created=parse_timestamp(row["created"]),
    )


def replay_from_row(row: sqlite3.Row) -> ReplayRecord:
    return ReplayRecord(
        id=row["id"],
        recorded=parse_timestamp(row["recorded"]),
        tick_ms=row["tick_ms"],
        duration_ms=row["duration_ms"],
        truncated=bool(row["truncated"]),
        data=bytes(row["data"]),
    )
