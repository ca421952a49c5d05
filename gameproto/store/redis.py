"""
The C{redis://HOST:PORT/DB} store: several gameproto nodes sharing one Redis.

Records are JSON strings under C{gp:*} keys; sorted sets of score 0 give the
orderings by lexicographic member (C{"%010d:name"}), so ties break by name exactly
as the SQL stores do.  Every write that must be atomic (a unique username, a match
completion that rates both players) is one Lua script, which Redis runs without
interleaving; nothing relies on WATCH, whose connection would be lost to the pool
if a command timed out mid-transaction.  Every call has a timeout
(L{gameproto.redis.within}): during an outage the store fails fast with
L{gameproto.redis.RedisUnavailable}, a L{StoreError}, instead of hanging.

Across nodes the ongoing matches are also changed by the match directory
(gameproto.match.redis_directory), with scripts of its own on the same keys and
the same JSON (L{ongoing_json}, L{ongoing_record}).
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from zope.interface import implementer

from gameproto import redis, wire
from gameproto.store import redis_scripts as scripts
from gameproto.store import (
    USER_ORDERINGS,
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
    matches_filters,
    rate_outcome,
)

# Elo is shifted into a fixed-width non-negative number so that lexicographic order
# of "%010d:name" members is numeric order.
_ELO_SHIFT = 10**9

def _key(username: str) -> str:
    return username.lower()


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _elo_members(user_key: str, elo: int) -> tuple[str, str]:
    """The user's members in the ascending and descending Elo indexes."""
    return (f"{_ELO_SHIFT + elo:010d}:{user_key}", f"{_ELO_SHIFT - elo:010d}:{user_key}")


def _completed_member(match: CompletedMatch) -> str:
    micros = int(match.completion_timestamp.timestamp() * 1_000_000)
    return f"{micros:020d}:{match.id:012d}"


def _user_json(user: User) -> str:
    return wire.encode(
        {
            "username": user.username,
            "password_hash": user.password_hash,
            "date_joined": _ts(user.date_joined),
            "elo": user.elo,
        }
    ).decode()


def _user(raw: str | None) -> User | None:
    if raw is None:
        return None
    d = wire.decode(raw)
    return User(d["username"], d["password_hash"], _dt(d["date_joined"]), int(d["elo"]))


def ongoing_json(match: OngoingMatch) -> str:
    record = attrs.asdict(match)
    record["creation_timestamp"] = _ts(match.creation_timestamp)
    record["start_timestamp"] = _ts(match.start_timestamp)
    record["spectators"] = list(match.spectators)
    return wire.encode(record).decode()


def ongoing_record(raw: str | None) -> OngoingMatch | None:
    if raw is None:
        return None
    d = wire.decode(raw)
    d["creation_timestamp"] = _dt(d["creation_timestamp"])
    d["start_timestamp"] = _dt(d["start_timestamp"])
    d["spectators"] = tuple(d["spectators"])
    return OngoingMatch(**d)


def _completed_json(match: CompletedMatch) -> str:
    record = attrs.asdict(match)
    record["start_timestamp"] = _ts(match.start_timestamp)
    record["completion_timestamp"] = _ts(match.completion_timestamp)
    return wire.encode(record).decode()


def _completed(raw: str | None) -> CompletedMatch | None:
    if raw is None:
        return None
    d = wire.decode(raw)
    d["start_timestamp"] = _dt(d["start_timestamp"])
    d["completion_timestamp"] = _dt(d["completion_timestamp"])
    return CompletedMatch(**d)


def _replay_json(replay: ReplayRecord) -> str:
    # Binary data travels as base64: the Redis client decodes replies as UTF-8.
    return wire.encode({
        "id": replay.id, "recorded": _ts(replay.recorded), "tick_ms": replay.tick_ms,
        "duration_ms": replay.duration_ms, "truncated": replay.truncated,
        "data": base64.b64encode(replay.data).decode("ascii"),
    }).decode()


def _replay(raw: str | None) -> ReplayRecord | None:
    if raw is None:
        return None
    d = wire.decode(raw)
    return ReplayRecord(d["id"], _dt(d["recorded"]), d["tick_ms"], d["duration_ms"],
                        d["truncated"], base64.b64decode(d["data"]))


