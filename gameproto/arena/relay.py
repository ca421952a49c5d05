"""
How the frames of an arena reach sockets of other nodes (DESIGN.md §3, the arena bullet).

L{ArenaService} runs each arena on one node; a socket may connect to any.  The service
asks an L{IArenaRelay} for what crosses nodes: L{LocalRelay} on a single node (every
socket is local: nothing crosses), L{BusRelay} when several nodes share a bus.

A socket connected to a node that does not run its arena is served through the bus:

  - its node (holding a L{RemoteArena}, one per socket) publishes the socket's join,
    commands and leave on the arena's channel C{gp:arena:{id}:in}, each tagged with the
    socket's correlation id (C{sid}, unique in the cluster: the node's id and a counter);
    commands wait until the owner has acknowledged the join, which the service resends
    every second until it is;
  - the owner attaches a L{RemoteSocket} per correlation id to the arena, like a local
    socket, and publishes what the arena sends it (replies, notifications, the snapshots
    of a remote controller, closes and replacements) on the socket's node channel
    C{gp:arena:node:{node}}, batched per node and in order;
  - the socket's node writes each frame to the socket.

Messages between nodes are JSON objects on L{gameproto.bus.IBus}: to an arena,
C{{"node", "items": [{"t": "join", "sid", "role", "user"} | {"t": "cmd", "sid", "m"} | {"t":
"leave", "sid"} | {"t": "status", "cid"} | {"t": "delete"}]}}; to a node, C{{"items":
[{"t": "frame", "sid", "p"} | {"t": "joined"|"gone"|"replaced", "sid"} | {"t":
"closed", "sid", "reason"} | {"t": "status", "cid", "arena"}]}}.
"""

from __future__ import annotations

import enum
import itertools
from typing import Any, Callable

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from gameproto import wire
from gameproto.arena.arena import Arena, ArenaSocket, Frame
from gameproto.arena.commands import Command, InvalidCommand, command_json, parse_command
from gameproto.arena.directory import ArenaEntry
from gameproto.bus import IBus, Outbox, Subscription

STATUS_TIMEOUT = 1.0
#: Why a socket attached to an arena of another node is closed when that arena is gone.
GONE = "the arena moved to another node: connect again"


class Role(enum.Enum):
    """What a socket is in an arena (its value is the one on the bus)."""

    PLAYER = "player"
    CONTROLLER = "control"


class IArenaRelay(Interface):
    """What crosses nodes for the arenas of L{gameproto.arena.service.ArenaService}."""

    def start() -> None:
        """Start listening to this node's channel."""

    def stop() -> "Deferred[None]":
        """Stop listening; fires when what was queued for other nodes is sent (1 s at most)."""

    def serve(arena: Arena, deleted: Callable[[Arena], None]) -> None:
        """
        This node now runs C{arena}: attach the sockets of other nodes to it.  C{deleted}
        is called when another node deleted it.
        """

    def unserve(arena_id: str) -> None:
        """This node no longer runs C{arena_id} (deleted, reaped, lost, shut down)."""

    def remote(entry: ArenaEntry, node: str) -> "RemoteArena":
        """A handle for one socket of this node on C{entry}, which C{node} runs."""

    def remote_sessions() -> "list[RemoteArena]":
        """This node's sockets attached to arenas of other nodes, open ones only."""

    def status(arena_id: str) -> "Deferred[dict[str, Any] | None]":
        """The live REST view of C{arena_id} from the node running it; C{None} after 1 s."""

    def deleted(arena_id: str) -> None:
        """Tell the node running C{arena_id} that it was deleted."""


@implementer(IArenaRelay)
class LocalRelay:
    """A single node's: every socket is attached here, nothing crosses."""

    def start(self) -> None:
        pass

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def serve(self, arena: Arena, deleted: Callable[[Arena], None]) -> None:
        pass

    def unserve(self, arena_id: str) -> None:
        pass

    def remote(self, entry: ArenaEntry, node: str) -> RemoteArena:
        raise RuntimeError(f"arena {entry.id}: run by {node}, but this node is alone")

    def remote_sessions(self) -> list[RemoteArena]:
        return []

    def status(self, arena_id: str) -> Deferred[dict[str, Any] | None]:
        return succeed(None)

    def deleted(self, arena_id: str) -> None:
        pass


