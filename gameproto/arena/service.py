"""
The arenas of one server: a registry by id, each arena with its own tick loop.

An L{Arena} glues one L{ArenaEngine} to the sockets attached to it.  It ticks on
a C{LoopingCall} every C{config.tick_ms} from its creation until it is deleted or
reaped, and delivers what the engine returns: each message is encoded once and
framed once (an Autobahn prepared message), however many sockets it goes to.

L{ArenaService} owns the arenas: the C{default} arena, which exists from the
start and is never reaped, and the arenas created over REST, with their limits
(10 per user, 200 in all) and their idle reaping (no connection for
C{idle_timeout} seconds).

On a single node, whether this node may run an arena is asked of an
L{ArenaLeases}, here L{LocalLeases}, an in-process set, and the arenas are the ones
in memory.  With an L{gameproto.arena.cluster.ArenaCluster} (several nodes sharing
one Redis, DESIGN.md §3) the arenas that exist are records in the store, shared by
every node, and each runs on the node holding its Redis lease; this service then
holds the arenas this node runs, and L{ArenaService.resolve} finds, for a socket,
either one of them or the node to route it to.
"""

from __future__ import annotations

import math
import random
import secrets
import string
from collections import deque
from collections.abc import Hashable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Final, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameproto import wire
from gameproto.arena.commands import Command
from gameproto.arena.config import ArenaConfig
from gameproto.arena.engine import CONTROLLER, ArenaEngine, Message, Outgoing
from gameproto.store import ArenaRecord, ArenaTaken, StoreError, TooManyArenas

if TYPE_CHECKING:
    from gameproto.arena.cluster import ArenaCluster, RemoteArena

DEFAULT_ARENA: Final = "default"
_RANDOM_ID_ALPHABET = string.ascii_lowercase + string.digits
_RANDOM_ID_LENGTH = 8

DEFAULT_IDLE_TIMEOUT = 600.0
DEFAULT_MAX_PER_USER = 10
DEFAULT_MAX_ARENAS = 200


# ---------------------------------------------------------------------------
# Frames and sockets


class Frame:
    """
    One server message, encoded once; framed once, on first use, as an Autobahn prepared
    message that every socket it goes to can send as is.
    """

    __slots__ = ("message", "payload", "_prepared")

    def __init__(self, message: Message, payload: bytes) -> None:
        self.message = message
        self.payload = payload
        self._prepared: Any = None

    @property
    def type(self) -> str:
        return str(self.message.get("type"))

    def prepared(self, factory: Any) -> Any:
        """@return: the prepared message, built with C{factory.prepareMessage} the first time."""
        if self._prepared is None:
            self._prepared = factory.prepareMessage(self.payload, isBinary=False)
        return self._prepared


class ArenaSocket(Protocol):
    """
    What an arena needs of a connection attached to it (the protocols of gameproto.arena).
    A connection may also have a C{username}: the user its players are attributed to.
    """

    def deliver(self, frame: Frame) -> None:
        """Send C{frame}, and let the connection's state machine see what it says."""

    def arenaClosed(self, reason: str) -> None:
        """The arena was deleted: the connection ends."""

    def replaced(self) -> None:
        """(Controllers only) A newer controller took over."""


# ---------------------------------------------------------------------------
# Leases


class ArenaLeases(Protocol):
    """
    Who runs which arena.  A node runs an arena only while it holds its lease; creating an
    arena whose lease another node holds is a conflict.
    """

    def acquire(self, arena_id: str) -> Deferred[bool]:
        """@return: a Deferred firing C{True} if this node now holds the lease."""

    def release(self, arena_id: str) -> None:
        """Give the lease up (the arena was deleted or reaped)."""


