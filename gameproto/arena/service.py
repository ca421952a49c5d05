"""
The arenas of one server, on one node or on several sharing one Redis (DESIGN.md §3).

L{ArenaService} runs the same code on any number of nodes, through three seams:

  - an L{ArenaDirectory}: the arenas that exist, their records (in memory on one node,
    in the shared Redis store with several);
  - an L{Ownership}: which node runs each arena, under a lease (an in-process table on one
    node, Redis leases with several), with the one rule of L{gameproto.ownership} for a
    dead holder;
  - an L{IArenaRelay}: how the frames of an arena reach sockets on other nodes
    (L{LocalRelay}: there are none; L{BusRelay}: over the bus).

Every arena, C{default} included, runs (ticks) on the node holding its lease: the node
that creates it, or for C{default} the first to start.  The service renews those leases
every second; a renewal that finds another node's lease (or a tombstone) stops the arena
here at once; one that fails because Redis is unreachable stops nothing.

A socket connecting for an arena is attached to it asynchronously (L{locate}), whatever
the node count: to the L{Arena} when it runs here, or to a L{RemoteArena} routing to the
node that runs it.  Every second the service checks the lease of each arena its sockets
are attached to elsewhere: when the holder is judged dead (L{Verdict.DEAD}, or
L{Verdict.GONE}: declared by another node), or another node runs it now, those sockets
are closed with 1000 and L{RESTARTED}, and this node takes the arena over, empty, from its
record (L{Ownership.take_over}).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final

import attrs

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from gameproto import wire
from gameproto.arena.arena import Arena, ArenaHandle
from gameproto.ticks import TickTimes
from gameproto.arena.config import ArenaConfig
from gameproto.arena.directory import (
    DEFAULT_ARENA,
    ArenaDirectory,
    ArenaEntry,
    ArenaError,
    ArenaExists,
    ArenaLimitReached,
    NotTheOwner,
    ServerFull,
    same_user,
)
from gameproto.arena.relay import BusRelay, IArenaRelay, LocalRelay, RemoteArena
from gameproto.bus import IBus
from gameproto.ownership import LEASE_RENEW_INTERVAL, LEASE_TTL_MS, Ownership, Verdict
from gameproto.store import IStore, StoreError

if TYPE_CHECKING:
    from gameproto.node import Node

__all__ = [
    "DEFAULT_ARENA", "ArenaError", "ArenaExists", "ArenaLimitReached", "ArenaService",
    "ArenaSeams", "NotTheOwner", "ServerFull",
]

DEFAULT_IDLE_TIMEOUT = 600.0
DEFAULT_MAX_PER_USER = 10
DEFAULT_MAX_ARENAS = 200

DELETED: Final = "the arena was deleted"
IDLE: Final = "the arena was idle"
RESTARTED: Final = "the arena's node was lost: the arena restarted empty, connect again"
MOVED: Final = "the arena is now run by another node: it restarted empty, connect again"
SHUTTING_DOWN: Final = "the arena's node is shutting down: connect again"

# While a lease is absent but not yet judged (its holder may write it back), a socket
# waits; it is read again at this interval, for at most two TTLs.
_LOCATE_POLL = LEASE_RENEW_INTERVAL / 2
_LOCATE_ROUNDS = int(2 * LEASE_TTL_MS / 1000 / _LOCATE_POLL) + 3


@attrs.frozen
class ArenaSeams:
    """Where the arenas' records, leases and remote sockets live (the module's docstring)."""

    directory: ArenaDirectory
    ownership: Ownership
    relay: IArenaRelay

    @classmethod
    def local(cls, clock: IReactorTime) -> ArenaSeams:
        """A single node's: everything in its memory."""
        return cls(ArenaDirectory.local(clock), Ownership.local(clock, "arena"), LocalRelay())

    @classmethod
    def of_node(cls, node: Node, store: IStore, bus: IBus) -> ArenaSeams:
        """One of the nodes sharing C{store} (Redis) and C{bus}."""
        return cls(ArenaDirectory(store, node.clock), node.ownership("arena"),
                   BusRelay(node.clock, bus, node.node_id, node.prefix))