# ---------------------------------------------------------------------------
# The owner's side: sockets of other nodes attached to a local arena


class RemoteSocket:
    """A socket of another node, attached to an arena of this node (an ArenaSocket)."""

    def __init__(self, relay: BusRelay, node: str, sid: str, role: Role,
                 username: str | None = None) -> None:
        self.relay = relay
        self.node = node
        self.sid = sid
        self.role = role
        self.username = username  # the user the socket's players are attributed to

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.sid} {self.role.value}>"

    def deliver(self, frame: Frame) -> None:
        self.relay.to_node(self.node, {"t": "frame", "sid": self.sid,
                                       "p": frame.payload.decode()})

    def arenaClosed(self, reason: str) -> None:
        self.relay.to_node(self.node, {"t": "closed", "sid": self.sid, "reason": reason})

    def replaced(self) -> None:
        self.relay.to_node(self.node, {"t": "replaced", "sid": self.sid})


# ---------------------------------------------------------------------------
# The other side: a local socket attached to an arena of another node


class RemoteArena:
    """
    What a local socket's state machine sees of an arena another node runs: an
    L{ArenaHandle} whose calls are forwarded on the bus.  One per socket.
    """

    def __init__(self, relay: BusRelay, entry: ArenaEntry, node: str) -> None:
        self.relay = relay
        self.id = entry.id
        self.owner = entry.owner  # the user that owns it
        self.node = node  # the node that runs the arena
        self.closed = False
        self.joined = False
        self.sid = ""
        self.role = Role.PLAYER
        self.socket: Any = None
        self._queued: list[dict[str, Any]] = []

    # -- ArenaHandle -------------------------------------------------------------

    def add_player(self, socket: ArenaSocket) -> None:
        self._join(socket, Role.PLAYER)

    def set_controller(self, socket: ArenaSocket) -> None:
        self._join(socket, Role.CONTROLLER)

    def remove_player(self, socket: ArenaSocket) -> None:
        if not self.closed:
            self.closed = True
            self.relay.detach(self)
            self.relay.to_arena(self.id, {"t": "leave", "sid": self.sid})

    remove_controller = remove_player

    def submit(self, socket: ArenaSocket, command: Command) -> None:
        item = {"t": "cmd", "sid": self.sid, "m": command_json(command)}
        if self.joined:
            self.relay.to_arena(self.id, item)
        else:
            self._queued.append(item)

    control = submit

    # -- forwarding ---------------------------------------------------------------

    def _join(self, socket: ArenaSocket, role: Role) -> None:
        self.socket, self.role = socket, role
        self.sid = self.relay.attach(self)
        self.send_join()

    def send_join(self) -> None:
        """(Again, until acknowledged: the owner may not have been listening yet.)"""
        self.relay.to_arena(self.id, {"t": "join", "sid": self.sid, "role": self.role.value,
                                      "user": getattr(self.socket, "username", None)})

    def acknowledged(self) -> None:
        if not self.joined:
            self.joined = True
            queued, self._queued = self._queued, []
            for item in queued:
                self.relay.to_arena(self.id, item)

    def end(self, reason: str) -> None:
        """The arena is gone for this socket: it is closed with 1000 and C{reason}."""
        if not self.closed:
            self.closed = True
            self.relay.detach(self)
            self.socket.arenaClosed(reason)

    def replaced(self) -> None:
        if not self.closed:
            self.closed = True
            self.relay.detach(self)
            self.socket.replaced()


# ---------------------------------------------------------------------------
# One node's relay


