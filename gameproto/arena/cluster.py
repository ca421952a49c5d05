"""
Arenas across the nodes sharing one Redis (DESIGN.md §3, the arena bullet).

Every arena, C{default} included, runs (ticks) on exactly one node, its owner, which
holds the arena's lease: the key C{gp:arena:{id}:lease} set to the node's id with
C{SET NX PX 3000} and renewed every second by a compare-and-set script (L{gameproto.cluster.LEASE_RENEW}).  The
script extends the lease when it holds this node's id, and re-creates it when it is
absent (a Redis restarted empty, or an expiry nobody acted on), but never takes it from
another node: a stalled ex-owner whose arena was taken over finds the other node's id,
gets 0, and stops ticking that arena at once.  A renewal that fails because Redis is
unreachable stops nothing: the owner keeps ticking for its own sockets.

An owner is dead when its lease is absent: the key expires a full TTL after the last
renewal, and an absence can only be read from a reachable Redis.  The node where a
socket then connects (or a node already serving sockets of that arena) takes the lease
with C{SET NX} and starts the arena empty from its stored configuration.

A socket connected to a node that does not own its arena is served through the bus:

  - the node publishes the socket's join, commands and leave on the arena's channel
    C{gp:arena:{id}:in}, each tagged with the socket's correlation id (C{sid}, unique in
    the cluster: the node's id and a counter); commands wait until the owner has
    acknowledged the join, which is resent every second until it is;
  - the owner attaches a L{RemoteSocket} per correlation id to the arena, like a local
    socket, and publishes what the arena sends it (replies, notifications, the snapshots
    of a remote controller, closes and replacements) on the socket's node channel
    C{gp:arena:node:{node}}, batched per node and in order;
  - the socket's node writes each frame to the socket.

Every second a node checks the lease of each arena its remote sockets are attached to.
When it names another node than the owner they were routed to, or nobody (then this
node takes the lease and starts the arena empty), the owner was lost: those sockets are
closed with 1000 and the reason L{RESTARTED}; a client connects again (to any node) and
registers in the restarted arena.

Messages between nodes are JSON objects on L{gameproto.bus.IBus}: to an arena,
C{{"node", "items": [{"t": "join", "sid", "role", "user"} | {"t": "cmd", "sid", "m"} | {"t":
"leave", "sid"} | {"t": "status", "cid"} | {"t": "delete"}]}}; to a node, C{{"items":
[{"t": "frame", "sid", "p"} | {"t": "joined"|"gone"|"replaced", "sid"} | {"t":
"closed", "sid", "reason"} | {"t": "status", "cid", "arena"}]}}.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Callable, Protocol

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameproto import wire
from gameproto.arena.commands import (
    Command,
    ConfigurePlayerCommand,
    InvalidCommand,
    Move,
    MovePlayerCommand,
    PlayerShootCommand,
    RegisterPlayerCommand,
    StartGameCommand,
    parse_command,
)
from gameproto.bus import IBus, Outbox, Subscription
from gameproto.cluster import LEASE_RENEW_INTERVAL, LEASE_TTL_MS, Lease
from gameproto.store import StoreError

if TYPE_CHECKING:
    from gameproto.arena.service import Arena, ArenaService, Frame

RENEW_INTERVAL = LEASE_RENEW_INTERVAL
STATUS_TIMEOUT = 1.0

RESTARTED = "the arena's node was lost: the arena restarted empty, connect again"
MOVED = "the arena is now run by another node: it restarted empty, connect again"
SHUTTING_DOWN = "the arena's node is shutting down: connect again"
GONE = "the arena moved to another node: connect again"

# ---------------------------------------------------------------------------
# Leases


class ClusterLeases(Protocol):
    """The arena leases of one node (L{RedisLeases}, or an in-memory stand-in in tests)."""

    node_id: str

    def acquire(self, arena_id: str) -> Deferred[bool]:
        """C{SET NX}: C{True} if this node now holds the lease (nobody held it)."""

    def renew(self, arena_id: str) -> Deferred[bool]:
        """The compare-and-set renewal: C{False} if another node holds the lease."""

    def release(self, arena_id: str) -> None:
        """Delete the lease if this node holds it (best effort)."""

    def holder(self, arena_id: str) -> Deferred[str | None]:
        """The node holding the lease, or C{None}."""


class RedisLeases:
    """
    Arena leases on the nodes' shared L{Lease} scripts (key C{gp:arena:{id}:lease});
    every call fails with L{gameproto.redis.RedisUnavailable} within 1.5 s.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, node_id: str, pool: Callable[[], Any],
                 prefix: str = "gp:", ttl_ms: int = LEASE_TTL_MS) -> None:
        self.node_id = node_id
        self._prefix = prefix
        # The pool is opened when the heartbeat starts, hence a callable.
        self._lease = Lease(clock, node_id, pool, ttl_ms)

    def key(self, arena_id: str) -> str:
        return f"{self._prefix}arena:{arena_id}:lease"

    def acquire(self, arena_id: str) -> Deferred[bool]:
        return self._lease.acquire(self.key(arena_id))

    def renew(self, arena_id: str) -> Deferred[bool]:
        return self._lease.renew(self.key(arena_id))

    def release(self, arena_id: str) -> None:
        d = self._lease.release(self.key(arena_id))
        # Not released (Redis down): the lease expires by itself within its TTL.
        d.addErrback(lambda f: self._log.warn("Arena {arena}: releasing the lease: {why}",
                                              arena=arena_id, why=f.getErrorMessage()))

    def holder(self, arena_id: str) -> Deferred[str | None]:
        return self._lease.read(self.key(arena_id)).addCallback(lambda read: read[0])


