"""The C{memory:} store: everything in dicts, gone when the process ends."""

from __future__ import annotations

from datetime import datetime
from operator import attrgetter

import attrs
from twisted.internet.defer import Deferred, fail, succeed
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
    TokenRecord,
    TooManyArenas,
    User,
    UsernameTaken,
    matches_filters,
    rate_outcome,
)


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
        self._ongoing: dict[int, OngoingMatch] = {}
        self._completed: dict[int, CompletedMatch] = {}
        self._last_match_id = 0
        self._arenas: dict[str, ArenaRecord] = {}  # in creation order
        self._replays: dict[int, ReplayRecord] = {}

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

    # -- matches ---------------------------------------------------------------

    def create_ongoing_match(self, host: str, created: datetime) -> Deferred[OngoingMatch]:
        self._last_match_id += 1
        match = OngoingMatch(id=self._last_match_id, host=host, creation_timestamp=created)
        self._ongoing[match.id] = match
        return succeed(match)

    def get_ongoing_match(self, match_id: int) -> Deferred[OngoingMatch | None]:
        return succeed(self._ongoing.get(match_id))

    def list_ongoing_matches(
        self, is_full: bool | None, is_started: bool | None, limit: int, offset: int
    ) -> Deferred[list[OngoingMatch]]:
        matches = [
            m
            for _, m in sorted(self._ongoing.items())
            if (is_full is None or m.is_full == is_full)
            and (is_started is None or m.is_started == is_started)
        ]
        return succeed(matches[offset : offset + limit])

    def update_ongoing_match(self, match: OngoingMatch) -> Deferred[None]:
        if match.id not in self._ongoing:
            return fail(NoSuchMatch(match.id))
        self._ongoing[match.id] = match
        return succeed(None)

    def delete_ongoing_match(self, match_id: int) -> Deferred[bool]:
        return succeed(self._ongoing.pop(match_id, None) is not None)

    def complete_match(self, outcome: MatchOutcome, rate: Rating) -> Deferred[CompletedMatch]:
        # Everything below runs without yielding to the reactor: atomic by construction.
        winner = self._users.get(outcome.winner.lower())
        loser = self._users.get(outcome.loser.lower())
        if outcome.id not in self._ongoing or winner is None or loser is None:
            return fail(NoSuchMatch(outcome.id))
        completed = rate_outcome(outcome, winner, loser, rate)
        self._completed[completed.id] = completed
        self._users[winner.username.lower()] = attrs.evolve(
            winner, elo=completed.winner_elo_after_match
        )
        self._users[loser.username.lower()] = attrs.evolve(
            loser, elo=completed.loser_elo_after_match
        )
        del self._ongoing[outcome.id]
        return succeed(completed)

    def get_completed_match(self, match_id: int) -> Deferred[CompletedMatch | None]:
        return succeed(self._completed.get(match_id))

    def list_completed_matches(
        self, user: str | None, winner: str | None, loser: str | None, limit: int, offset: int
    ) -> Deferred[list[CompletedMatch]]:
        matches = sorted(
            (m for m in self._completed.values() if matches_filters(m, user, winner, loser)),
            key=lambda m: (m.completion_timestamp, m.id),
            reverse=True,
        )
        return succeed(matches[offset : offset + limit])

    # -- replays ---------------------------------------------------------------

    def save_replay(self, replay: ReplayRecord) -> Deferred[None]:
        if replay.id not in self._completed:
            return fail(NoSuchMatch(replay.id))
        self._replays[replay.id] = replay
        return succeed(None)

    def get_replay(self, match_id: int) -> Deferred[ReplayRecord | None]:
        return succeed(self._replays.get(match_id))

    def prune_replays(self, recorded_before: datetime) -> Deferred[int]:
        old = [i for i, r in self._replays.items() if r.recorded < recorded_before]
        for match_id in old:
            del self._replays[match_id]
        return succeed(len(old))

    # -- arenas ----------------------------------------------------------------

    def create_arena(
        self, record: ArenaRecord, max_per_owner: int, max_arenas: int
    ) -> Deferred[ArenaRecord]:
        # No yield to the reactor in between: atomic by construction.
        owner = record.owner.lower()
        if len(self._arenas) >= max_arenas:
            return fail(TooManyArenas("all"))
        if sum(1 for a in self._arenas.values() if a.owner.lower() == owner) >= max_per_owner:
            return fail(TooManyArenas("owner"))
        if record.id in self._arenas:
            return fail(ArenaTaken(record.id))
        self._arenas[record.id] = record
        return succeed(record)

    def get_arena(self, arena_id: str) -> Deferred[ArenaRecord | None]:
        return succeed(self._arenas.get(arena_id))

    def list_arenas(self, limit: int, offset: int) -> Deferred[list[ArenaRecord]]:
        return succeed(list(self._arenas.values())[offset : offset + limit])

    def delete_arena(self, arena_id: str) -> Deferred[bool]:
        return succeed(self._arenas.pop(arena_id, None) is not None)