class LocalLeases:
    """Leases for a single node: every arena of this process, in a set."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def acquire(self, arena_id: str) -> Deferred[bool]:
        if arena_id in self._held:
            return succeed(False)
        self._held.add(arena_id)
        return succeed(True)

    def release(self, arena_id: str) -> None:
        self._held.discard(arena_id)


# ---------------------------------------------------------------------------
# One arena


class Arena:
    """
    One arena: its engine, the sockets attached to it, its tick loop and its idle timer.

    @ivar owner: the username that may control it and delete it; for the C{default} arena
        the C{--arena-owner} option, or C{None} when any authenticated user may control it.
    """

    _log = Logger()

    def __init__(
        self,
        arena_id: str,
        owner: str | None,
        config: ArenaConfig,
        clock: IReactorTime,
        rng: random.Random,
        idle_timeout: float | None = None,
        on_idle: Callable[[Arena], None] | None = None,
        lateness: TickLateness | None = None,
    ) -> None:
        self.id = arena_id
        self.owner = owner
        self.config = config
        self.clock = clock
        self.engine = ArenaEngine(config, rng)
        self.controller: ArenaSocket | None = None
        # A dict for its order: players hear broadcasts in the order they connected.
        self._players: dict[ArenaSocket, None] = {}
        self._loop = LoopingCall(self._scheduled_tick)
        self._loop.clock = clock
        self._due = 0.0
        self._lateness = lateness
        self._idle_timeout = idle_timeout
        self._on_idle = on_idle
        self._idle_call: IDelayedCall | None = None
        self.ticks = 0
        self.closed = False
        self._idle()

    # -- lifecycle ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop.running

    def start(self) -> None:
        """Start ticking (the first tick comes one period from now)."""
        if not self._loop.running and not self.closed:
            self._loop.start(self.config.tick_ms / 1000, now=False)
            self._due = self.clock.seconds() + self.config.tick_ms / 1000

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def close(self, reason: str) -> None:
        """Stop for good: the loop and the idle timer stop, every socket is told."""
        self.closed = True
        self.stop()
        self._cancel_idle()
        sockets = list(self._players)
        if self.controller is not None:
            sockets.append(self.controller)
        self._players.clear()
        self.controller = None
        for socket in sockets:
            self._guarded(socket.arenaClosed, reason)

    # -- connections --------------------------------------------------------------

    @property
    def connections(self) -> int:
        return len(self._players) + (self.controller is not None)

    @property
    def controller_connected(self) -> bool:
        return self.controller is not None

    def add_player(self, socket: ArenaSocket) -> None:
        self._players[socket] = None
        self.engine.attribute(socket, getattr(socket, "username", None))
        self._cancel_idle()

    def remove_player(self, socket: ArenaSocket) -> None:
        """A player's connection is gone: the engine forgets it (which may end the round)."""
        if socket not in self._players:
            return
        del self._players[socket]
        self.deliver(self.engine.leave(socket))
        self._idle()

    def set_controller(self, socket: ArenaSocket) -> None:
        """Make C{socket} the controller; the previous one, if any, is told it was replaced."""
        previous, self.controller = self.controller, socket
        self._cancel_idle()
        if previous is not None and previous is not socket:
            self._guarded(previous.replaced)

    def remove_controller(self, socket: ArenaSocket) -> None:
        if self.controller is socket:
            self.controller = None
            self._idle()

    # -- commands -------------------------------------------------------------------

    def submit(self, socket: ArenaSocket, command: Command) -> None:
        """A player's command: queued for the next tick (or refused at once)."""
        if socket in self._players:
            self.deliver(self.engine.submit(socket, command))

    def control(self, socket: ArenaSocket, command: Command) -> None:
        """The controller's command, applied at once."""
        if socket is self.controller:
            self.deliver(self.engine.control(command))

    def _scheduled_tick(self) -> None:
        # A loop that fell behind skips the ticks it missed (LoopingCall's rule: the next
        # call is at the next multiple of the interval), so the engine's time stays tied to
        # the clock.  How late each tick ran is recorded.
        now = self.clock.seconds()
        if self._lateness is not None:
            self._lateness.record(now - self._due)
        interval = self.config.tick_ms / 1000
        start = self._loop.starttime if self._loop.starttime is not None else now
        # The epsilon absorbs float rounding at epoch-sized times: on time is on time.
        elapsed = math.floor((now - start) / interval + 1e-6)
        self._due = start + (elapsed + 1) * interval
        self.tick()

    def tick(self) -> None:
        """One engine tick and its messages.  Never raises: the loop must keep running."""
        self.ticks += 1
        try:
            outgoing = self.engine.tick()
        except Exception:
            self._log.failure("Arena {arena}: tick failed", arena=self.id)
            return
        self.deliver(outgoing)

    # -- delivery -------------------------------------------------------------------

    def deliver(self, outgoing: Iterable[Outgoing]) -> None:
        """
        Send each message to its recipient.  A message shared by several recipients (the
        engine passes one dict) is encoded and framed once.  Recipients that are gone are
        skipped, like messages to a controller that is not connected.
        """
        frames: dict[int, Frame] = {}
        for recipient, message in outgoing:
            socket = self._socket(recipient)
            if socket is None:
                continue
            frame = frames.get(id(message))
            if frame is None:
                try:
                    payload = wire.encode(message)
                except wire.UnencodableValue as e:
                    self._log.warn("Arena {arena}: unencodable message ({why})",
                                   arena=self.id, why=str(e))
                    continue
                frame = frames[id(message)] = Frame(message, payload)
            self._guarded(socket.deliver, frame)

    def _socket(self, recipient: Hashable) -> ArenaSocket | None:
        if recipient is CONTROLLER:
            return self.controller
        if recipient in self._players:
            return recipient  # type: ignore[return-value]
        return None

    def _guarded(self, call: Callable[..., Any], *args: Any) -> None:
        # One broken connection must not keep the others from their messages.
        try:
            call(*args)
        except Exception:
            self._log.failure("Arena {arena}: a connection failed", arena=self.id)

    # -- idleness -------------------------------------------------------------------

    def _idle(self) -> None:
        if self.connections or self.closed or self._idle_timeout is None:
            return
        if self._on_idle is not None and self._idle_call is None:
            self._idle_call = self.clock.callLater(self._idle_timeout, self._reap)

    def _cancel_idle(self) -> None:
        if self._idle_call is not None:
            if self._idle_call.active():
                self._idle_call.cancel()
            self._idle_call = None

    def _reap(self) -> None:
        self._idle_call = None
        if self._on_idle is not None and not self.connections:
            self._on_idle(self)

    # -- views ----------------------------------------------------------------------

    def asjson(self) -> dict[str, Any]:
        """The REST representation."""
        return {
            "id": self.id,
            "owner": self.owner,
            "config": self.config.asdict(),
            "players": self.engine.player_ids(),
            "started": self.engine.started,
            "controller_connected": self.controller_connected,
        }