# ---------------------------------------------------------------------------
# Commands on the wire


def command_json(command: Command) -> dict[str, Any]:
    """The JSON form of a parsed command: C{parse_command(command_json(c)) == c}."""
    if isinstance(command, RegisterPlayerCommand):
        return {"type": "RegisterPlayerCommand"}
    if isinstance(command, PlayerShootCommand):
        return {"type": "PlayerShootCommand"}
    if isinstance(command, StartGameCommand):
        return {"type": "StartGameCommand"}
    if isinstance(command, MovePlayerCommand):
        steps = [{"move": step.direction.value} if isinstance(step, Move)
                 else {"rotate": step.degrees} for step in command.steps]
        return {"type": "MovePlayerCommand", "data": steps}
    if isinstance(command, ConfigurePlayerCommand):
        return {"type": "ConfigurePlayerCommand",
                "data": [{"op": "radarType", "args": [radar.value]} for radar in command.radars]}
    raise TypeError(f"not a command: {command!r}")


# ---------------------------------------------------------------------------
# The owner's side: sockets of other nodes attached to a local arena


class RemoteSocket:
    """A socket of another node, attached to an arena of this node (an ArenaSocket)."""

    def __init__(self, cluster: ArenaCluster, node: str, sid: str, role: str,
                 username: str | None = None) -> None:
        self.cluster = cluster
        self.node = node
        self.sid = sid
        self.role = role
        self.username = username  # the user the socket's players are attributed to

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.sid} {self.role}>"

    def deliver(self, frame: Frame) -> None:
        self.cluster.to_node(self.node, {"t": "frame", "sid": self.sid,
                                         "p": frame.payload.decode()})

    def arenaClosed(self, reason: str) -> None:
        self.cluster.to_node(self.node, {"t": "closed", "sid": self.sid, "reason": reason})

    def replaced(self) -> None:
        self.cluster.to_node(self.node, {"t": "replaced", "sid": self.sid})


# ---------------------------------------------------------------------------
# The other side: a local socket attached to an arena of another node


