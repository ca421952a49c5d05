"""
The match directory of the nodes sharing one Redis
(L{gameproto.match.directory.IMatchDirectory}).

The records are the Redis store's (C{gp:ongoing:{id}}, indexed in C{gp:ongoing},
ids from C{gp:match:next}; encoded by L{gameproto.store.redis.ongoing_json}): the
REST API reads them through the store, and the store's C{complete_match} removes a
record atomically with the rating.  This module adds the users' roles, a hash
C{gp:match:roles} from user (lower-cased) to the JSON of their L{Place}
(C{{"match", "role", "node"?, "number"?}}, the seat's fields absent when no
connection holds it), and the sequence C{gp:match:seq}.  Each creation and each
change is one Lua script on the L{gameproto.node.Node}'s connections: Redis runs it
without interleaving, so the check and the change are one step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from zope.interface import implementer

from gameproto import wire
from gameproto.match.directory import (
    Changed,
    Conflict,
    IMatchDirectory,
    Place,
    SeatRef,
    Step,
)
from gameproto.match.frames import Role
from gameproto.node import Node
from gameproto.store import CompletedMatch, IStore, MatchOutcome, OngoingMatch, Rating
from gameproto.store.redis import ongoing_json

# A role is live while its match's record exists: a completed or dropped match frees
# its users without touching the hash.

# Create a match for a host who holds no live role.  KEYS: record, index, roles.
# ARGV: id, record JSON, host key, host's place JSON, prefix of the records.
# Returns 1 created, 0 the host holds a live role.
_CREATE = """
local held = redis.call('HGET', KEYS[3], ARGV[3])
if held and redis.call('EXISTS', ARGV[5] .. cjson.decode(held)['match']) == 1 then
    return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return 1
"""

# Change a match, and one user's role, if the record is still the one the change was
# computed from.  KEYS: record, index, roles, sequence.  ARGV: expected record JSON,
# 'keep'|'set'|'delete', new record JSON (or the id, to delete), prefix of the
# records, the role op ('' for none; RoleOp's values), user key, place JSON, the place
# vacated (JSON), then the users whose roles in this match a delete frees.
# Returns the change's sequence number (> 0), or 0 gone, -1 stale, -2 elsewhere,
# -3 not mine.
_CHANGE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current ~= ARGV[1] then return -1 end
local op, user = ARGV[5], ARGV[6]
if op ~= '' then
    local place = cjson.decode(ARGV[7])
    local raw = redis.call('HGET', KEYS[3], user)
    local held = raw and cjson.decode(raw)
    if held and redis.call('EXISTS', ARGV[4] .. held['match']) == 0 then held = nil end
    if op == 'take' then
        if held and (held['match'] ~= place['match'] or held['role'] ~= place['role']) then
            return -2
        end
        redis.call('HSET', KEYS[3], user, ARGV[7])
    else
        if not held or held['match'] ~= place['match'] or held['role'] ~= place['role']
                or held['node'] ~= place['node'] or held['number'] ~= place['number'] then
            return -3
        end
        if op == 'release' then
            redis.call('HDEL', KEYS[3], user)
        elseif op == 'vacate' then
            redis.call('HSET', KEYS[3], user, ARGV[8])
        end
    end
end
if ARGV[2] == 'set' then
    redis.call('SET', KEYS[1], ARGV[3])
elseif ARGV[2] == 'delete' then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], ARGV[3])
    for i = 9, #ARGV do
        local raw = redis.call('HGET', KEYS[3], ARGV[i])
        if raw and cjson.decode(raw)['match'] == tonumber(ARGV[3]) then
            redis.call('HDEL', KEYS[3], ARGV[i])
        end
    end
end
return redis.call('INCR', KEYS[4])
"""

# A user's live place (JSON), or ''.  KEYS: roles.  ARGV: user key, prefix of the records.
_PLACE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and redis.call('EXISTS', ARGV[2] .. cjson.decode(held)['match']) == 1 then
    return held
