"""
What the nodes sharing one Redis know about each other.

Each node has a random id and keeps a heartbeat key C{gp:node:{id}} alive with a
10 s TTL refreshed every 3 s: a node whose key is gone is dead (it crashed, or lost
Redis for longer than the TTL).  Everything a node owns in Redis (chat names, and
later match and arena leases) is recorded against its id, so the survivors can
clean up after it.

The key is written with C{SET ... EX} on every beat rather than extended with
EXPIRE: a restarted Redis without persistence comes back empty, and the next beat
re-creates it.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from gameproto import redis

NODE_TTL = 10
BEAT_INTERVAL = 3.0


def new_node_id() -> str:
    return secrets.token_hex(8)


class Heartbeat(TimerService):
    """
    This node in the cluster: its Redis connections (C{pool}, opened when the
    service starts), and a timer that keeps the node's key alive and then runs the
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

    def startService(self) -> None:
        self.pool = redis.connection_pool(self._reactor, self.url, poolsize=2)
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
        await redis.within(
            self.pool.set(self.node_key(self.node_id), "1", expire=self.ttl),
            self._reactor, "heartbeat",
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
        exists = await redis.within(self.pool.exists(self.node_key(node_id)),
                                    self._reactor, "node liveness")
        return bool(int(exists))
