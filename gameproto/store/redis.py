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
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from zope.interface import implementer

from gameproto import redis, wire
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

_CREATE_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('ZADD', KEYS[4], 0, ARGV[4])
return 1
"""

# KEYS: ongoing record, ongoing index, winner, loser, elo asc, elo desc, completed
# record, completed index, winner's completed index, loser's completed index.
# ARGV: match id, winner's and loser's Elo the rating was computed from, their
# records after, old and new elo index members (asc w, asc l, desc w, desc l),
# completed JSON, completed index member.
# Returns 1 done, 0 no such match or player, -1 a rating changed meanwhile (retry).
_COMPLETE_MATCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local winner = redis.call('GET', KEYS[3])
local loser = redis.call('GET', KEYS[4])
if not winner or not loser then return 0 end
if tostring(cjson.decode(winner)['elo']) ~= ARGV[2] then return -1 end
if tostring(cjson.decode(loser)['elo']) ~= ARGV[3] then return -1 end
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], ARGV[5])
redis.call('ZREM', KEYS[5], ARGV[6], ARGV[7])
redis.call('ZADD', KEYS[5], 0, ARGV[8], 0, ARGV[9])
redis.call('ZREM', KEYS[6], ARGV[10], ARGV[11])
redis.call('ZADD', KEYS[6], 0, ARGV[12], 0, ARGV[13])
redis.call('SET', KEYS[7], ARGV[14])
redis.call('ZADD', KEYS[8], 0, ARGV[15])
redis.call('ZADD', KEYS[9], 0, ARGV[15])
redis.call('ZADD', KEYS[10], 0, ARGV[15])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

_DELETE_ONGOING = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""

# Matches across nodes (gameproto.match.cluster).  The roles hash maps each user
# (lower-cased) to the role they hold, "ID|ROLE|SEAT", SEAT naming the connection
# that holds it ("NODE:N") or empty when none does (a host before connecting, a
# started challenger who left).  A role whose match record is gone is free: a
# completed or dropped match frees its users without touching the hash.
#
# Create a match for a host who holds no live role.  KEYS: record, index, roles.
# ARGV: id, record JSON, host key, role value, prefix of the records.
# Returns 1 created, 0 the host holds a role.
_CREATE_HOSTED = """
local held = redis.call('HGET', KEYS[3], ARGV[3])
if held then
    local mid = string.match(held, '^(%d+)|')
    if mid and redis.call('EXISTS', ARGV[5] .. mid) == 1 then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return 1
"""

# Change a match and its users' roles in one step, only if the record is still the
# one the change was computed from.  KEYS: record, index, roles, sequence.
# ARGV: expected record JSON ('' = any), 'keep'|'set'|'delete', new JSON, prefix of
# the records, then triples (op, user key, value):
#   claim   take the role VALUE unless the user holds a live role of another match
#           or another role of this one (the same role is taken over: a newer socket);
#   mine    the user's role must be exactly VALUE;
#   release mine, then the role is freed;
#   vacate  mine, then the role is kept with no seat (VALUE without its seat);
#   free    drop the user's role if it belongs to match VALUE ("ID|").
# Returns the new sequence number (> 0), 0 no such match, -1 the record changed,
# -2 the user holds another role, -3 the role is not (or no longer) VALUE.
_CHANGE_MATCH = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if ARGV[1] ~= '' and current ~= ARGV[1] then return -1 end
for i = 5, #ARGV, 3 do
    local op, user, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local held = redis.call('HGET', KEYS[3], user)
    if op == 'claim' then
        if held and held ~= value then
            local mid, role = string.match(held, '^(%d+)|(%a+)|')
            local vmid, vrole = string.match(value, '^(%d+)|(%a+)|')
            if not (mid == vmid and role == vrole) and mid
                    and redis.call('EXISTS', ARGV[4] .. mid) == 1 then
                return -2
            end
        end
    elseif op ~= 'free' then
        if held ~= value then return -3 end
    end
end
for i = 5, #ARGV, 3 do
    local op, user, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if op == 'claim' then
        redis.call('HSET', KEYS[3], user, value)
    elseif op == 'release' then
        redis.call('HDEL', KEYS[3], user)
    elseif op == 'vacate' then
        redis.call('HSET', KEYS[3], user, string.match(value, '^(%d+|%a+|)'))
    elseif op == 'free' then
        local held = redis.call('HGET', KEYS[3], user)
        if held and string.sub(held, 1, #value) == value then
            redis.call('HDEL', KEYS[3], user)
        end
    end
end
if ARGV[2] == 'set' then
    redis.call('SET', KEYS[1], ARGV[3])
elseif ARGV[2] == 'delete' then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], string.match(ARGV[3], '^(%d+)'))
end
return redis.call('INCR', KEYS[4])
"""

