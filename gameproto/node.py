"""
This server among the nodes sharing one Redis: its id, its Redis connections and
its heartbeat.  One L{Node} is built per server (with a Redis store) and handed to
whatever must know about the other nodes: chat presence, and the ownership of
matches and arenas (L{gameproto.ownership}).  Nothing else opens a pool for
cluster work.

Each node has a random id and keeps a heartbeat key C{gp:node:{id}} alive with a
10 s TTL refreshed every 3 s: a node whose key is gone is dead (it crashed, or lost
Redis for longer than the TTL).  The chat names a node holds are recorded against
its id, so that the survivors can clean up after it; matches and arenas are held
under leases instead (L{gameproto.ownership}), which expire by themselves.

The key is written with C{SET ... EX} on every beat rather than extended with
EXPIRE: a restarted Redis without persistence comes back empty, and the next beat
re-creates it.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable, TypeVar

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from gameproto import redis
from gameproto.ownership import Ownership, RedisLeaseTable

T = TypeVar("T")

NODE_TTL = 10
BEAT_INTERVAL = 3.0


def new_node_id() -> str:
    return secrets.token_hex(8)


class Node(TimerService):
    """
    This node in the cluster: its id, its Redis connections (C{pool}, opened when
    the service starts; L{within} bounds a command on it), and a timer that keeps the node's key alive and then runs the
    C{on_beat} callbacks (re-asserting what the node owns, looking for dead nodes).
    A beat that fails (Redis down) is logged once per outage and retried on the
    next interval.
    """

    _log = Logger()

    def __init__(self, reactor: Any, url: redis.RedisURL, node_id: str | None = None,
                 prefix: str = "gp:", interval: float = BEAT_INTERVAL,
                 ttl: int = NODE_TTL) -> None:
        super().__init__(interval, self._beat)
        self.clock = reactor
        self._reactor = reactor
        self.url = url
        self.pool: Any = None
        self.node_id = node_id or new_node_id()
        self.prefix = prefix
        self.ttl = ttl
        self.on_beat: list[Callable[[], Deferred[Any]]] = []
        self._failing = False
        # Told of every command the pool sends (the metrics), when set before start.
        self.observe_command: redis.CommandObserver | None = None

    def startService(self) -> None:
        self.pool = redis.connection_pool(self._reactor, self.url, poolsize=2,
                                          observe=self.observe_command)
        super().startService()

    def stopService(self) -> Deferred[None]:
        stopped = super().stopService()
        pool, self.pool = self.pool, None

        def disconnect(_: Any) -> Any:
            return pool.disconnect() if pool is not None else None

        return stopped.addCallback(disconnect).addBoth(lambda _: None)

    def node_key(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def _beat(self) -> Deferred[None]:
        return ensureDeferred(self.beat()).addErrback(self._failed)

    async def beat(self) -> None:
        await self.within(
            self.pool.set(self.node_key(self.node_id), "1", expire=self.ttl), "heartbeat"
        )
        if self._failing:
            self._failing = False
            self._log.info("Node {node}: Redis reachable again", node=self.node_id)
        for callback in self.on_beat:
            await callback()

    def _failed(self, failure: Any) -> None:
        if failure.check(redis.RedisUnavailable):
            if not self._failing:
                self._failing = True
                self._log.warn("Node {node}: heartbeat failed: {why}", node=self.node_id,
                               why=failure.getErrorMessage())
            return
        self._log.failure("Node {node}: heartbeat", failure, node=self.node_id)

    async def is_alive(self, node_id: str) -> bool:
        exists = await self.within(self.pool.exists(self.node_key(node_id)), "node liveness")
        return bool(int(exists))

    def within(self, d: Deferred[T], what: str) -> Deferred[T]:
        """C{d}, a command on L{pool}, failing with L{redis.RedisUnavailable} within 1.5 s."""
        return redis.within(d, self._reactor, what)

    def ownership(self, kind: str) -> Ownership:
        """Who runs each thing of C{kind} (C{"match"}, C{"arena"}) among these nodes."""
        table = RedisLeaseTable(self._reactor, lambda: self.pool)
        return Ownership(table, self.node_id, self._reactor, kind, prefix=self.prefix)
