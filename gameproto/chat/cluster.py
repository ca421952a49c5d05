"""
The chat across nodes sharing one Redis (DESIGN.md §3).

- L{RedisPresence}: a name is unique per room across nodes.  Each claim records
  the node holding it; a claim whose node is dead (its heartbeat key expired) is
  free again.  While Redis is down names are checked locally only, and this node
  writes its claims back on every heartbeat, so they reappear in a Redis that
  restarted empty.
- L{RoomRelay}: what is said in a room on one node reaches the room's members on
  every node, through one bus channel per room that a node subscribes to while it
  has members there.
- Every heartbeat also looks for dead nodes: one survivor (the first to take a
  short lock) removes a dead node's names and tells their rooms that those users
  left, within the node TTL of the death.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from gameproto import redis, wire
from gameproto.bus import IBus, Subscription
from gameproto.chat.presence import IPresence, LocalPresence
from gameproto.node import Node

# KEYS: the room's name hash, this node's claim set, the set of nodes with claims.
# ARGV: name key, node id, claim entry, prefix of node heartbeat keys.
_CLAIM = """
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner then
    if owner == ARGV[2] then return 0 end
    if redis.call('EXISTS', ARGV[4] .. owner) == 1 then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
"""

# Remove a claim only if C{node} still holds it (a dead node's name may have been
# taken by a live one since).  KEYS: name hash, claim set.  ARGV: key, node, entry.
_RELEASE = """
redis.call('SREM', KEYS[2], ARGV[3])
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    redis.call('HDEL', KEYS[1], ARGV[1])
    return 1
end
return 0
"""

# Re-assert this node's claims after an outage (idempotent).  KEYS: name hash,
# claim set, nodes set.  ARGV: key, node, entry.
_REASSERT = """
if not redis.call('HGET', KEYS[1], ARGV[1]) then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
"""

REAP_LOCK_TTL = 30


def _entry(room: str, key: str, name: str) -> str:
    return wire.encode([room, key, name]).decode()


@implementer(IPresence)
class RedisPresence:
    _log = Logger()

    def __init__(self, reactor: Any, heartbeat: Node,
                 announce_left: Callable[[str, str], None]) -> None:
        self._reactor = reactor
        self._heartbeat = heartbeat
        self.node_id = heartbeat.node_id
        self._p = heartbeat.prefix
        self._announce_left = announce_left
        # Every name this node holds: what it writes back after an outage, and its
        # local check while Redis is unreachable.
        self._local = LocalPresence()
        self._names: dict[tuple[str, str], str] = {}
        heartbeat.on_beat.append(self.reassert)
        heartbeat.on_beat.append(self.reap_dead_nodes)

    def _keys(self, room: str, node: str | None = None) -> list[str]:
        return [f"{self._p}chat:names:{room}", f"{self._p}chat:claims:{node or self.node_id}",
                f"{self._p}chat:nodes"]

    def _eval(self, what: str, script: str, keys: list[str], args: list[str]) -> Deferred[Any]:
        return redis.within(self._heartbeat.pool.eval(script, keys, args), self._reactor, what)

    def claim(self, room: str, key: str, name: str = "") -> Deferred[bool]:
        return ensureDeferred(self._claim(room, key, name or key))

    async def _claim(self, room: str, key: str, name: str) -> bool:
        if not await self._local.claim(room, key):
            return False
        try:
            won = int(await self._eval(
                "claim name", _CLAIM, self._keys(room),
                [key, self.node_id, _entry(room, key, name), f"{self._p}node:"],
            )) == 1
        except redis.RedisUnavailable:
            self._log.warn("Chat: Redis unavailable, name checked on this node only")
            won = True
        if won:
            self._names[(room, key)] = name
        else:
            await self._local.release(room, key)
        return won

    def release(self, room: str, key: str) -> Deferred[None]:
        name = self._names.pop((room, key), None)
        self._local.release(room, key)
        if name is None:
            return succeed(None)
        d = self._eval("release name", _RELEASE, self._keys(room)[:2],
                       [key, self.node_id, _entry(room, key, name)])
        # A name not released (Redis down) is freed when this node's claims are
        # next compared with its sockets, or when the node dies.
        return d.addCallbacks(lambda _: None, lambda f: self._log.warn(
            "Chat: releasing a name: {why}", why=f.getErrorMessage()))

    async def reassert(self) -> None:
        for (room, key), name in list(self._names.items()):
            await self._eval("reassert name", _REASSERT, self._keys(room),
                             [key, self.node_id, _entry(room, key, name)])

    async def reap_dead_nodes(self) -> None:
        nodes = await redis.within(self._heartbeat.pool.smembers(f"{self._p}chat:nodes"),
                                   self._reactor, "chat nodes")
        for node in nodes:
            if node == self.node_id or await self._heartbeat.is_alive(node):
                continue
            locked = await redis.within(
                self._heartbeat.pool.set(f"{self._p}chat:reaping:{node}", self.node_id,
                               expire=REAP_LOCK_TTL, only_if_not_exists=True),
                self._reactor, "reap lock")
            if locked:
                await self._reap(node)

    async def _reap(self, node: str) -> None:
        claims_key = f"{self._p}chat:claims:{node}"
        entries = await redis.within(self._heartbeat.pool.smembers(claims_key), self._reactor, "claims")
        for entry in entries:
            room, key, name = wire.decode(entry)
            removed = int(await self._eval("reap name", _RELEASE,
                                           self._keys(room, node)[:2], [key, node, entry]))
            if removed:
                self._announce_left(room, name)
        await redis.within(self._heartbeat.pool.delete([claims_key]), self._reactor, "reap")
        await redis.within(self._heartbeat.pool.srem(f"{self._p}chat:nodes", node), self._reactor, "reap")
        self._log.info("Chat: node {node} is gone; {count} name(s) released",
                       node=node, count=len(entries))


class RoomRelay:
    """
    Carries a room's messages between nodes: C{publish} after a local emit, and
    C{deliver(room, payload)} is called for what other nodes said.
    """

    _log = Logger()

    def __init__(self, bus: IBus, node_id: str, deliver: Callable[[str, Any], None],
                 prefix: str = "gp:") -> None:
        self._bus = bus
        self.node_id = node_id
        self._deliver = deliver
        self._prefix = prefix
        self._members: dict[str, int] = {}
        self._subscriptions: dict[str, Deferred[Subscription]] = {}

    def channel(self, room: str) -> str:
        return f"{self._prefix}chat:room:{room}"

    def joined(self, room: str) -> None:
        self._members[room] = self._members.get(room, 0) + 1
        if self._members[room] == 1:
            self._subscriptions[room] = self._bus.subscribe(
                self.channel(room), lambda raw: self._received(room, raw)
            )

    def left(self, room: str) -> None:
        self._members[room] -= 1
        if self._members[room] == 0:
            del self._members[room]
            self._subscriptions.pop(room).addCallback(Subscription.cancel)

    def publish(self, room: str, payload: Any) -> None:
        message = wire.encode({"node": self.node_id, "payload": payload}).decode()
        self._bus.publish(self.channel(room), message).addErrback(
            lambda f: self._log.warn("Chat: relaying to other nodes failed: {why}",
                                     why=f.getErrorMessage())
        )

    def _received(self, room: str, raw: str) -> None:
        message = wire.decode(raw)
        if message.get("node") != self.node_id:  # our own was emitted locally already
            self._deliver(room, message["payload"])
