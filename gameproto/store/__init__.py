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
from typing import Any, Callable

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


@attrs.frozen
class OngoingMatch:
    """
    A match that has not ended: created by its host, joined by a challenger, maybe
    started.  C{id} is allocated by the store and kept by the completed match.
    """

    id: int
    host: str
    creation_timestamp: datetime
    challenger: str | None = None
    challenger_ready: bool = False
    spectators: tuple[str, ...] = ()
    start_timestamp: datetime | None = None

    @property
    def is_full(self) -> bool:
        return self.challenger is not None

    @property
    def is_started(self) -> bool:
        return self.start_timestamp is not None


@attrs.frozen
class MatchOutcome:
    """How a match ended, before the ratings are applied."""

    id: int
    winner: str
    loser: str
    start_timestamp: datetime
    completion_timestamp: datetime
    winner_score: int
    loser_score: int


@attrs.frozen
class CompletedMatch:
    """A finished match as stored: the outcome and both players' Elo before and after."""

    id: int
    winner: str
    loser: str
    start_timestamp: datetime
    completion_timestamp: datetime
    winner_score: int
    loser_score: int
    winner_elo_before_match: int
    loser_elo_before_match: int
    winner_elo_after_match: int
    loser_elo_after_match: int


@attrs.frozen
class ArenaRecord:
    """
    An arena as every node sees it (the C{default} arena, which every node has, is never
    stored): its id, the username that owns it (sign-up spelling), its configuration as
    JSON (C{ArenaConfig.asdict()}), and when it was created.
    """

    id: str
    owner: str
    config: dict[str, Any] = attrs.field(hash=False)
    created: datetime


@attrs.frozen
class ReplayRecord:
    """
    The replay of a completed match (same C{id}): its frames in an encoding the store
    does not read (gameproto.match.replay), and what is shown without decoding it.
    C{recorded} is when it was kept, from which its retention counts.
    """

    id: int
    recorded: datetime
    tick_ms: float
    duration_ms: int
    truncated: bool
    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")


# rate(winner_elo, loser_elo) -> (winner_elo_after, loser_elo_after)
Rating = Callable[[int, int], tuple[int, int]]


def matches_filters(
    match: CompletedMatch, user: str | None, winner: str | None, loser: str | None
) -> bool:
    """
    Whether C{match} passes C{list_completed_matches}' filters (names ignoring case;
    C{user} is either player; C{None} does not filter), for stores that filter in Python.
    """
    w, l = match.winner.lower(), match.loser.lower()
    return (
        (user is None or user.lower() in (w, l))
        and (winner is None or winner.lower() == w)
        and (loser is None or loser.lower() == l)
    )


def rate_outcome(outcome: MatchOutcome, winner: User, loser: User, rate: Rating) -> CompletedMatch:
    """The completed match of C{outcome} given both players as they are now."""
    winner_after, loser_after = rate(winner.elo, loser.elo)
    return CompletedMatch(
        id=outcome.id,
        winner=winner.username,
        loser=loser.username,
        start_timestamp=outcome.start_timestamp,
        completion_timestamp=outcome.completion_timestamp,
        winner_score=outcome.winner_score,
        loser_score=outcome.loser_score,
        winner_elo_before_match=winner.elo,
        loser_elo_before_match=loser.elo,
        winner_elo_after_match=winner_after,
        loser_elo_after_match=loser_after,
    )


class StoreError(Exception):
    """The store could not answer (its database or Redis is unavailable)."""


class UsernameTaken(Exception):
    """A user with that username (ignoring case) already exists."""


class NoSuchMatch(Exception):
    """The ongoing match (or one of its players) named in a write does not exist."""


class ArenaTaken(Exception):
    """An arena with that id already exists."""


