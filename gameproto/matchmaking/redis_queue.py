"""
The matchmaking queue of the nodes sharing one Redis (L{IMatchQueue}).

Every ticket is one field of the hash C{gp:matchmaking:tickets}, keyed by the
lower-cased username, its value the ticket's JSON (L{ticket_json}).  Every change
is one Lua script that reads the tickets it needs, checks them and writes them
back: Redis runs it without interleaving, so that of a user leaving and the
matcher pairing them only one happens, and a pair's two tickets always change
together (no ticket lost, none in two pairs).  The matcher's scripts first check
that the calling node holds the matcher's lease (C{gp:matchmaking:matcher:lease},
L{gameproto.ownership}): a matcher that stalled past its lease changes nothing.

The scripts apply exactly the transitions of L{gameproto.matchmaking.rules}
(C{tests/test_matchmaking_queue.py} runs one contract against this queue and the
memory one).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from gameproto import wire
from gameproto.matchmaking.queue import Expired, IMatchQueue, Joined, Left
from gameproto.matchmaking.rules import MatchRole, Ticket, TicketState
from gameproto.node import Node

_STATES = {TicketState.WAITING: "w", TicketState.PAIRING: "p", TicketState.MATCHED: "m"}
_STATE_OF = {code: state for state, code in _STATES.items()}


def ticket_json(ticket: Ticket) -> str:
    """C{{"u", "e", "s", "st": "w"|"p"|"m", "f"?, "p"?, "r"?, "m"?, "d"?, "seat"?}}."""
    d: dict[str, Any] = {"u": ticket.username, "e": ticket.elo, "s": ticket.since,
                         "st": _STATES[ticket.state]}
    if ticket.front:
        d["f"] = 1
    if ticket.partner is not None:
        d["p"] = ticket.partner
    if ticket.role is not None:
        d["r"] = ticket.role.value
    if ticket.match_id is not None:
        d["m"] = ticket.match_id
    if ticket.deadline is not None:
        d["d"] = ticket.deadline
    if ticket.seated:
        d["seat"] = 1
    return wire.encode(d).decode()


def parse_ticket(raw: str) -> Ticket:
    d = wire.decode(raw)
    return Ticket(
        username=d["u"], elo=int(d["e"]), since=float(d["s"]), state=_STATE_OF[d["st"]],
        front=bool(d.get("f")), partner=d.get("p"),
        role=MatchRole(d["r"]) if d.get("r") else None,
        match_id=int(d["m"]) if d.get("m") is not None else None,
        deadline=float(d["d"]) if d.get("d") is not None else None,
        seated=bool(d.get("seat")),
    )


# A ticket back in the queue, in Lua: at the front (ARGV) or where it was.
_LUA_WAITING = """
local function waiting(t, front)
    local w = {u = t.u, e = t.e, s = t.s, st = 'w'}
    if front or t.f == 1 then w.f = 1 end
    return cjson.encode(w)
end
local function pair(host, challenger, state)
    local a = redis.call('HGET', KEYS[1], host)
    local b = redis.call('HGET', KEYS[1], challenger)
    if not a or not b then return nil end
    a, b = cjson.decode(a), cjson.decode(b)
    if a.st ~= state or b.st ~= state or a.p ~= challenger or b.p ~= host then return nil end
    return a, b
end
"""

# KEYS: tickets.  ARGV: key, ticket.  Returns {1, ticket} queued, {0, existing}.
_JOIN = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {0, existing} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, ARGV[2]}
"""

# KEYS: tickets.  ARGV: key.  Returns {} or {removed, requeued partner or ''}.
_LEAVE = _LUA_WAITING + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {} end
redis.call('HDEL', KEYS[1], ARGV[1])
local t = cjson.decode(raw)
local requeued = ''
if t.p then
    local other = redis.call('HGET', KEYS[1], t.p)
    if other then
        local p = cjson.decode(other)
        if p.p == ARGV[1] then
            requeued = waiting(p, true)
            redis.call('HSET', KEYS[1], t.p, requeued)
        end
    end
end
return {raw, requeued}
"""

_FENCE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
"""

# KEYS: tickets, lease.  ARGV: node, host, challenger.  1 claimed, 0 not, -1 no lease.
_CLAIM = _FENCE + """
local a = redis.call('HGET', KEYS[1], ARGV[2])
local b = redis.call('HGET', KEYS[1], ARGV[3])
if not a or not b then return 0 end
a, b = cjson.decode(a), cjson.decode(b)
if a.st ~= 'w' or b.st ~= 'w' then return 0 end
a.st, a.p, a.r = 'p', ARGV[3], 'host'
b.st, b.p, b.r = 'p', ARGV[2], 'challenger'
redis.call('HSET', KEYS[1], ARGV[2], cjson.encode(a), ARGV[3], cjson.encode(b))
return 1
"""

# KEYS: tickets, lease.  ARGV: node, host, challenger, match id, deadline.
_COMMIT = _FENCE + _LUA_WAITING + """
local a, b = pair(ARGV[2], ARGV[3], 'p')
if not a then return 0 end
for _, t in ipairs({a, b}) do
    t.st, t.m, t.d = 'm', tonumber(ARGV[4]), tonumber(ARGV[5])
end
redis.call('HSET', KEYS[1], ARGV[2], cjson.encode(a), ARGV[3], cjson.encode(b))
return 1
"""