class RemoteArena:
    """
    What a local socket's state machine sees of an arena another node owns: the methods
    of L{gameproto.arena.service.Arena} it calls, forwarded on the bus.  One per socket.
    """

    def __init__(self, cluster: ArenaCluster, arena_id: str, node: str,
                 owner: str | None) -> None:
        self.cluster = cluster
        self.id = arena_id
        self.node = node  # the node that runs the arena
        self.owner = owner  # the user that owns it
        self.closed = False
        self.joined = False
        self.sid = ""
        self.role = ""
        self.socket: Any = None
        self._queued: list[dict[str, Any]] = []

    # -- what the machines call ---------------------------------------------------

    def add_player(self, socket: Any) -> None:
        self._join(socket, "player")

    def set_controller(self, socket: Any) -> None:
        self._join(socket, "control")

    def remove_player(self, socket: Any) -> None:
        self._leave()

    remove_controller = remove_player

    def submit(self, socket: Any, command: Command) -> None:
        self._command(command)

    control = submit

    # -- forwarding -------------------------------------------------------------

    def _join(self, socket: Any, role: str) -> None:
        self.socket, self.role = socket, role
        self.sid = self.cluster.attach(self)
        self.send_join()

    def send_join(self) -> None:
        self.cluster.to_arena(self.id, {"t": "join", "sid": self.sid, "role": self.role,
                                        "user": getattr(self.socket, "username", None)})

    def _command(self, command: Command) -> None:
        item = {"t": "cmd", "sid": self.sid, "m": command_json(command)}
        if self.joined:
            self.cluster.to_arena(self.id, item)
        else:
            self._queued.append(item)

    def _leave(self) -> None:
        if not self.closed:
            self.closed = True
            self.cluster.detach(self)
            self.cluster.to_arena(self.id, {"t": "leave", "sid": self.sid})

    def acknowledged(self) -> None:
        if not self.joined:
            self.joined = True
            queued, self._queued = self._queued, []
            for item in queued:
                self.cluster.to_arena(self.id, item)

    def end(self, reason: str) -> None:
        """The arena is gone for this socket: it is closed with 1000 and C{reason}."""
        if not self.closed:
            self.closed = True
            self.cluster.detach(self)
            self.socket.arenaClosed(reason)


# ---------------------------------------------------------------------------
# One node's arena routing