def _arena_json(record: ArenaRecord) -> str:
    return wire.encode({
        "id": record.id, "owner": record.owner, "owner_key": _key(record.owner),
        "config": record.config, "created": _ts(record.created),
    }).decode()


def _arena(raw: str | None) -> ArenaRecord | None:
    if raw is None:
        return None
    d = wire.decode(raw)
    return ArenaRecord(d["id"], d["owner"], d["config"], _dt(d["created"]))


@implementer(IStore)
class RedisStore:
    """
    @param prefix: namespaces every key, so that tests (or two deployments) can
        share a Redis database.
    """

    _MAX_RETRIES = 20

    def __init__(self, reactor: Any, url: redis.RedisURL, prefix: str = "gp:") -> None:
        self._reactor = reactor
        self.url = url
        self.description = str(url)
        self._p = prefix
        self._pool: Any = None

    # -- plumbing -------------------------------------------------------------

    def k(self, *parts: object) -> str:
        return self._p + ":".join(str(p) for p in parts)

    def _call(self, what: str, command: str, *args: Any) -> Deferred[Any]:
        if self._pool is None:
            raise StoreError("the Redis store is not started")
        return redis.within(getattr(self._pool, command)(*args), self._reactor, what)

    def _eval(self, what: str, script: str, keys: list[str], args: list[Any]) -> Deferred[Any]:
        return self._call(what, "eval", script, keys, [str(a) for a in args])

    async def _mget(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        values = await self._call("mget", "mget", keys)
        return list(values)

    def start(self) -> Deferred[None]:
        self._pool = redis.connection_pool(self._reactor, self.url)
        return ensureDeferred(self._ping())

    async def _ping(self) -> None:
        # Fails start-up (a clear error) if Redis cannot be reached at all.
        await self._call("ping", "ping")

    def close(self) -> Deferred[None]:
        # Redis persists on its own (or not at all): nothing to flush.
        pool, self._pool = self._pool, None
        if pool is None:
            return Deferred.fromCoroutine(_nothing())
        return pool.disconnect().addBoth(lambda _: None)

    # -- users ----------------------------------------------------------------

    def create_user(self, user: User) -> Deferred[User]:
        async def create() -> User:
            key = _key(user.username)
            asc, desc = _elo_members(key, user.elo)
            created = await self._eval(
                "create user",
                scripts.CREATE_USER,
                [self.k("user", key), self.k("users", "name"), self.k("users", "elo", "asc"),
                 self.k("users", "elo", "desc")],
                [_user_json(user), key, asc, desc],
            )
            if int(created) != 1:
                raise UsernameTaken(user.username)
            return user

        return ensureDeferred(create())

    def get_user(self, username: str) -> Deferred[User | None]:
        return self._call("get user", "get", self.k("user", _key(username))).addCallback(_user)

    def list_users(self, ordering: str, limit: int, offset: int) -> Deferred[list[User]]:
        assert ordering in USER_ORDERINGS

        async def select() -> list[User]:
            index = {
                "elo": self.k("users", "elo", "asc"),
                "-elo": self.k("users", "elo", "desc"),
                "username": self.k("users", "name"),
                "-username": self.k("users", "name"),
            }[ordering]
            command = "zrevrange" if ordering == "-username" else "zrange"
            members = await self._call("list users", command, index, offset, offset + limit - 1)
            keys = [self.k("user", m.rpartition(":")[2] if "elo" in ordering else m)
                    for m in members]
            return [u for u in map(_user, await self._mget(keys)) if u is not None]

        return ensureDeferred(select())

    # -- tokens ---------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> Deferred[None]:
        record = wire.encode({"username": _key(token.username), "created": _ts(token.created)})
        return self._call("add token", "set", self.k("token", token.digest),
                          record.decode()).addCallback(lambda _: None)

    def get_token(self, digest: str) -> Deferred[tuple[TokenRecord, User] | None]:
        async def select() -> tuple[TokenRecord, User] | None:
            raw = await self._call("get token", "get", self.k("token", digest))
            if raw is None:
                return None
            record = wire.decode(raw)
            user = await self.get_user(record["username"])
            if user is None:
                return None
            return TokenRecord(digest, user.username, _dt(record["created"])), user

        return ensureDeferred(select())

    def delete_token(self, digest: str) -> Deferred[bool]:
        return self._call("delete token", "delete", [self.k("token", digest)]).addCallback(
            lambda n: int(n) > 0
        )

    # -- ongoing matches ------------------------------------------------------

    def create_ongoing_match(self, host: str, created: datetime) -> Deferred[OngoingMatch]:
        async def create() -> OngoingMatch:
            match_id = int(await self._call("allocate match id", "incr", self.k("match", "next")))
            match = OngoingMatch(id=match_id, host=host, creation_timestamp=created)
            await self._call("create match", "set", self.k("ongoing", match_id),
                             ongoing_json(match))
            await self._call("index match", "zadd", self.k("ongoing"), match_id, match_id)
            return match

        return ensureDeferred(create())

    def get_ongoing_match(self, match_id: int) -> Deferred[OngoingMatch | None]:
        return self._call("get match", "get", self.k("ongoing", match_id)).addCallback(
            ongoing_record)

    def list_ongoing_matches(
        self, is_full: bool | None, is_started: bool | None, limit: int, offset: int
    ) -> Deferred[list[OngoingMatch]]:
        async def select() -> list[OngoingMatch]:
            ids = await self._call("list matches", "zrange", self.k("ongoing"), 0, -1)
            matches = [m for m in map(ongoing_record, await self._mget(
                [self.k("ongoing", i) for i in ids])) if m is not None]
            kept = [
                m for m in matches
                if (is_full is None or m.is_full == is_full)
                and (is_started is None or m.is_started == is_started)
            ]
            return kept[offset : offset + limit]

        return ensureDeferred(select())

    def update_ongoing_match(self, match: OngoingMatch) -> Deferred[None]:
        def check(replaced: Any) -> None:
            if replaced is None:
                raise NoSuchMatch(match.id)

        # SET ... XX writes only if the record still exists (not deleted meanwhile).
        d = self._call("update match", "execute_command", "SET", self.k("ongoing", match.id),
                       ongoing_json(match), "XX")
        return d.addCallback(check)

    def delete_ongoing_match(self, match_id: int) -> Deferred[bool]:
        d = self._eval("delete match", scripts.DELETE_ONGOING,
                       [self.k("ongoing", match_id), self.k("ongoing")], [match_id])
        return d.addCallback(lambda n: int(n) > 0)

    # -- completed matches ------------------------------------------------------

    def complete_match(self, outcome: MatchOutcome, rate: Rating) -> Deferred[CompletedMatch]:
        async def complete() -> CompletedMatch:
            # Optimistic: rate from the ratings read now; the script applies the
            # result only if neither rating changed meanwhile (another match of the
            # same player ending on another node), else rate again.
            for _ in range(self._MAX_RETRIES):
                winner, loser = await self.get_user(outcome.winner), await self.get_user(
                    outcome.loser
                )
                if winner is None or loser is None:
                    raise NoSuchMatch(outcome.id)
                match = rate_outcome(outcome, winner, loser, rate)
                w, l = _key(winner.username), _key(loser.username)
                old_w, old_l = _elo_members(w, winner.elo), _elo_members(l, loser.elo)
                new_w = _elo_members(w, match.winner_elo_after_match)
                new_l = _elo_members(l, match.loser_elo_after_match)
                done = int(await self._eval(
                    "complete match",
                    scripts.COMPLETE_MATCH,
                    [
                        self.k("ongoing", outcome.id), self.k("ongoing"),
                        self.k("user", w), self.k("user", l),
                        self.k("users", "elo", "asc"), self.k("users", "elo", "desc"),
                        self.k("completed", outcome.id), self.k("completed"),
                        self.k("completed", "user", w), self.k("completed", "user", l),
                    ],
                    [
                        outcome.id, winner.elo, loser.elo,
                        _user_json(attrs.evolve(winner, elo=match.winner_elo_after_match)),
                        _user_json(attrs.evolve(loser, elo=match.loser_elo_after_match)),
                        old_w[0], old_l[0], new_w[0], new_l[0],
                        old_w[1], old_l[1], new_w[1], new_l[1],
                        _completed_json(match), _completed_member(match),
                    ],
                ))
                if done == 1:
                    return match
                if done == 0:
                    raise NoSuchMatch(outcome.id)
            raise StoreError(f"match {outcome.id}: ratings kept changing, not completed")

        return ensureDeferred(complete())

    def get_completed_match(self, match_id: int) -> Deferred[CompletedMatch | None]:
        return self._call("get completed match", "get",
                          self.k("completed", match_id)).addCallback(_completed)

    def list_completed_matches(
        self, user: str | None, winner: str | None, loser: str | None, limit: int, offset: int
    ) -> Deferred[list[CompletedMatch]]:
        async def select() -> list[CompletedMatch]:
            # The narrowest index: one player's matches when a name is given.
            name = user or winner or loser
            index = self.k("completed", "user", _key(name)) if name else self.k("completed")
            members = await self._call("list completed", "zrevrange", index, 0, -1)
            ids = [int(m.rpartition(":")[2]) for m in members]
            records = await self._mget([self.k("completed", i) for i in ids])
            matches = [
                m for m in map(_completed, records)
                if m is not None and matches_filters(m, user, winner, loser)
            ]
            return matches[offset : offset + limit]

        return ensureDeferred(select())

    # -- replays ---------------------------------------------------------------

    def save_replay(self, replay: ReplayRecord) -> Deferred[None]:
        def check(saved: Any) -> None:
            if int(saved) != 1:
                raise NoSuchMatch(replay.id)

        d = self._eval("save replay", scripts.SAVE_REPLAY,
                       [self.k("completed", replay.id), self.k("replay", replay.id),
                        self.k("replays")],
                       [replay.id, _replay_json(replay), repr(replay.recorded.timestamp())])
        return d.addCallback(check)

    def get_replay(self, match_id: int) -> Deferred[ReplayRecord | None]:
        return self._call("get replay", "get", self.k("replay", match_id)).addCallback(_replay)

    def prune_replays(self, recorded_before: datetime) -> Deferred[int]:
        d = self._eval("prune replays", scripts.PRUNE_REPLAYS, [self.k("replays")],
                       [repr(recorded_before.timestamp()), self.k("replay", "")])
        return d.addCallback(int)

    # -- arenas ---------------------------------------------------------------

    def create_arena(
        self, record: ArenaRecord, max_per_owner: int, max_arenas: int
    ) -> Deferred[ArenaRecord]:
        def check(done: Any) -> ArenaRecord:
            done = int(done)
            if done == 0:
                raise ArenaTaken(record.id)
            if done < 0:
                raise TooManyArenas("owner" if done == -1 else "all")
            return record

        d = self._eval(
            "create arena", scripts.CREATE_ARENA,
            [self.k("arena", record.id), self.k("arenas"),
             self.k("arenas", "owner", _key(record.owner)), self.k("arenas", "seq")],
            [record.id, _arena_json(record), max_per_owner, max_arenas],
        )
        return d.addCallback(check)

    def get_arena(self, arena_id: str) -> Deferred[ArenaRecord | None]:
        return self._call("get arena", "get", self.k("arena", arena_id)).addCallback(_arena)

    def list_arenas(self, limit: int, offset: int) -> Deferred[list[ArenaRecord]]:
        async def select() -> list[ArenaRecord]:
            if limit <= 0:
                return []
            ids = await self._call("list arenas", "zrange", self.k("arenas"), offset,
                                   offset + limit - 1)
            records = await self._mget([self.k("arena", i) for i in ids])
            return [a for a in map(_arena, records) if a is not None]

        return ensureDeferred(select())

    def delete_arena(self, arena_id: str) -> Deferred[bool]:
        d = self._eval("delete arena", scripts.DELETE_ARENA,
                       [self.k("arena", arena_id), self.k("arenas")],
                       [arena_id, self.k("arenas", "owner", "")])
        return d.addCallback(lambda n: int(n) > 0)


async def _nothing() -> None:
    return None