class ArenaService(Service):
    """
    Every arena this node runs, and the way to the others.  Without C{seams} the service
    is a single node's (L{ArenaSeams.local}).

    @param default_owner: C{--arena-owner}: the username that controls the C{default}
        arena; C{None} lets any authenticated user.
    @param idle_timeout: seconds an arena other than C{default} may go without a connection
        before it is deleted.
    @param max_arenas: arenas in all, C{default} included.
    @param rng: the source of each new arena's seed (so tests can replay arenas).
    @ivar renewal: the every-second loop (lease renewals, then the watch of the arenas
        this node's sockets use elsewhere).
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
        rng: random.Random | None = None,
        seams: ArenaSeams | None = None,
        metrics: Any = None,
    ) -> None:
        self.clock = clock
        self.default_owner = default_owner
        self.idle_timeout = idle_timeout
        self.max_per_user = max_per_user
        self.max_arenas = max_arenas
        self.default_config = default_config or ArenaConfig()
        seams = seams or ArenaSeams.local(clock)
        self.directory = seams.directory
        self.ownership = seams.ownership
        self.relay = seams.relay
        # How the arenas' ticks keep time (logged at shutdown, and in metrics).
        self.ticks = TickTimes("arena", metrics)
        self._rng = rng if rng is not None else random.Random()
        self._running: dict[str, Arena] = {}
        self.renewal = LoopingCall(self._every_second)
        self.renewal.clock = clock
        self._busy = False

    def _new_rng(self) -> random.Random:
        return random.Random(self._rng.getrandbits(64))

    # -- service --------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.relay.start()
        for arena in self._running.values():
            arena.start()
        self.renewal.start(LEASE_RENEW_INTERVAL, now=False)
        d = ensureDeferred(self._claim_default())
        d.addErrback(lambda f: self._log.warn(
            "Arena default: not claimed at start-up ({why}); the next connection will",
            why=f.getErrorMessage()))

    async def _claim_default(self) -> None:
        """The default arena runs on the first node to start (or on this one again)."""
        holding = await self.ownership.check(DEFAULT_ARENA)
        if holding.verdict is Verdict.ALIVE and holding.holder is not None:
            return  # another node runs it
        if holding.verdict in (Verdict.DEAD, Verdict.GONE):
            claimed = await self.ownership.take_over(DEFAULT_ARENA)
        else:
            claimed = await self.ownership.claim(DEFAULT_ARENA)
        if claimed:
            self._run(self._default_entry())

    def stopService(self) -> Deferred[None]:
        """
        Every arena stops here.  The sockets of other nodes attached to them are told (they
        connect again), and the leases become tombstones, so that the next node to look
        takes the arenas over at once (L{Ownership.resign}).
        """
        super().stopService()
        if self.renewal.running:
            self.renewal.stop()
        resigned = []
        for arena in list(self._running.values()):
            self._close(arena, SHUTTING_DOWN)
            resigned.append(self.ownership.resign(arena.id))
        p50, p99 = self.ticks.percentile(0.5), self.ticks.percentile(0.99)
        if p50 is not None and p99 is not None:
            self._log.info(
                "Arena ticks: {count}, lateness p50 {p50:.3f} ms, p99 {p99:.3f} ms",
                count=self.ticks.count, p50=p50 * 1000, p99=p99 * 1000,
            )
        return gatherResults(resigned + [self.relay.stop()]).addBoth(lambda _: None)

    # -- where the arenas are ---------------------------------------------------------

    def here(self, arena_id: str) -> Arena | None:
        """The arena C{arena_id} if this node runs it."""
        return self._running.get(arena_id)

    def arenas(self) -> list[Arena]:
        """The arenas this node runs, in the order it started them."""
        return list(self._running.values())

    def _default_entry(self) -> ArenaEntry:
        return ArenaEntry(DEFAULT_ARENA, self.default_owner, self.default_config)

    async def entry(self, arena_id: str) -> ArenaEntry | None:
        """The record of the arena C{arena_id} if it exists, wherever it runs."""
        if arena_id == DEFAULT_ARENA:
            return self._default_entry()
        return await self.directory.get(arena_id)

    def exists(self, arena_id: str) -> Deferred[bool]:
        """Whether the arena C{arena_id} exists (on any node)."""
        return ensureDeferred(self.entry(arena_id)).addCallback(lambda e: e is not None)

    def locate(self, arena_id: str) -> Deferred[ArenaHandle | None]:
        """
        What a socket connecting here for C{arena_id} attaches to: the L{Arena} if this
        node runs it (taking it over, empty, if its node is dead), a L{RemoteArena}
        routing to the node that runs it, or C{None} if there is no such arena.  Fails
        with L{StoreError} when Redis cannot say.
        """
        arena = self._running.get(arena_id)
        if arena is not None:
            return succeed(arena)
        return ensureDeferred(self._locate(arena_id))

    async def _locate(self, arena_id: str) -> ArenaHandle | None:
        entry = await self.entry(arena_id)
        if entry is None:
            return None
        for _ in range(_LOCATE_ROUNDS):
            holding = await self.ownership.check(arena_id)
            arena = self._running.get(arena_id)
            if arena is not None:
                return arena
            if holding.verdict is Verdict.MINE:
                return self._run(entry)
            if holding.verdict is Verdict.ALIVE and holding.holder is not None:
                return self.relay.remote(entry, holding.holder)
            if holding.verdict in (Verdict.DEAD, Verdict.GONE):
                if await self.ownership.take_over(arena_id):
                    return self._running.get(arena_id) or self._run(entry)
                continue
            # Absent, not yet for a full TTL: its holder may write it back.
            await deferLater(self.clock, _LOCATE_POLL)
        raise StoreError(f"arena {arena_id}: nobody runs it and it cannot be taken over")

    def controller_refusal(self, arena: ArenaHandle, username: str | None) -> str | None:
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

    # -- running an arena here ----------------------------------------------------------

    def _run(self, entry: ArenaEntry) -> Arena:
        """Start running an arena whose lease this node holds, empty."""
        existing = self._running.get(entry.id)
        if existing is not None:
            return existing
        idle = None if entry.id == DEFAULT_ARENA else self.idle_timeout
        arena = Arena(
            entry.id, entry.owner, entry.config, self.clock, self._new_rng(),
            idle_timeout=idle, on_idle=self._reap, ticks=self.ticks,
        )
        self._running[entry.id] = arena
        self.ownership.forget(entry.id)
        self.relay.serve(arena, self._deleted_elsewhere)
        if self.running:
            arena.start()
        self._log.info("Arena {arena}: running on this node", arena=entry.id)
        return arena

    def _close(self, arena: Arena, reason: str) -> None:
        """This node stops running C{arena}; its sockets are told C{reason}."""
        if self._running.get(arena.id) is arena:
            del self._running[arena.id]
        self.relay.unserve(arena.id)
        arena.close(reason)

    def _reap(self, arena: Arena) -> None:
        if self._running.get(arena.id) is not arena:
            return
        d = ensureDeferred(self.directory.remove(arena.id))
        d.addErrback(lambda f: self._log.warn("Arena {arena}: deleting its record: {why}",
                                              arena=arena.id, why=f.getErrorMessage()))
        self._close(arena, IDLE)
        self.ownership.release(arena.id)
        self._log.info("Arena {arena} reaped after {seconds}s without a connection",
                       arena=arena.id, seconds=self.idle_timeout)

    def _deleted_elsewhere(self, arena: Arena) -> None:
        self._close(arena, DELETED)
        self.ownership.release(arena.id)

    # -- changes --------------------------------------------------------------------

    async def create(
        self, owner: str, config: ArenaConfig, arena_id: str | None = None
    ) -> Arena | ArenaEntry:
        """
        Create an arena owned by C{owner}, run by this node (unless an old lease of the id,
        of a deleted arena whose node died, is still held: then the first connection
        starts it).

        @raise ArenaExists: C{arena_id} is taken (C{default} always is).
        @raise ArenaLimitReached: C{owner} already owns C{max_per_user} arenas.
        @raise ServerFull: C{max_arenas} arenas exist.
        """
        if arena_id is not None and wire.parse_name_id(arena_id) is None:
            raise ArenaError("the id must be 1 to 32 characters of a-z, 0-9 and -", "id")
        entry = await self.directory.add(owner, config, arena_id, self.max_per_user,
                                         self.max_arenas)
        self._log.info("Arena {arena} created by {owner}", arena=entry.id, owner=owner)
        if await self.ownership.claim(entry.id):
            return self._run(entry)
        return entry

    async def delete(self, arena_id: str, username: str) -> None:
        """
        Delete an arena on its owner's request, on any node: the record goes, and the node
        running the arena closes it and its connections.

        @raise NotTheOwner: for the C{default} arena, or a user who does not own it.
        @raise KeyError: no such arena.
        """
        if arena_id == DEFAULT_ARENA:
            raise NotTheOwner("the default arena cannot be deleted")
        entry = await self.directory.get(arena_id)
        if entry is None:
            raise KeyError(arena_id)
        if entry.owner is None or not same_user(entry.owner, username):
            raise NotTheOwner("only the owner of this arena can delete it")
        if not await self.directory.remove(arena_id):
            raise KeyError(arena_id)
        arena = self._running.get(arena_id)
        if arena is not None:
            self._deleted_elsewhere(arena)
        else:
            self.relay.deleted(arena_id)
        self._log.info("Arena {arena} deleted by {user}", arena=arena_id, user=username)

    # -- the REST views -------------------------------------------------------------------

    async def describe(self, arena_id: str) -> dict[str, Any] | None:
        """The REST view of an arena, wherever it runs; C{None} if there is no such arena."""
        arena = self._running.get(arena_id)
        if arena is not None:
            return arena.asjson()
        entry = await self.entry(arena_id)
        return None if entry is None else await self._live_view(entry)

    async def describe_all(self, limit: int, offset: int) -> list[dict[str, Any]]:
        """The REST list: C{default} first, then in creation order."""
        entries: list[ArenaEntry] = []
        if offset == 0 and limit > 0:
            entries.append(self._default_entry())
        count = limit - len(entries)
        if count > 0:
            entries.extend(await self.directory.list(count, max(0, offset - 1)))
        views = [ensureDeferred(self._live_view(entry)) for entry in entries]
        return list(await gatherResults(views, consumeErrors=True))

    async def _live_view(self, entry: ArenaEntry) -> dict[str, Any]:
        arena = self._running.get(entry.id)
        if arena is not None:
            return arena.asjson()
        try:
            holder = await self.ownership.holder(entry.id)
        except StoreError:
            holder = None
        live = None
        if holder is not None and holder != self.ownership.node_id:
            live = await self.relay.status(entry.id)
        return live if live is not None else entry.asjson()

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
        arenas = list(self._running.values())
        results = await gatherResults(
            [self.ownership.renew(a.id).addErrback(_unavailable_is_none) for a in arenas],
            consumeErrors=True,
        )
        for arena, held in zip(arenas, results):
            if held is False and self._running.get(arena.id) is arena:
                self._log.warn("Arena {arena}: another node took the lease; stopping here",
                               arena=arena.id)
                self._close(arena, MOVED)
        await self.watch()

    async def watch(self) -> None:
        """
        Check the holder of every arena this node's sockets are attached to elsewhere: a
        holder judged dead is replaced by this node (the arena restarts here, empty), and
        sockets routed to a node that no longer runs their arena are closed (RESTARTED).
        """
        by_arena: dict[str, list[RemoteArena]] = {}
        for session in self.relay.remote_sessions():
            by_arena.setdefault(session.id, []).append(session)
        for arena_id, sessions in by_arena.items():
            try:
                holding = await self.ownership.check(arena_id)
            except StoreError:
                continue  # an outage alone changes nothing
            undecided = holding.verdict is Verdict.ALIVE and holding.holder is None
            for session in sessions:
                if holding.verdict is Verdict.ALIVE and holding.holder == session.node:
                    if not session.joined:
                        session.send_join()  # the owner may not have been listening yet
                elif not undecided:
                    session.end(RESTARTED)
            if holding.verdict in (Verdict.DEAD, Verdict.GONE):
                await _quietly(self._take_over(arena_id))

    async def _take_over(self, arena_id: str) -> None:
        entry = await self.entry(arena_id)
        if entry is not None and await self.ownership.take_over(arena_id):
            self._run(entry)


async def _quietly(step: Awaitable[None]) -> None:
    try:
        await step
    except StoreError:
        pass


def _unavailable_is_none(failure: Any) -> None:
    failure.trap(StoreError)
    return None