class ArenaCluster:
    """
    The arena part of one node of a cluster: leases, the bus channels, the remote sockets
    in both directions.  L{ArenaService} calls it when it runs, stops or loses an arena.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, bus: IBus, leases: ClusterLeases, store: Any,
                 prefix: str = "gp:", renew_interval: float = RENEW_INTERVAL) -> None:
        self.clock = clock
        self.bus = bus
        self.leases = leases
        self.store = store
        self.node_id = leases.node_id
        self._prefix = prefix
        self.service: ArenaService | None = None
        self._loop = LoopingCall(self._every_second)
        self._loop.clock = clock
        self._interval = renew_interval
        self._busy = False
        self._outboxes: dict[str, Outbox] = {}
        # The owner's side: arena id → its subscription, and its remote sockets by sid.
        self._channels: dict[str, Deferred[Subscription]] = {}
        self._remote: dict[str, dict[str, RemoteSocket]] = {}
        # This node's sockets attached elsewhere, by sid.
        self._sessions: dict[str, RemoteArena] = {}
        self._sids = itertools.count(1)
        self._status: dict[str, Deferred[dict[str, Any] | None]] = {}
        self._node_subscription: Deferred[Subscription] | None = None

    # -- channels ---------------------------------------------------------------

    def arena_channel(self, arena_id: str) -> str:
        return f"{self._prefix}arena:{arena_id}:in"

    def node_channel(self, node: str) -> str:
        return f"{self._prefix}arena:node:{node}"

    def _outbox(self, channel: str, header: dict[str, Any] | None = None) -> Outbox:
        box = self._outboxes.get(channel)
        if box is None:
            box = self._outboxes[channel] = Outbox(self.bus, self.clock, channel, header)
        return box

    def to_node(self, node: str, item: dict[str, Any]) -> None:
        self._outbox(self.node_channel(node)).put(item)

    def to_arena(self, arena_id: str, item: dict[str, Any]) -> None:
        self._outbox(self.arena_channel(arena_id), {"node": self.node_id}).put(item)

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        self._node_subscription = self.bus.subscribe(self.node_channel(self.node_id),
                                                     self._node_message)
        self._loop.start(self._interval, now=False)

    def stop(self) -> Deferred[None]:
        if self._loop.running:
            self._loop.stop()
        if self._node_subscription is not None:
            self._node_subscription.addCallback(Subscription.cancel)
            self._node_subscription = None
        drained = [box.drained() for box in self._outboxes.values()]
        d = gatherResults(drained, consumeErrors=True)
        d.addTimeout(1.0, self.clock)
        return d.addBoth(lambda _: None)

    # -- the owner's side ---------------------------------------------------------

    def running(self, arena: Arena) -> None:
        """This node now runs C{arena}: listen to its channel."""
        self._remote.setdefault(arena.id, {})
        if arena.id not in self._channels:
            self._channels[arena.id] = self.bus.subscribe(
                self.arena_channel(arena.id), lambda raw: self._arena_message(arena.id, raw))

    def stopped(self, arena_id: str, release: bool) -> None:
        """This node no longer runs the arena (deleted, reaped, lost, shut down)."""
        self._remote.pop(arena_id, None)
        subscription = self._channels.pop(arena_id, None)
        if subscription is not None:
            subscription.addCallback(Subscription.cancel)
        if release:
            self.leases.release(arena_id)

    def _arena_message(self, arena_id: str, raw: str) -> None:
        assert self.service is not None
        message = wire.decode(raw)
        node = message["node"]
        for item in message["items"]:
            arena = self.service.get(arena_id)
            kind = item["t"]
            if kind == "status":
                self.to_node(node, {"t": "status", "cid": item["cid"],
                                    "arena": arena.asjson() if arena is not None else None})
            elif kind == "delete":
                if arena is not None:
                    self.service.remove_local(arena, "the arena was deleted")
            elif arena is None or arena.closed:
                if kind == "join":
                    self.to_node(node, {"t": "gone", "sid": item["sid"]})
            else:
                self._socket_item(arena, node, item)

    def _socket_item(self, arena: Arena, node: str, item: dict[str, Any]) -> None:
        remote = self._remote.setdefault(arena.id, {})
        sid, kind = item["sid"], item["t"]
        socket = remote.get(sid)
        if kind == "join":
            if socket is None:
                socket = remote[sid] = RemoteSocket(self, node, sid, item["role"],
                                                    item.get("user"))
                if socket.role == "control":
                    arena.set_controller(socket)  # type: ignore[arg-type]
                else:
                    arena.add_player(socket)  # type: ignore[arg-type]
            self.to_node(node, {"t": "joined", "sid": sid})
        elif socket is None:
            return  # left already, or joined an arena that restarted since
        elif kind == "cmd":
            try:
                command = parse_command(item["m"])
            except InvalidCommand:
                return  # checked by the socket's node already
            if socket.role == "control":
                arena.control(socket, command)  # type: ignore[arg-type]
            else:
                arena.submit(socket, command)  # type: ignore[arg-type]
        elif kind == "leave":
            del remote[sid]
            if socket.role == "control":
                arena.remove_controller(socket)  # type: ignore[arg-type]
            else:
                arena.remove_player(socket)  # type: ignore[arg-type]

    # -- the other side -------------------------------------------------------------

    def attach(self, session: RemoteArena) -> str:
        sid = f"{self.node_id}:{next(self._sids)}"
        self._sessions[sid] = session
        return sid

    def detach(self, session: RemoteArena) -> None:
        self._sessions.pop(session.sid, None)

    def remote(self, arena_id: str, node: str, owner: str | None) -> RemoteArena:
        return RemoteArena(self, arena_id, node, owner)

    def _node_message(self, raw: str) -> None:
        for item in wire.decode(raw)["items"]:
            kind = item["t"]
            if kind == "status":
                waiting = self._status.pop(item["cid"], None)
                if waiting is not None and not waiting.called:
                    waiting.callback(item["arena"])
                continue
            session = self._sessions.get(item["sid"])
            if session is None:
                continue
            if kind == "frame":
                from gameproto.arena.service import Frame

                payload = item["p"]
                frame = Frame(wire.decode(payload), payload.encode())
                try:
                    session.socket.deliver(frame)
                except Exception:
                    self._log.failure("Arena {arena}: a connection failed", arena=session.id)
            elif kind == "joined":
                session.acknowledged()
            elif kind == "closed":
                session.closed = True
                self.detach(session)
                session.socket.arenaClosed(item["reason"])
            elif kind == "replaced":
                session.closed = True
                self.detach(session)
                session.socket.replaced()
            elif kind == "gone":
                session.end(GONE)

    def status(self, arena_id: str) -> Deferred[dict[str, Any] | None]:
        """The live REST view of an arena from its owner, or C{None} after 1 s."""
        cid = f"{self.node_id}:s{next(self._sids)}"
        d: Deferred[dict[str, Any] | None] = Deferred()
        self._status[cid] = d
        self.to_arena(arena_id, {"t": "status", "cid": cid})

        def timed_out(failure: Any) -> None:
            self._status.pop(cid, None)
            return None

        d.addTimeout(STATUS_TIMEOUT, self.clock)
        return d.addErrback(timed_out)

    def delete(self, arena_id: str) -> None:
        """Tell the arena's owner that it was deleted."""
        self.to_arena(arena_id, {"t": "delete"})

    # -- every second ------------------------------------------------------------------

    def _every_second(self) -> None:
        if self._busy:
            return  # Redis is slow: the previous round has not finished
        self._busy = True
        d = ensureDeferred(self.renew_and_watch())
        d.addErrback(lambda f: self._log.failure("Arena leases", f))

        def done(_: Any) -> None:
            self._busy = False

        d.addBoth(done)

    async def renew_and_watch(self) -> None:
        """Renew the leases of the arenas run here, then check those run elsewhere."""
        assert self.service is not None
        service = self.service
        arenas = [a for a in service.arenas() if not a.closed]
        results = await gatherResults(
            [self.leases.renew(a.id).addErrback(_unavailable_is_none) for a in arenas],
            consumeErrors=True,
        )
        for arena, held in zip(arenas, results):
            if held is False and service.get(arena.id) is arena:
                self._log.warn("Arena {arena}: another node took the lease; stopping here",
                               arena=arena.id)
                service.lost(arena, MOVED)
        await self.watch()

    async def watch(self) -> None:
        """Check the owner of every arena this node's sockets are attached to elsewhere."""
        assert self.service is not None
        by_arena: dict[str, list[RemoteArena]] = {}
        for session in list(self._sessions.values()):
            by_arena.setdefault(session.id, []).append(session)
        for arena_id, sessions in by_arena.items():
            try:
                holder = await self.leases.holder(arena_id)
            except StoreError:
                continue  # an outage alone changes nothing
            for session in sessions:
                if holder == session.node:
                    if not session.joined and not session.closed:
                        session.send_join()  # the owner may not have been listening yet
                    continue
                session.end(RESTARTED)
            if holder is None:
                # The owner is dead (its lease expired): run the arena here, empty.
                try:
                    await self.service.take_over(arena_id)
                except StoreError:
                    pass


def _unavailable_is_none(failure: Any) -> None:
    failure.trap(StoreError)
    return None