# KEYS: tickets, lease.  ARGV: node, host, challenger.
_RELEASE = _FENCE + _LUA_WAITING + """
local a, b = pair(ARGV[2], ARGV[3], 'p')
if not a then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], waiting(a, false), ARGV[3], waiting(b, false))
return 1
"""

# KEYS: tickets.  ARGV: key, match id.  0 not that match's, 1 seated, 2 both: done.
_SEATED = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local t = cjson.decode(raw)
if t.st ~= 'm' or t.m ~= tonumber(ARGV[2]) then return 0 end
if t.p then
    local other = redis.call('HGET', KEYS[1], t.p)
    if other then
        local p = cjson.decode(other)
        if p.seat == 1 and p.m == t.m then
            redis.call('HDEL', KEYS[1], ARGV[1], t.p)
            return 2
        end
    end
end
t.seat = 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(t))
return 1
"""

# KEYS: tickets, lease.  ARGV: node, host, challenger, match id.
# Returns -1 no lease, 0 not that pair, or {'x'..removed | 'q'..requeued, ...}.
_EXPIRE = _FENCE + _LUA_WAITING + """
local a, b = pair(ARGV[2], ARGV[3], 'm')
if not a or a.m ~= tonumber(ARGV[4]) then return 0 end
local out = {}
for i, t in ipairs({a, b}) do
    local key = ARGV[i + 1]
    if t.seat == 1 then
        local w = waiting(t, true)
        redis.call('HSET', KEYS[1], key, w)
        table.insert(out, 'q' .. w)
    else
        redis.call('HDEL', KEYS[1], key)
        table.insert(out, 'x' .. cjson.encode(t))
    end
end
return out
"""


@implementer(IMatchQueue)
class RedisMatchQueue:
    """The shared queue, on the node's Redis connections; C{lease_key} is the matcher's lease."""

    def __init__(self, node: Node, lease_key: str) -> None:
        self.node = node
        self.key = f"{node.prefix}matchmaking:tickets"
        self.lease_key = lease_key

    def _eval(self, what: str, script: str, args: list[Any], fenced: bool = False
              ) -> Deferred[Any]:
        keys = [self.key, self.lease_key] if fenced else [self.key]
        return self.node.within(self.node.pool.eval(script, keys, [str(a) for a in args]),
                                f"matchmaking {what}")

    def open(self) -> Deferred[None]:
        return Deferred.fromCoroutine(_nothing())

    def close(self) -> Deferred[None]:
        return Deferred.fromCoroutine(_nothing())

    async def _join(self, ticket: Ticket) -> Joined:
        created, raw = await self._eval("join", _JOIN, [ticket.key, ticket_json(ticket)])
        return Joined(parse_ticket(raw), int(created) == 1)

    def join(self, ticket: Ticket) -> Deferred[Joined]:
        return Deferred.fromCoroutine(self._join(ticket))

    async def _get(self, key: str) -> Ticket | None:
        raw = await self.node.within(self.node.pool.hget(self.key, key), "matchmaking ticket")
        return None if raw is None else parse_ticket(raw)

    def get(self, key: str) -> Deferred[Ticket | None]:
        return Deferred.fromCoroutine(self._get(key))

    async def _all(self) -> list[Ticket]:
        raw = await self.node.within(self.node.pool.hgetall(self.key), "matchmaking queue")
        return [parse_ticket(value) for value in raw.values()]

    def all(self) -> Deferred[list[Ticket]]:
        return Deferred.fromCoroutine(self._all())

    async def _leave(self, key: str) -> Left | None:
        result = await self._eval("leave", _LEAVE, [key])
        if not result:
            return None
        removed, requeued = result
        return Left(parse_ticket(removed), parse_ticket(requeued) if requeued else None)

    def leave(self, key: str) -> Deferred[Left | None]:
        return Deferred.fromCoroutine(self._leave(key))

    def claim(self, host: str, challenger: str, node: str) -> Deferred[bool]:
        d = self._eval("claim", _CLAIM, [node, host, challenger], fenced=True)
        return d.addCallback(lambda n: int(n) == 1)

    def commit(self, host: str, challenger: str, match_id: int, deadline: float,
               node: str) -> Deferred[bool]:
        d = self._eval("commit", _COMMIT, [node, host, challenger, match_id, repr(deadline)],
                       fenced=True)
        return d.addCallback(lambda n: int(n) == 1)

    def release(self, host: str, challenger: str, node: str) -> Deferred[bool]:
        d = self._eval("release", _RELEASE, [node, host, challenger], fenced=True)
        return d.addCallback(lambda n: int(n) == 1)

    def seated(self, key: str, match_id: int) -> Deferred[bool]:
        d = self._eval("seat", _SEATED, [key, match_id])
        return d.addCallback(lambda n: int(n) > 0)

    def expire(self, host: str, challenger: str, match_id: int, node: str
               ) -> Deferred[Expired | None]:
        def parsed(result: Any) -> Expired | None:
            if not isinstance(result, list):
                return None
            removed = tuple(parse_ticket(r[1:]) for r in result if r.startswith("x"))
            requeued = tuple(parse_ticket(r[1:]) for r in result if r.startswith("q"))
            return Expired(removed, requeued)

        d = self._eval("expiry", _EXPIRE, [node, host, challenger, match_id], fenced=True)
        return d.addCallback(parsed)


async def _nothing() -> None:
    return None