class TooManyArenas(Exception):
    """
    Creating the arena would exceed a limit: C{scope} is C{"owner"} (the owner's own
    arenas) or C{"all"} (every arena).
    """

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


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

    # -- matches -------------------------------------------------------------
    #
    # Match ids are allocated by the store, increase, and are never reused, so a
    # completed match keeps the id of its ongoing match.  Usernames in matches
    # keep their sign-up spelling; filters compare them ignoring case.

    def create_ongoing_match(host: str, created: datetime) -> Deferred[OngoingMatch]:
        """A new unstarted match hosted by C{host}, with a fresh id."""

    def get_ongoing_match(match_id: int) -> Deferred[OngoingMatch | None]:
        """The ongoing match C{match_id}, or C{None}."""

    def list_ongoing_matches(
        is_full: bool | None, is_started: bool | None, limit: int, offset: int
    ) -> Deferred[list[OngoingMatch]]:
        """Ongoing matches by increasing id; a C{None} filter does not filter."""

    def update_ongoing_match(match: OngoingMatch) -> Deferred[None]:
        """
        Replace the stored match of the same id (the node running a match is the
        only writer of its record); L{NoSuchMatch} if it is gone.
        """

    def delete_ongoing_match(match_id: int) -> Deferred[bool]:
        """Remove an ongoing match without a result; C{True} if it existed."""

    def complete_match(outcome: MatchOutcome, rate: Rating) -> Deferred[CompletedMatch]:
        """
        In one atomic operation: read both players' ratings, apply C{rate}, store the
        completed match with the ratings before and after, update both users' Elo,
        and remove the ongoing match.  L{NoSuchMatch} (and nothing written) if the
        ongoing match or a player does not exist, so a match is never rated twice.
        """

    def get_completed_match(match_id: int) -> Deferred[CompletedMatch | None]:
        """The completed match C{match_id}, or C{None}."""

    def list_completed_matches(
        user: str | None, winner: str | None, loser: str | None, limit: int, offset: int
    ) -> Deferred[list[CompletedMatch]]:
        """
        Completed matches, most recently completed first (ties: higher id first);
        C{user} matches either player; the filters combine with AND.
        """

    # -- replays ---------------------------------------------------------------
    #
    # The replay of a completed match is kept next to it, until it is pruned.

    def save_replay(replay: ReplayRecord) -> Deferred[None]:
        """
        Keep the replay of the completed match C{replay.id} (replacing one kept
        before); L{NoSuchMatch} if there is no such completed match.
        """

    def get_replay(match_id: int) -> Deferred[ReplayRecord | None]:
        """The replay of the completed match C{match_id}, or C{None}."""

    def prune_replays(recorded_before: datetime) -> Deferred[int]:
        """Delete every replay recorded before C{recorded_before}; how many were deleted."""

    # -- arenas ---------------------------------------------------------------
    #
    # The arenas that exist, shared by every node of a cluster.  Owners are
    # compared ignoring case; arenas are listed in creation order.

    def create_arena(
        record: ArenaRecord, max_per_owner: int, max_arenas: int
    ) -> Deferred[ArenaRecord]:
        """
        In one atomic step: fail with L{TooManyArenas} C{"all"} if C{max_arenas} arenas
        exist, L{TooManyArenas} C{"owner"} if the owner already has C{max_per_owner},
        L{ArenaTaken} if the id exists; otherwise add C{record}.
        """

    def get_arena(arena_id: str) -> Deferred[ArenaRecord | None]:
        """The arena C{arena_id}, or C{None}."""

    def list_arenas(limit: int, offset: int) -> Deferred[list[ArenaRecord]]:
        """Arenas in creation order."""

    def delete_arena(arena_id: str) -> Deferred[bool]:
        """Remove an arena; C{True} if it existed."""


def check_store_description(description: str) -> None:
    """Raise C{ValueError} with a message unless C{description} names a store."""
    if description == "memory:":
        return
    if description.startswith("sqlite:"):
        if not description[len("sqlite:") :]:
            raise ValueError("sqlite: needs a path, e.g. sqlite:gameproto.sqlite3")
        return
    if description.startswith("redis://"):
        from gameproto.redis import RedisURL

        RedisURL.parse(description)
        return
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
    if description.startswith("redis://"):
        from gameproto.redis import RedisURL
        from gameproto.store.redis import RedisStore

        return RedisStore(reactor, RedisURL.parse(description))
    from gameproto.store.sqlite import SQLiteStore

    return SQLiteStore(reactor, description[len("sqlite:") :])