@implementer(IArenaRelay)
class BusRelay:
    """The bus channels of one node's arenas and its remote sockets in both directions."""

    _log = Logger()

    def __init__(self, clock: IReactorTime, bus: IBus, node_id: str,
                 prefix: str = "gp:") -> None:
        self.clock = clock
        self.bus = bus
        self.node_id = node_id
        self._prefix = prefix
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

    def stop(self) -> Deferred[None]:
        if self._node_subscription is not None:
            self._node_subscription.addCallback(Subscription.cancel)
            self._node_subscription = None
        drained = [box.drained() for box in self._outboxes.values()]
        d = gatherResults(drained, consumeErrors=True)
        d.addTimeout(1.0, self.clock)
        return d.addBoth(lambda _: None)

    # -- the owner's side ---------------------------------------------------------

    def serve(self, arena: Arena, deleted: Callable[[Arena], None]) -> None:
        self.unserve(arena.id)  # an earlier run of the same id, if any, is over
        self._remote[arena.id] = {}
        self._channels[arena.id] = self.bus.subscribe(
            self.arena_channel(arena.id), lambda raw: self._arena_message(arena, deleted, raw))

    def unserve(self, arena_id: str) -> None:
        self._remote.pop(arena_id, None)
        subscription = self._channels.pop(arena_id, None)
        if subscription is not None:
            subscription.addCallback(Subscription.cancel)

    def _arena_message(self, arena: Arena, deleted: Callable[[Arena], None], raw: str) -> None:
        message = wire.decode(raw)
        node = message["node"]
        for item in message["items"]:
            kind = item["t"]
            if kind == "status":
                view = None if arena.closed else arena.asjson()
                self.to_node(node, {"t": "status", "cid": item["cid"], "arena": view})
            elif kind == "delete":
                if not arena.closed:
                    deleted(arena)
            elif arena.closed:
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
                socket = remote[sid] = RemoteSocket(self, node, sid, Role(item["role"]),
                                                    item.get("user"))
                if socket.role is Role.CONTROLLER:
                    arena.set_controller(socket)
                else:
                    arena.add_player(socket)
            self.to_node(node, {"t": "joined", "sid": sid})
        elif socket is None:
            return  # left already, or joined an arena that restarted since
        elif kind == "cmd":
            try:
                command = parse_command(item["m"])
            except InvalidCommand:
                return  # checked by the socket's node already
            if socket.role is Role.CONTROLLER:
                arena.control(socket, command)
            else:
                arena.submit(socket, command)
        elif kind == "leave":
            del remote[sid]
            if socket.role is Role.CONTROLLER:
                arena.remove_controller(socket)
            else:
                arena.remove_player(socket)

    # -- the other side -------------------------------------------------------------

    def attach(self, session: RemoteArena) -> str:
        sid = f"{self.node_id}:{next(self._sids)}"
        self._sessions[sid] = session
        return sid

    def detach(self, session: RemoteArena) -> None:
        self._sessions.pop(session.sid, None)

    def remote(self, entry: ArenaEntry, node: str) -> RemoteArena:
        return RemoteArena(self, entry, node)

    def remote_sessions(self) -> list[RemoteArena]:
        return list(self._sessions.values())

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
                payload = item["p"]
                frame = Frame(wire.decode(payload), payload.encode())
                try:
                    session.socket.deliver(frame)
                except Exception:
                    self._log.failure("Arena {arena}: a connection failed", arena=session.id)
            elif kind == "joined":
                session.acknowledged()
            elif kind == "closed":
                session.end(item["reason"])
            elif kind == "replaced":
                session.replaced()
            elif kind == "gone":
                session.end(GONE)

    def status(self, arena_id: str) -> Deferred[dict[str, Any] | None]:
        cid = f"{self.node_id}:s{next(self._sids)}"
        d: Deferred[dict[str, Any] | None] = Deferred()
        self._status[cid] = d
        self.to_arena(arena_id, {"t": "status", "cid": cid})

        def timed_out(failure: Any) -> None:
            self._status.pop(cid, None)
            return None

        d.addTimeout(STATUS_TIMEOUT, self.clock)
        return d.addErrback(timed_out)

    def deleted(self, arena_id: str) -> None:
        self.to_arena(arena_id, {"t": "delete"})