end
return ''
"""

_CONFLICTS = {0: Conflict.GONE, -1: Conflict.STALE, -2: Conflict.ELSEWHERE, -3: Conflict.NOT_MINE}

# Upper bound of one listing (every ongoing match is one key; the store filters).
_ALL = 1_000_000


def place_json(place: Place) -> str:
    fields: dict[str, Any] = {"match": place.match_id, "role": place.role.value}
    if place.seat is not None:
        fields["node"], fields["number"] = place.seat.node, place.seat.number
    return wire.encode(fields).decode()


def place_from_json(raw: str) -> Place:
    fields = wire.decode(raw)
    seat = SeatRef(fields["node"], fields["number"]) if "node" in fields else None
    return Place(fields["match"], Role(fields["role"]), seat)


def _names(record: OngoingMatch) -> list[str]:
    """Every user holding a role in the match, as the roles hash keys them."""
    names = [record.host, *([record.challenger] if record.challenger else []),
             *record.spectators]
    return [name.lower() for name in names]


@implementer(IMatchDirectory)
class RedisMatchDirectory:
    """
    C{store} is the Redis store the records belong to (reads, completion); C{node}
    gives the connections for the scripts and tells which nodes are alive.
    """

    def __init__(self, node: Node, store: IStore) -> None:
        self.node = node
        self.store = store
        p = node.prefix
        self._records, self._index = f"{p}ongoing:", f"{p}ongoing"
        self._next_id, self._roles, self._seq = f"{p}match:next", f"{p}match:roles", f"{p}match:seq"

    def _eval(self, what: str, script: str, keys: list[str], args: list[Any]) -> Deferred[Any]:
        return self.node.within(self.node.pool.eval(script, keys, [str(a) for a in args]), what)

    def open(self) -> Deferred[None]:
        return succeed(None)  # nothing to load: every read asks Redis

    def close(self) -> Deferred[None]:
        return succeed(None)  # every change was one script, done when answered

    # -- reads -----------------------------------------------------------------------

    def get(self, match_id: int) -> Deferred[OngoingMatch | None]:
        return self.store.get_ongoing_match(match_id)

    def matches(self, started: bool | None) -> Deferred[list[OngoingMatch]]:
        return self.store.list_ongoing_matches(None, started, _ALL, 0)

    def place(self, username: str) -> Deferred[Place | None]:
        d = self._eval("match role", _PLACE, [self._roles], [username.lower(), self._records])
        return d.addCallback(lambda held: place_from_json(held) if held else None)

    def seat_alive(self, seat: SeatRef) -> Deferred[bool]:
        return ensureDeferred(self.node.is_alive(seat.node))

    # -- changes ---------------------------------------------------------------------

    def create(self, host: str, created: datetime) -> Deferred[OngoingMatch | None]:
        return ensureDeferred(self._create(host, created))

    async def _create(self, host: str, created: datetime) -> OngoingMatch | None:
        match_id = int(await self.node.within(self.node.pool.incr(self._next_id),
                                              "allocate match id"))
        record = OngoingMatch(id=match_id, host=host, creation_timestamp=created)
        done = await self._eval(
            "create match", _CREATE, [self._records + str(match_id), self._index, self._roles],
            [match_id, ongoing_json(record), host.lower(),
             place_json(Place(match_id, Role.HOST)), self._records],
        )
        return record if int(done) == 1 else None

    def change(self, expected: OngoingMatch, step: Step) -> Deferred[Changed | Conflict]:
        if step.record is None:
            mode, new = "delete", str(expected.id)
        elif step.record == expected:
            mode, new = "keep", ""
        else:
            mode, new = "set", ongoing_json(step.record)
        args: list[Any] = [ongoing_json(expected), mode, new, self._records]
        role = step.role
        if role is None:
            args += ["", "", "", ""]
        else:
            args += [role.op.value, role.username.lower(), place_json(role.place),
                     place_json(role.place.vacated())]
        if step.record is None:
            args += _names(expected)
        d = self._eval("change match", _CHANGE,
                       [self._records + str(expected.id), self._index, self._roles, self._seq],
                       args)

        def result(code: Any) -> Changed | Conflict:
            code = int(code)
            if code > 0:
                return Changed(expected, step.record, code)
            return _CONFLICTS[code]

        return d.addCallback(result)

    def complete(self, outcome: MatchOutcome, rate: Rating) -> Deferred[CompletedMatch]:
        # The store's script removes the record with the rating: the roles are free.
        return self.store.complete_match(outcome, rate)

    def drop(self, match_id: int) -> Deferred[bool]:
        return self.store.delete_ongoing_match(match_id)