# A user's live role: "ID|ROLE|SEAT", or '' (none, or its match is gone).
# KEYS: roles.  ARGV: user key, prefix of the records.
_MATCH_ROLE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return '' end
local mid = string.match(held, '^(%d+)|')
if mid and redis.call('EXISTS', ARGV[2] .. mid) == 1 then return held end
return ''
"""

# KEYS: the arena record, the index (sorted by creation), the owner's set, the sequence.
# ARGV: id, record JSON, max per owner, max in all.
# Returns 1 created, 0 the id is taken, -1 the owner has too many, -2 too many in all.
_CREATE_ARENA = """
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return -2 end
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[3]) then return -1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

# KEYS: the arena record, the index.  ARGV: id, prefix of the owners' sets.
_DELETE_ARENA = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
redis.call('SREM', ARGV[2] .. cjson.decode(raw)['owner_key'], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"""


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


def _ongoing_json(match: OngoingMatch) -> str:
    record = attrs.asdict(match)
    record["creation_timestamp"] = _ts(match.creation_timestamp)
    record["start_timestamp"] = _ts(match.start_timestamp)
    record["spectators"] = list(match.spectators)
    return wire.encode(record).decode()


def _ongoing(raw: str | None) -> OngoingMatch | None:
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
                _CREATE_USER,
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
                             _ongoing_json(match))
            await self._call("index match", "zadd", self.k("ongoing"), match_id, match_id)
            return match

        return ensureDeferred(create())

    def get_ongoing_match(self, match_id: int) -> Deferred[OngoingMatch | None]:
        return self._call("get match", "get", self.k("ongoing", match_id)).addCallback(_ongoing)

    def list_ongoing_matches(
        self, is_full: bool | None, is_started: bool | None, limit: int, offset: int
    ) -> Deferred[list[OngoingMatch]]:
        async def select() -> list[OngoingMatch]:
            ids = await self._call("list matches", "zrange", self.k("ongoing"), 0, -1)
            matches = [m for m in map(_ongoing, await self._mget(
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
                       _ongoing_json(match), "XX")
        return d.addCallback(check)

    def delete_ongoing_match(self, match_id: int) -> Deferred[bool]:
        d = self._eval("delete match", _DELETE_ONGOING,
                       [self.k("ongoing", match_id), self.k("ongoing")], [match_id])
        return d.addCallback(lambda n: int(n) > 0)

    # -- ongoing matches across nodes (gameproto.match.cluster) ----------------
    #
    # update_ongoing_match replaces a whole record: right for one node, which is
    # the only writer of its matches, but two nodes admitting sockets of one match
    # at once would each overwrite the other's join.  Across nodes every change
    # goes through change_ongoing_match instead: a compare-and-set of the record
    # together with the users' roles (one match per user across the nodes).

    @property
    def pool(self) -> Any:
        """The connection pool (opened by C{start}), for scripts of other modules."""
        return self._pool

    def create_hosted_match(self, host: str, created: datetime,
                            seat: str = "") -> Deferred[OngoingMatch | None]:
        """A new match hosted by C{host}, or C{None} if C{host} holds a live role."""
        async def create() -> OngoingMatch | None:
            match_id = int(await self._call("allocate match id", "incr", self.k("match", "next")))
            match = OngoingMatch(id=match_id, host=host, creation_timestamp=created)
            done = await self._eval(
                "create match", _CREATE_HOSTED,
                [self.k("ongoing", match_id), self.k("ongoing"), self.k("match", "roles")],
                [match_id, _ongoing_json(match), _key(host), f"{match_id}|host|{seat}",
                 self.k("ongoing", "")],
            )
            return match if int(done) == 1 else None

        return ensureDeferred(create())

    def change_ongoing_match(
        self, match_id: int, expected: OngoingMatch | None, mode: str,
        new: OngoingMatch | None, roles: list[tuple[str, str, str]],
    ) -> Deferred[int]:
        """
        See L{_CHANGE_MATCH}: C{roles} are (op, username, value) triples; fires with
        the change's sequence number (> 0) or the script's failure code (<= 0).
        """
        assert mode in ("keep", "set", "delete")
        args: list[Any] = [
            "" if expected is None else _ongoing_json(expected), mode,
            _ongoing_json(new) if new is not None else str(match_id),
            self.k("ongoing", ""),
        ]
        for op, username, value in roles:
            args += [op, _key(username), value]
        d = self._eval("change match", _CHANGE_MATCH,
                       [self.k("ongoing", match_id), self.k("ongoing"),
                        self.k("match", "roles"), self.k("match", "seq")], args)
        return d.addCallback(int)

    def match_role(self, username: str) -> Deferred[str | None]:
        """The live role of C{username} as "ID|ROLE|SEAT", or C{None}."""
        d = self._eval("match role", _MATCH_ROLE, [self.k("match", "roles")],
                       [_key(username), self.k("ongoing", "")])
        return d.addCallback(lambda held: held or None)

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
                    _COMPLETE_MATCH,
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
            "create arena", _CREATE_ARENA,
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
        d = self._eval("delete arena", _DELETE_ARENA,
                       [self.k("arena", arena_id), self.k("arenas")],
                       [arena_id, self.k("arenas", "owner", "")])
        return d.addCallback(lambda n: int(n) > 0)


async def _nothing() -> None:
    return None