# ---------------------------------------------------------------------------
# The registry


class TickLateness:
    """How late the arenas' ticks ran compared with their schedule (the last 100,000)."""

    def __init__(self, keep: int = 100_000) -> None:
        self._samples: deque[float] = deque(maxlen=keep)
        self.count = 0

    def record(self, seconds: float) -> None:
        self._samples.append(max(0.0, seconds))
        self.count += 1

    def percentile(self, fraction: float) -> float | None:
        """@return: the C{fraction} quantile in seconds, or C{None} before any tick."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class ArenaError(Exception):
    """An arena cannot be created or deleted; C{status} is the REST status it maps to."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ArenaExists(ArenaError):
    status = 409


class ArenaLimitReached(ArenaError):
    status = 403


class ServerFull(ArenaError):
    status = 503


class NotTheOwner(ArenaError):
    status = 403


def same_user(a: str, b: str) -> bool:
    """Usernames are unique ignoring case (DESIGN.md §2), so they are compared that way."""
    return a.casefold() == b.casefold()


class ArenaService(Service):
    """
    Every arena of this node.  Arenas live in memory: a restart starts with the C{default}
    arena alone.

    @param default_owner: C{--arena-owner}: the username that controls the C{default}
        arena, resolved when a controller connects; C{None} lets any authenticated user.
    @param idle_timeout: seconds an arena other than C{default} may go without a connection
        before it is deleted.
    @param rng: the source of each new arena's seed (so tests can replay arenas).
    """

    _log = Logger()
    name = "arenas"

    def __init__(
        self,
        clock: IReactorTime,
        default_owner: str | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_per_user: int = DEFAULT_MAX_PER_USER,
        max_arenas: int = DEFAULT_MAX_ARENAS,
        default_config: ArenaConfig | None = None,
        leases: ArenaLeases | None = None,
        rng: random.Random | None = None,
        cluster: ArenaCluster | None = None,
    ) -> None:
        self.clock = clock
        self.default_owner = default_owner
        self.idle_timeout = idle_timeout
        self.max_per_user = max_per_user
        self.max_arenas = max_arenas
        self.leases: ArenaLeases = leases if leases is not None else LocalLeases()
        self._rng = rng if rng is not None else random.Random()
        self._arenas: dict[str, Arena] = {}
        self.lateness = TickLateness()
        self.default_config = default_config or ArenaConfig()
        self.cluster = cluster
        if cluster is not None:
            # The default arena runs on the node holding its lease (taken at start-up).
            cluster.service = self
            return
        self.leases.acquire(DEFAULT_ARENA)
        self._arenas[DEFAULT_ARENA] = Arena(
            DEFAULT_ARENA, default_owner, self.default_config, clock,
            self._new_rng(), lateness=self.lateness,
        )

    def _new_rng(self) -> random.Random:
        return random.Random(self._rng.getrandbits(64))

    # -- service --------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for arena in self._arenas.values():
            arena.start()
        if self.cluster is not None:
            self.cluster.start()
            d = ensureDeferred(self.take_over(DEFAULT_ARENA))
            d.addErrback(lambda f: self._log.warn(
                "Arena default: not taken at start-up ({why}); the next connection will",
                why=f.getErrorMessage()))

    def stopService(self) -> Deferred[None] | None:
        stopped: Deferred[None] | None = None
        if self.cluster is not None:
            # Sockets of other nodes are told (they connect again, and the arena restarts
            # on a node that has them), and the leases are given up at once.
            from gameproto.arena.cluster import SHUTTING_DOWN

            for arena in list(self._arenas.values()):
                self._remove(arena, SHUTTING_DOWN)
            stopped = self.cluster.stop()
        for arena in self._arenas.values():
            arena.stop()
        p50, p99 = self.lateness.percentile(0.5), self.lateness.percentile(0.99)
        if p50 is not None and p99 is not None:
            self._log.info(
                "Arena ticks: {count}, lateness p50 {p50:.3f} ms, p99 {p99:.3f} ms",
                count=self.lateness.count, p50=p50 * 1000, p99=p99 * 1000,
            )
        super().stopService()
        return stopped

    # -- queries --------------------------------------------------------------------

    def get(self, arena_id: str) -> Arena | None:
        return self._arenas.get(arena_id)

    def arenas(self) -> list[Arena]:
        """Every arena, in creation order (C{default} first)."""
        return list(self._arenas.values())

    def __len__(self) -> int:
        return len(self._arenas)

    def controller_refusal(self, arena: Arena, username: str | None) -> str | None:
        """
        @return: why C{username} may not control C{arena}, or C{None} if it may: an
            anonymous connection is "unauthenticated"; the owner alone may control an arena,
            except the C{default} arena without C{--arena-owner}, which any user may.
        """
        if username is None:
            return "unauthenticated"
        if arena.owner is None or same_user(arena.owner, username):
            return None
        return "not the owner of this arena"

    # -- changes --------------------------------------------------------------------

    async def create(
        self, owner: str, config: ArenaConfig, arena_id: str | None = None
    ) -> Arena | RecordView:
        """
        Create and start an arena owned by C{owner}.

        @raise ArenaExists: C{arena_id} is taken (C{default} always is).
        @raise ArenaLimitReached: C{owner} already owns C{max_per_user} arenas.
        @raise ServerFull: the server runs C{max_arenas} arenas.
        """
        if arena_id is not None and wire.parse_name_id(arena_id) is None:
            raise ArenaError("the id must be 1 to 32 characters of a-z, 0-9 and -", "id")
        if self.cluster is not None:
            return await self._create_shared(owner, config, arena_id)
        self._check_limits(owner)
        if arena_id is None:
            arena_id = await self._random_id()
        elif arena_id in self._arenas or not await self.leases.acquire(arena_id):
            raise ArenaExists("an arena with this id already exists", "id")
        # The lease may have taken a while to come: check again before committing.
        try:
            self._check_limits(owner)
        except ArenaError:
            self.leases.release(arena_id)
            raise
        arena = Arena(
            arena_id, owner, config, self.clock, self._new_rng(),
            idle_timeout=self.idle_timeout, on_idle=self._reap, lateness=self.lateness,
        )
        self._arenas[arena_id] = arena
        if self.running:
            arena.start()
        self._log.info("Arena {arena} created by {owner}", arena=arena_id, owner=owner)
        return arena

    def _check_limits(self, owner: str) -> None:
        if len(self._arenas) >= self.max_arenas:
            raise ServerFull(f"this server already runs {self.max_arenas} arenas")
        owned = sum(1 for a in self._arenas.values() if a.owner and same_user(a.owner, owner))
        if owned >= self.max_per_user:
            raise ArenaLimitReached(f"a user may own at most {self.max_per_user} arenas")

    async def _random_id(self) -> str:
        while True:
            candidate = "".join(
                secrets.choice(_RANDOM_ID_ALPHABET) for _ in range(_RANDOM_ID_LENGTH)
            )
            if candidate not in self._arenas and await self.leases.acquire(candidate):
                return candidate

    def delete(self, arena_id: str, username: str) -> None:
        """
        Delete an arena on its owner's request; its connections are closed.

        @raise NotTheOwner: for the C{default} arena, or a user who does not own it.
        @raise KeyError: no such arena.
        """
        arena = self._arenas[arena_id]
        if arena_id == DEFAULT_ARENA:
            raise NotTheOwner("the default arena cannot be deleted")
        if arena.owner is None or not same_user(arena.owner, username):
            raise NotTheOwner("only the owner of this arena can delete it")
        self._remove(arena, "the arena was deleted")
        self._log.info("Arena {arena} deleted by {user}", arena=arena_id, user=username)

    def _reap(self, arena: Arena) -> None:
        if self._arenas.get(arena.id) is arena:
            if self.cluster is not None:
                d = self.cluster.store.delete_arena(arena.id)
                d.addErrback(lambda f: self._log.warn(
                    "Arena {arena}: deleting its record: {why}", arena=arena.id,
                    why=f.getErrorMessage()))
            self._remove(arena, "the arena was idle")
            self._log.info("Arena {arena} reaped after {seconds}s without a connection",
                           arena=arena.id, seconds=self.idle_timeout)

    def _remove(self, arena: Arena, reason: str) -> None:
        del self._arenas[arena.id]
        arena.close(reason)
        if self.cluster is not None:
            self.cluster.stopped(arena.id, release=True)
        else:
            self.leases.release(arena.id)

    # -- several nodes (with a cluster) ------------------------------------------------
    #
    # The arenas that exist are records in the store (the default arena exists on every
    # node without one); self._arenas holds those this node runs under their lease.

    def _require_cluster(self) -> ArenaCluster:
        assert self.cluster is not None
        return self.cluster

    async def _create_shared(
        self, owner: str, config: ArenaConfig, arena_id: str | None
    ) -> Arena | RecordView:
        cluster = self._require_cluster()
        if arena_id == DEFAULT_ARENA:
            raise ArenaExists("an arena with this id already exists", "id")
        while True:
            chosen = arena_id or "".join(
                secrets.choice(_RANDOM_ID_ALPHABET) for _ in range(_RANDOM_ID_LENGTH)
            )
            record = ArenaRecord(chosen, owner, config.asdict(),
                                 datetime.fromtimestamp(self.clock.seconds(), timezone.utc))
            try:
                # The default arena counts toward max_arenas without a record.
                await cluster.store.create_arena(record, self.max_per_user, self.max_arenas - 1)
            except ArenaTaken:
                if arena_id is None:
                    continue
                raise ArenaExists("an arena with this id already exists", "id") from None
            except TooManyArenas as e:
                if e.scope == "owner":
                    raise ArenaLimitReached(
                        f"a user may own at most {self.max_per_user} arenas") from None
                raise ServerFull(f"this server already runs {self.max_arenas} arenas") from None
            break
        self._log.info("Arena {arena} created by {owner}", arena=chosen, owner=owner)
        # The node that creates an arena runs it, unless an old lease of the id (a deleted
        # arena whose node died) is still held: then the first connection starts it.
        if await cluster.leases.acquire(chosen):
            return self._run(chosen, owner, config)
        return RecordView(chosen, owner, config)

    def _run(self, arena_id: str, owner: str | None, config: ArenaConfig) -> Arena:
        """Start running an arena whose lease this node holds, empty."""
        existing = self._arenas.get(arena_id)
        if existing is not None and not existing.closed:
            return existing
        idle = None if arena_id == DEFAULT_ARENA else self.idle_timeout
        arena = Arena(
            arena_id, owner, config, self.clock, self._new_rng(), idle_timeout=idle,
            on_idle=None if idle is None else self._reap, lateness=self.lateness,
        )
        self._arenas[arena_id] = arena
        self._require_cluster().running(arena)
        if self.running:
            arena.start()
        self._log.info("Arena {arena}: running on this node", arena=arena_id)
        return arena

    async def _record(self, arena_id: str) -> tuple[str | None, ArenaConfig] | None:
        """The owner and configuration of an arena that exists, or C{None}."""
        if arena_id == DEFAULT_ARENA:
            return self.default_owner, self.default_config
        record = await self._require_cluster().store.get_arena(arena_id)
        if record is None:
            return None
        return record.owner, ArenaConfig.from_dict(record.config)

    async def take_over(self, arena_id: str) -> Arena | None:
        """
        Run C{arena_id} here if it exists and nobody holds its lease (it is new, or its
        node died: the lease expired a full TTL after its last renewal).

        @return: the arena if this node runs it now, else C{None}.
        """
        local = self._arenas.get(arena_id)
        if local is not None and not local.closed:
            return local
        found = await self._record(arena_id)
        if found is None or not await self._require_cluster().leases.acquire(arena_id):
            return None
        return self._run(arena_id, *found)

    async def resolve(self, arena_id: str) -> Arena | RemoteArena | None:
        """
        Where a socket connecting here for C{arena_id} attaches: the arena if this node
        runs it (taking it over, empty, if nobody does), a L{RemoteArena} routing to the
        node that does, or C{None} if there is no such arena.

        @raise gameproto.store.StoreError: Redis is unreachable.
        """
        cluster = self._require_cluster()
        local = self._arenas.get(arena_id)
        if local is not None and not local.closed:
            return local
        if wire.parse_name_id(arena_id) is None:
            return None  # not an id: no need to ask the store
        found = await self._record(arena_id)
        if found is None:
            return None
        owner, config = found
        for _ in range(3):
            holder = await cluster.leases.holder(arena_id)
            local = self._arenas.get(arena_id)
            if local is not None and not local.closed:
                return local
            if holder == cluster.node_id:
                return self._run(arena_id, owner, config)
            if holder is not None:
                return cluster.remote(arena_id, holder, owner)
            if await cluster.leases.acquire(arena_id):
                return self._run(arena_id, owner, config)
        raise StoreError(f"arena {arena_id}: the lease keeps changing hands")

    def lost(self, arena: Arena, reason: str) -> None:
        """Another node holds the arena's lease now: stop running it at once."""
        if self._arenas.get(arena.id) is arena:
            del self._arenas[arena.id]
        self._require_cluster().stopped(arena.id, release=False)
        arena.close(reason)

    def remove_local(self, arena: Arena, reason: str) -> None:
        if self._arenas.get(arena.id) is arena:
            self._remove(arena, reason)

    # -- the REST views -------------------------------------------------------------------

    async def describe(self, arena_id: str) -> dict[str, Any] | None:
        """The REST view of an arena, wherever it runs; C{None} if there is no such arena."""
        local = self._arenas.get(arena_id)
        if local is not None and not local.closed:
            return local.asjson()
        if self.cluster is None or wire.parse_name_id(arena_id) is None:
            return None
        found = await self._record(arena_id)
        if found is None:
            return None
        return await self._live_view(arena_id, *found)

    async def _live_view(self, arena_id: str, owner: str | None,
                         config: ArenaConfig) -> dict[str, Any]:
        local = self._arenas.get(arena_id)
        if local is not None and not local.closed:
            return local.asjson()
        cluster = self._require_cluster()
        try:
            holder = await cluster.leases.holder(arena_id)
        except StoreError:
            holder = None
        live = None
        if holder is not None and holder != cluster.node_id:
            live = await cluster.status(arena_id)
        return live if live is not None else RecordView(arena_id, owner, config).asjson()

    async def describe_all(self, limit: int, offset: int) -> list[dict[str, Any]]:
        """The REST list: C{default} first, then in creation order."""
        if self.cluster is None:
            return [a.asjson() for a in self.arenas()[offset : offset + limit]]
        wanted: list[tuple[str, str | None, ArenaConfig]] = []
        if offset == 0 and limit > 0:
            wanted.append((DEFAULT_ARENA, self.default_owner, self.default_config))
        skip = max(0, offset - 1)
        count = limit - len(wanted)
        if count > 0:
            for record in await self.cluster.store.list_arenas(count, skip):
                wanted.append((record.id, record.owner, ArenaConfig.from_dict(record.config)))
        views = [ensureDeferred(self._live_view(*entry)) for entry in wanted]
        return list(await gatherResults(views, consumeErrors=True))

    async def remove(self, arena_id: str, username: str) -> None:
        """
        L{delete} on any node: the record goes, and the node running the arena closes it.

        @raise NotTheOwner: see L{delete}.
        @raise KeyError: no such arena.
        """
        if self.cluster is None:
            self.delete(arena_id, username)
            return
        if wire.parse_name_id(arena_id) is None:
            raise KeyError(arena_id)
        if arena_id == DEFAULT_ARENA:
            raise NotTheOwner("the default arena cannot be deleted")
        record = await self.cluster.store.get_arena(arena_id)
        if record is None:
            raise KeyError(arena_id)
        if not same_user(record.owner, username):
            raise NotTheOwner("only the owner of this arena can delete it")
        if not await self.cluster.store.delete_arena(arena_id):
            raise KeyError(arena_id)
        local = self._arenas.get(arena_id)
        if local is not None:
            self._remove(local, "the arena was deleted")
        else:
            self.cluster.delete(arena_id)
        self._log.info("Arena {arena} deleted by {user}", arena=arena_id, user=username)


class RecordView:
    """The REST view of an arena known only by its record (not running, or unreachable)."""

    def __init__(self, arena_id: str, owner: str | None, config: ArenaConfig) -> None:
        self.id = arena_id
        self.owner = owner
        self.config = config

    def asjson(self) -> dict[str, Any]:
        return {
            "id": self.id, "owner": self.owner, "config": self.config.asdict(), "players": [],
            "started": False, "controller_connected": False,
        }
