"""
Matches across the nodes sharing one Redis (DESIGN.md §3, the match bullet).

L{ClusterMatchService} replaces L{MatchService} when the store is Redis.  The
protocol, the frames and the game are the same; what changes is where the state
lives and who runs the game:

- The ongoing match record and every user's role live in Redis only.  Each change
  (a socket joins or leaves, the challenger is ready, the start, a delete) is one
  compare-and-set of the record together with the users' roles
  (L{gameproto.store.redis.RedisStore.change_ongoing_match}): two nodes admitting
  sockets of one match at once cannot lose either join, the challenger slot goes to
  one user, and a user holds one role in one match across the nodes.  A role names
  the connection that holds it ("NODE:N"), so that a socket's leave frees only its
  own seat, never that of a newer socket of the same user on another node.
- A node listens to C{gp:match:{id}:out} while it has sockets in the match.  The
  node that changed a lobby publishes it there with the change's sequence number
  (nodes keep the newest); a socket that takes over a user's seat is announced
  there, and the older socket, wherever it is, is closed with 4009.
- The node that receives C{start_match} owns the game loop under the lease
  C{gp:match:{id}:lease} (L{gameproto.cluster.Lease}: TTL 3 s, renewed every second
  by a compare-and-set script).  It publishes C{started}, then every C{init} and
  C{status} frame, then the end, on the out channel, in order; it listens to
  C{gp:match:{id}:input}, where the other nodes forward their players' paddle
  commands.
- Every node watches the leases of the started matches it does not own (those with
  sockets here every 0.5 s; every started match of the store, found every 3 s).  An
  owner is dead only when Redis answers and the lease went unrenewed for a full TTL
  (L{gameproto.cluster.LeaseWatch}); the node that sees it first replaces the lease
  by a tombstone (so a stalled ex-owner cannot renew: it gives up its game as soon
  as it tries), and the record is deleted: no result, no Elo change, every role
  freed.  Each node then sends its sockets of that match C{{"message_type":
  "aborted", "reason": "match server lost"}} and closes them with 1000.  An outage
  alone aborts nothing.
- At start-up nothing is loaded: joins read the store.  Started matches are watched
  like the others, so that those no live node owns are dropped (at once if their
  lease is a tombstone, after a full TTL of absence otherwise); unstarted ones are
  kept, with their lobby timers armed here.

Messages on the out channel: C{{"node", "items": [...]}} with items C{{"t":
"lobby", "seq", "record"}}, C{{"t": "seat", "user", "role", "token"}}, C{{"t":
"started", "seq", "record"}}, C{{"t": "frame", "p"}} (an encoded frame for every
socket), C{{"t": "over"}}, C{{"t": "farewell", "m"}} (the last frame, then close
1000).  On the input channel: C{{"side": "left"|"right", "c": "up"|...}}.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameproto import wire
from gameproto.bus import IBus, Outbox, Subscription
from gameproto.cluster import TOMBSTONE, Lease, LeaseWatch, LEASE_RENEW_INTERVAL
from gameproto.match import frames
from gameproto.match.frames import Role
from gameproto.match.pong import PaddleCommand, PongGame, PongRules, Side
from gameproto.match.service import (
    DEFAULT_LOBBY_TIMEOUT,
    DEFAULT_TICK,
    MAX_SPECTATORS,
    AlreadyInMatch,
    JoinRefused,
    LiveMatch,
    MatchService,
    MatchSocket,
    MatchStarted,
    NotTheHost,
    Seat,
)
from gameproto.store import OngoingMatch, StoreError

WATCH_INTERVAL = 0.5
DISCOVER_INTERVAL = 3.0
_RETRIES = 20

# change_ongoing_match's failure codes.
GONE, CHANGED, ELSEWHERE, NOT_MINE = 0, -1, -2, -3


def record_json(record: OngoingMatch) -> dict[str, Any]:
    d = attrs.asdict(record)
    d["creation_timestamp"] = record.creation_timestamp.isoformat()
    d["start_timestamp"] = None if record.start_timestamp is None else record.start_timestamp.isoformat()
    d["spectators"] = list(record.spectators)
    return d


def record_from(d: dict[str, Any]) -> OngoingMatch:
    d = dict(d)
    d["creation_timestamp"] = datetime.fromisoformat(d["creation_timestamp"])
    if d["start_timestamp"] is not None:
        d["start_timestamp"] = datetime.fromisoformat(d["start_timestamp"])
    d["spectators"] = tuple(d["spectators"])
    return OngoingMatch(**d)


@attrs.define(eq=False)
class ClusterMatch(LiveMatch):
    """This node's view of a match: the record as last changed, this node's sockets."""

    seq: int = 0
    owner: bool = False  # whether this node runs the game
    seats: dict[tuple[str, Role], ClusterSeat] = attrs.Factory(dict)


@attrs.define(eq=False)
class ClusterSeat(Seat):
    token: str = ""

    @property
    def current(self) -> bool:
        m = self.match
        return isinstance(m, ClusterMatch) and m.seats.get(
            (self.username.lower(), self.role)) is self and super().current

    def command(self, command: PaddleCommand) -> None:
        match = self.match
        if match.game is not None:
            super().command(command)
        elif match.record.is_started and not match.ended and self.current:
            side = Side.LEFT if self.role is Role.HOST else Side.RIGHT
            assert isinstance(self.service, ClusterMatchService)
            self.service.forward(match.id, side, command)


class ClusterMatchService(MatchService):
    """
    L{MatchService} for nodes sharing one Redis store and bus (module docstring).
    C{node} returns the L{gameproto.node.Node} (its id, its liveness
    checks) once the server is built.  C{join} returns a Deferred.
    """

    _log = Logger()

    def __init__(
        self,
        store: Any,
        clock: IReactorTime,
        node: Callable[[], Any],
        bus: IBus,
        tick: float = DEFAULT_TICK,
        lobby_timeout: float = DEFAULT_LOBBY_TIMEOUT,
        max_spectators: int = MAX_SPECTATORS,
        rules: PongRules | None = None,
        prefix: str = "gp:",
        watch_interval: float = WATCH_INTERVAL,
        discover_interval: float = DISCOVER_INTERVAL,
        renew_interval: float = LEASE_RENEW_INTERVAL,
        leases: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__(store, clock, tick, lobby_timeout, max_spectators, rules)
        self._node = node
        self.bus = bus
        self.prefix = prefix
        self.node_id = ""
        self.leases: Lease | None = None
        # node id -> the leases of this node (tests pass an in-memory stand-in).
        self._lease_factory = leases or (
            lambda node_id: Lease(self.clock, node_id, lambda: self.store.pool))
        self._seat_numbers = itertools.count(1)
        self._subscriptions: dict[str, Deferred[Subscription]] = {}
        self._outboxes: dict[str, Outbox] = {}
        self._watches: dict[int, LeaseWatch] = {}
        self._lobby_timers: dict[int, IDelayedCall] = {}
        self._loops: list[tuple[LoopingCall, float]] = [
            (LoopingCall(self._guarded, "renew", self.renew_leases), renew_interval),
            (LoopingCall(self._guarded, "watch", self.watch_leases), watch_interval),
            (LoopingCall(self._guarded, "discover", self.discover), discover_interval),
        ]
        self._busy: set[str] = set()
        self._joining: dict[int, int] = {}  # joins in progress, by match
        self._ticking: LiveMatch | None = None

    # -- names -------------------------------------------------------------------

    def out_channel(self, match_id: int) -> str:
        return f"{self.prefix}match:{match_id}:out"

    def input_channel(self, match_id: int) -> str:
        return f"{self.prefix}match:{match_id}:input"

    def lease_key(self, match_id: int) -> str:
        return f"{self.prefix}match:{match_id}:lease"

    # -- lifecycle ---------------------------------------------------------------

    async def _load(self) -> None:
        heartbeat = self._node()
        self.node_id = heartbeat.node_id
        self.leases = self._lease_factory(self.node_id)
        for loop, interval in self._loops:
            loop.clock = self.clock
            loop.start(interval, now=False)
        records = await self.store.list_ongoing_matches(None, None, 1_000_000, 0)
        started = 0
        for record in records:
            if record.is_started:
                self._watches.setdefault(record.id, LeaseWatch(self.clock))
                started += 1
            else:
                self._arm_cluster_lobby_timer(record.id)
        self._log.info(
            "Node {node}: {waiting} match(es) waiting for players; {started} started one(s)"
            " watched (dropped unless a live node owns them)",
            node=self.node_id, waiting=len(records) - started, started=started,
        )
        await self.watch_leases()

    async def _stop(self) -> None:
        for loop, _ in self._loops:
            if loop.running:
                loop.stop()
        for timer in self._lobby_timers.values():
            if timer.active():
                timer.cancel()
        self._lobby_timers.clear()
        for match in list(self.matches.values()):
            if isinstance(match, ClusterMatch) and match.owner and not match.ended:
                # The other nodes' sockets hear at once that the game is gone.
                self._outbox(self.out_channel(match.id)).put(
                    {"t": "farewell", "m": frames.ABORTED_LOST})
        await super()._stop()
        for match_id in [m for m in list(self._watches)]:
            self._watches.pop(match_id, None)
        for box in list(self._outboxes.values()):
            d = box.drained()
            d.addTimeout(1.0, self.clock)
            await self._quietly(d)
        for key in list(self._subscriptions):
            self._unsubscribe(key)

    def _stop_loop(self, match: LiveMatch) -> None:
        super()._stop_loop(match)
        if not isinstance(match, ClusterMatch):
            return
        self._unsubscribe(self.input_channel(match.id))
        if match.owner and self.leases is not None:
            match.owner = False
            d = self.leases.release(self.lease_key(match.id))
            d.addErrback(lambda f: None)  # not released: it expires by itself
            self._track(d)

    def _guarded(self, name: str, job: Callable[[], Any]) -> None:
        if name in self._busy:
            return  # Redis is slow: the previous round is still running
        self._busy.add(name)
        d = ensureDeferred(job())
        d.addErrback(lambda f: self._log.failure("Matches: {job}", f, job=name))
        d.addBoth(lambda _: self._busy.discard(name))

    # -- the bus -----------------------------------------------------------------

    def _outbox(self, channel: str) -> Outbox:
        box = self._outboxes.get(channel)
        if box is None:
            box = self._outboxes[channel] = Outbox(self.bus, self.clock, channel, {"node": self.node_id})
        return box

    def _publish(self, match_id: int, item: dict[str, Any]) -> None:
        self._outbox(self.out_channel(match_id)).put(item)

    def forward(self, match_id: int, side: Side, command: PaddleCommand) -> None:
        """A paddle command of a socket here, for the node that runs the game."""
        self._outbox(self.input_channel(match_id)).put({"side": side.value, "c": command.value})

    def _subscribe(self, channel: str, handler: Callable[[str], None]) -> Deferred[Any]:
        d = self._subscriptions.get(channel)
        if d is None:
            d = self._subscriptions[channel] = self.bus.subscribe(channel, handler)
        waiting: Deferred[Any] = Deferred()

        def ready(subscription: Any) -> Any:
            waiting.callback(None)
            return subscription

        d.addCallback(ready)
        return waiting

    def _unsubscribe(self, channel: str) -> None:
        d = self._subscriptions.pop(channel, None)
        if d is not None:
            d.addCallback(Subscription.cancel)
        box = self._outboxes.get(channel)
        if box is not None:
            box.drained().addCallback(lambda _: self._outboxes.pop(channel, None)
                                      if self._outboxes.get(channel) is box else None)

    def _attach(self, match_id: int) -> Deferred[Any]:
        """Listen to the match's out channel (once per match on this node)."""
        return self._subscribe(self.out_channel(match_id),
                               lambda raw: self._received(match_id, raw))

    def _detach_if_idle(self, match: ClusterMatch) -> None:
        if self.matches.get(match.id) is not match or match.owner or self._joining.get(match.id):
            return
        if any(True for _ in match.sockets()):
            return
        del self.matches[match.id]
        self._unsubscribe(self.out_channel(match.id))

    def _received(self, match_id: int, raw: str) -> None:
        message = wire.decode(raw)
        if message.get("node") == self.node_id:
            return  # applied here already
        match = self.matches.get(match_id)
        if not isinstance(match, ClusterMatch):
            return
        for item in message["items"]:
            if self.matches.get(match_id) is not match:
                return
            self._remote_item(match, item)

    def _remote_item(self, match: ClusterMatch, item: dict[str, Any]) -> None:
        kind = item["t"]
        if kind == "frame":
            self._send_local(match, item["p"].encode())
        elif kind == "lobby":
            if self._apply(match, record_from(item["record"]), item["seq"]):
                self._broadcast(match, frames.lobby(match.record))
        elif kind == "seat":
            seat = match.seats.get((item["user"], Role(item["role"])))
            if seat is not None and seat.token != item["token"]:
                self._vacate_local(seat)
                seat.socket.replaced()
                self._detach_if_idle(match)
        elif kind == "started":
            self._apply(match, record_from(item["record"]), item["seq"])
            self._started_elsewhere(match)
        elif kind == "over":
            match.ended = True
            for socket in list(match.sockets()):
                socket.matchOver()
        elif kind == "farewell":
            self._end_here(match, item["m"])

    def _input(self, match_id: int, raw: str) -> None:
        match = self.matches.get(match_id)
        if match is None or match.game is None or not match.running:
            return
        for item in wire.decode(raw)["items"]:
            command = PaddleCommand.parse(item.get("c", ""))
            if command is not None and item.get("side") in ("left", "right"):
                match.game.queue_command(Side(item["side"]), command)

    # -- local state -------------------------------------------------------------

    def _apply(self, match: ClusterMatch, record: OngoingMatch, seq: int) -> bool:
        """Keep C{record} if it is newer than what this node has; C{True} if kept."""
        if seq <= match.seq:
            return False
        match.seq = seq
        match.record = record
        return True

    def _local_match(self, record: OngoingMatch) -> ClusterMatch:
        match = self.matches.get(record.id)
        if not isinstance(match, ClusterMatch) or match.ended:
            match = ClusterMatch(record)
            self.matches[record.id] = match
        return match

    def _vacate_local(self, seat: ClusterSeat) -> None:
        match = seat.match
        assert isinstance(match, ClusterMatch)
        key = seat.username.lower()
        if match.seats.get((key, seat.role)) is seat:
            del match.seats[(key, seat.role)]
        if seat.role is Role.HOST and match.host is seat.socket:
            match.host = None
        elif seat.role is Role.CHALLENGER and match.challenger is seat.socket:
            match.challenger = None
        elif seat.role is Role.SPECTATOR and match.spectators.get(key) is seat.socket:
            del match.spectators[key]
        if self._where.get(key) == (match.id, seat.role):
            del self._where[key]

    def _send_local(self, match: LiveMatch, payload: bytes) -> None:
        sockets = list(match.sockets())
        if sockets:
            prepared = sockets[0].prepare(payload)
            for socket in sockets:
                socket.sendPrepared(prepared)

    def _end_here(self, match: ClusterMatch, last: dict[str, Any]) -> None:
        """The match is over everywhere: C{last} to this node's sockets, close 1000."""
        if not match.ended:
            match.ended = True
            for socket in list(match.sockets()):
                socket.matchOver()
        self._stop_loop(match)
        self._watches.pop(match.id, None)
        timer = self._lobby_timers.pop(match.id, None)
        if timer is not None and timer.active():
            timer.cancel()
        MatchService._farewell(self, match, last)
        self._unsubscribe(self.out_channel(match.id))

    # -- REST operations ---------------------------------------------------------

    def whereabouts(self, username: str) -> Deferred[tuple[int | None, str | None]]:  # type: ignore[override]
        """Where C{username} is on any node: the roles live in Redis, not on this node."""

        def parse(held: str | None) -> tuple[int | None, str | None]:
            if held is None:
                return None, None
            match_id, role, _ = held.split("|", 2)
            return int(match_id), role

        return self.store.match_role(username).addCallback(parse)

    async def create_match(self, host: str) -> OngoingMatch:
        record = await self.store.create_hosted_match(host, self.now())
        if record is None:
            raise AlreadyInMatch(host)
        self._arm_cluster_lobby_timer(record.id)
        self._log.info("Match {match} created by {host}", match=record.id, host=host)
        return record

    async def delete_match(self, match_id: int, username: str) -> bool:
        for _ in range(_RETRIES):
            record = await self.store.get_ongoing_match(match_id)
            if record is None:
                return False
            if record.host.lower() != username.lower():
                raise NotTheHost(username)
            if record.is_started:
                raise MatchStarted(match_id)
            code = await self._delete(record)
            if code > 0:
                self._deleted(record, "deleted by its host")
                return True
            if code == GONE:
                return False
        raise StoreError(f"match {match_id} kept changing")

    def _delete(self, record: OngoingMatch, roles: list[tuple[str, str, str]] | None = None
                ) -> Deferred[int]:
        names = [record.host, *([record.challenger] if record.challenger else []),
                 *record.spectators]
        return self.store.change_ongoing_match(
            record.id, record, "delete", None,
            (roles or []) + [("free", name, f"{record.id}|") for name in names])

    def _deleted(self, record: OngoingMatch, why: str) -> None:
        """An unstarted match was deleted: code 4 and close 1000 on every node."""
        self._publish(record.id, {"t": "farewell", "m": frames.MATCH_ENDED})
        timer = self._lobby_timers.pop(record.id, None)
        if timer is not None and timer.active():
            timer.cancel()
        match = self.matches.get(record.id)
        if isinstance(match, ClusterMatch):
            self._end_here(match, frames.MATCH_ENDED)
        self._log.info("Match {match} removed: {why}", match=record.id, why=why)

    # -- lobby timers --------------------------------------------------------------

    def _arm_lobby_timer(self, match: LiveMatch) -> None:
        self._arm_cluster_lobby_timer(match.id)

    def _arm_cluster_lobby_timer(self, match_id: int) -> None:
        timer = self._lobby_timers.pop(match_id, None)
        if timer is not None and timer.active():
            timer.cancel()

        def expire() -> None:
            self._lobby_timers.pop(match_id, None)
            self._track(ensureDeferred(self._lobby_expired(match_id)))

        self._lobby_timers[match_id] = self.clock.callLater(self.lobby_timeout, expire)

    async def _lobby_expired(self, match_id: int) -> None:
        """Delete the match if its host has had no socket on any live node meanwhile."""
        for _ in range(_RETRIES):
            record = await self.store.get_ongoing_match(match_id)
            if record is None or record.is_started:
                return
            held = await self.store.match_role(record.host)
            roles: list[tuple[str, str, str]] = []
            if held is not None:
                seat = held.split("|", 2)[2]
                if seat and await self._node().is_alive(seat.rpartition(":")[0]):
                    return  # connected: the node of that socket arms a timer when it leaves
                roles = [("mine", record.host, held)]
            code = await self._delete(record, roles)
            if code > 0:
                self._deleted(record, "no host for too long")
                return
            if code in (GONE, NOT_MINE):
                return

    # -- joining -------------------------------------------------------------------

    def join(self, match_id: str, username: str, role: Role,  # type: ignore[override]
             socket: MatchSocket) -> Deferred[Seat]:
        return ensureDeferred(self._join(match_id, username, role, socket))

    async def _join(self, raw_id: str, username: str, role: Role, socket: MatchSocket) -> Seat:
        match_id = wire.parse_id(raw_id)
        if match_id is None:
            raise JoinRefused(frames.NO_SUCH_MATCH)
        self._joining[match_id] = self._joining.get(match_id, 0) + 1
        try:
            await self._attach(match_id)
            return await self._claim(match_id, username, role, socket)
        except StoreError:
            self._log.warn("Match {match}: a socket could not join: the store is unavailable",
                           match=match_id)
            raise JoinRefused(frames.UNAVAILABLE) from None
        finally:
            self._joining[match_id] -= 1
            if not self._joining[match_id]:
                del self._joining[match_id]
                match = self.matches.get(match_id)
                if isinstance(match, ClusterMatch):
                    self._detach_if_idle(match)
                elif match is None:
                    self._unsubscribe(self.out_channel(match_id))

    async def _claim(self, match_id: int, username: str, role: Role, socket: MatchSocket) -> Seat:
        key = username.lower()
        for _ in range(_RETRIES):
            record = await self.store.get_ongoing_match(match_id)
            if record is None:
                raise JoinRefused(frames.NO_SUCH_MATCH)
            if role is Role.HOST and record.host.lower() != key:
                raise JoinRefused(frames.NOT_THE_HOST)
            new = record
            if role is Role.CHALLENGER:
                if (record.challenger or key).lower() != key:
                    raise JoinRefused(frames.ALREADY_ELSEWHERE)
                if not record.is_started:
                    # A new socket must say it is ready itself.
                    new = attrs.evolve(record, challenger=username, challenger_ready=False)
            elif role is Role.SPECTATOR:
                if key not in (s.lower() for s in record.spectators):
                    if len(record.spectators) >= self.max_spectators:
                        raise JoinRefused(frames.ALREADY_ELSEWHERE)
                    new = attrs.evolve(record, spectators=record.spectators + (username,))
            # Known here before the change, so that no later change published by
            # another node is dropped for want of a match to apply it to.
            match = self._local_match(record)
            token = f"{match_id}|{role.value}|{self.node_id}:{next(self._seat_numbers)}"
            changed = new != record
            code = await self.store.change_ongoing_match(
                match_id, record, "set" if changed else "keep", new if changed else None,
                [("claim", username, token)])
            if code == CHANGED:
                continue
            if code == GONE:
                raise JoinRefused(frames.NO_SUCH_MATCH)
            if code in (ELSEWHERE, NOT_MINE):
                raise JoinRefused(frames.ALREADY_ELSEWHERE)
            break
        else:
            raise StoreError(f"match {match_id} kept changing")
        match = self._local_match(record)
        self._apply(match, new, code)
        seat = ClusterSeat(self, match, role, username, socket, token=token)
        seat.lobby_changed = changed
        old = match.seats.get((key, role))
        if old is not None:
            self._vacate_local(old)
        match.seats[(key, role)] = seat
        if role is Role.HOST:
            match.host = socket
            timer = self._lobby_timers.pop(match_id, None)
            if timer is not None and timer.active():
                timer.cancel()
        elif role is Role.CHALLENGER:
            match.challenger = socket
        else:
            match.spectators[key] = socket
        self._where[key] = (match_id, role)
        if changed:
            self._publish(match_id, {"t": "lobby", "seq": code, "record": record_json(new)})
        self._publish(match_id, {"t": "seat", "user": key, "role": role.value, "token": token})
        if new.is_started and not match.owner:
            # The game runs elsewhere: this node relays it and watches its owner.
            self._watches.setdefault(match_id, LeaseWatch(self.clock))
        if old is not None and old.socket is not socket:
            old.socket.replaced()
        return seat

    def _welcome(self, seat: Seat) -> None:
        match = seat.match
        if seat.lobby_changed:
            self._broadcast(match, frames.lobby(match.record))
        else:
            seat.socket.sendObject(frames.lobby(match.record))
        if match.record.is_started and not match.ended:
            seat.socket.sendObject(PongGame(self.rules).init_frame())

    def _leave(self, seat: Seat) -> None:
        match = seat.match
        if not isinstance(seat, ClusterSeat) or not isinstance(match, ClusterMatch):
            return
        if match.ended or not seat.current:
            return
        self._vacate_local(seat)
        self._track(ensureDeferred(self._release(seat)))

    async def _release(self, seat: ClusterSeat) -> None:
        match = seat.match
        assert isinstance(match, ClusterMatch)
        try:
            for _ in range(_RETRIES):
                record = await self.store.get_ongoing_match(match.id)
                if record is None:
                    return
                new = record
                op = "release"
                if seat.role is Role.HOST:
                    op = "vacate"
                elif seat.role is Role.CHALLENGER:
                    if record.is_started:
                        op = "vacate"  # the slot stays theirs; they may reconnect
                    else:
                        new = attrs.evolve(record, challenger=None, challenger_ready=False)
                else:
                    key = seat.username.lower()
                    new = attrs.evolve(record, spectators=tuple(
                        s for s in record.spectators if s.lower() != key))
                changed = new != record
                code = await self.store.change_ongoing_match(
                    match.id, record, "set" if changed else "keep", new if changed else None,
                    [(op, seat.username, seat.token)])
                if code == CHANGED:
                    continue
                if code > 0:
                    if seat.role is Role.HOST and not record.is_started:
                        self._arm_cluster_lobby_timer(match.id)
                    if changed:
                        self._publish(match.id, {"t": "lobby", "seq": code,
                                                 "record": record_json(new)})
                        if self._apply(match, new, code):
                            self._broadcast(match, frames.lobby(match.record))
                return  # or gone, or a newer socket holds the seat: nothing to free
        except StoreError as e:
            # The seat stays taken; the same user may connect again to take it back.
            self._log.warn("Match {match}: {user} left, but the store is unavailable: {why}",
                           match=match.id, user=seat.username, why=str(e))
        finally:
            self._detach_if_idle(match)

    # -- the lobby -----------------------------------------------------------------

    def _challenger_ready(self, seat: Seat) -> None:
        if isinstance(seat, ClusterSeat) and seat.current and not seat.match.record.is_started:
            self._track(ensureDeferred(self._ready(seat)))

    async def _ready(self, seat: ClusterSeat) -> None:
        match = seat.match
        assert isinstance(match, ClusterMatch)
        for _ in range(_RETRIES):
            record = await self.store.get_ongoing_match(match.id)
            if record is None or record.is_started or record.challenger_ready:
                return
            new = attrs.evolve(record, challenger_ready=True)
            code = await self.store.change_ongoing_match(
                match.id, record, "set", new, [("mine", seat.username, seat.token)])
            if code == CHANGED:
                continue
            if code > 0:
                self._publish(match.id, {"t": "lobby", "seq": code, "record": record_json(new)})
                if self._apply(match, new, code):
                    self._broadcast(match, frames.lobby(match.record))
            return

    def _start_match(self, seat: Seat) -> bool:
        # Answered asynchronously: "challenger not ready" is sent from _start.
        if isinstance(seat, ClusterSeat) and seat.current and not seat.match.ended:
            self._track(ensureDeferred(self._start(seat)))
        return True

    async def _start(self, seat: ClusterSeat) -> None:
        match = seat.match
        assert isinstance(match, ClusterMatch) and self.leases is not None
        key = self.lease_key(match.id)
        for _ in range(_RETRIES):
            record = await self.store.get_ongoing_match(match.id)
            if record is None or record.is_started:
                return
            if record.challenger is None or not record.challenger_ready:
                seat.socket.sendObject(frames.CHALLENGER_NOT_READY)
                return
            if not await self.leases.acquire(key):
                self._log.warn("Match {match}: its lease is held elsewhere", match=match.id)
                return
            new = attrs.evolve(record, start_timestamp=self.now())
            code = await self.store.change_ongoing_match(
                match.id, record, "set", new, [("mine", seat.username, seat.token)])
            if code == CHANGED:
                continue
            if code <= 0:
                await self.leases.release(key)
                return
            break
        else:
            return
        if match.ended or self.matches.get(match.id) is not match:
            return
        match.owner = True
        self._watches.pop(match.id, None)
        self._apply(match, new, code)
        await self._subscribe(self.input_channel(match.id),
                              lambda raw: self._input(match.id, raw))
        self._publish(match.id, {"t": "started", "seq": code, "record": record_json(new)})
        self._run(match)

    def _run(self, match: ClusterMatch) -> None:
        record = match.record
        match.game = game = PongGame(self.rules)
        self._log.info(
            "Match {match} started on node {node}: {host} against {challenger}",
            match=match.id, node=self.node_id, host=record.host, challenger=record.challenger,
        )
        for socket in list(match.player_sockets()):
            socket.gameStarted()
        self._send_all(match, game.init_frame())
        match.loop = LoopingCall.withCount(lambda count: self._tick(match, count))
        match.loop.clock = self.clock
        d = match.loop.start(self.tick, now=False)
        d.addErrback(lambda f: self._log.failure("Match {match} loop", f, match=match.id))

    def _started_elsewhere(self, match: ClusterMatch) -> None:
        for socket in list(match.player_sockets()):
            socket.gameStarted()
        self._watches.setdefault(match.id, LeaseWatch(self.clock))

    # -- the game --------------------------------------------------------------------

    def _send_all(self, match: LiveMatch, message: Any) -> None:
        """To this node's sockets, and through the out channel to every other node's."""
        payload = wire.encode(message)
        self._send_local(match, payload)
        self._publish(match.id, {"t": "frame", "p": payload.decode()})

    def _tick(self, match: LiveMatch, count: int) -> None:
        self._ticking = match
        try:
            super()._tick(match, count)
        finally:
            self._ticking = None

    def _broadcast(self, match: LiveMatch, message: Any) -> None:
        if match is self._ticking:
            self._send_all(match, message)  # the status of each tick goes everywhere
        else:
            super()._broadcast(match, message)  # lobby frames: each node sends its own

    async def _finish(self, match: LiveMatch) -> None:
        self._publish(match.id, {"t": "over"})
        await super()._finish(match)

    def _farewell(self, match: LiveMatch, last: dict[str, Any]) -> None:
        if isinstance(match, ClusterMatch) and match.game is not None:
            self._publish(match.id, {"t": "farewell", "m": last})
            self._stop_loop(match)
            self._unsubscribe(self.out_channel(match.id))
        super()._farewell(match, last)

    # -- leases ------------------------------------------------------------------------

    async def renew_leases(self) -> None:
        """Every second: renew the lease of every game run here; give up any lost one."""
        assert self.leases is not None
        for match in list(self.matches.values()):
            if not isinstance(match, ClusterMatch) or not match.owner or not match.running:
                continue
            try:
                held = await self.leases.renew(self.lease_key(match.id))
            except StoreError:
                continue  # an outage alone stops nothing
            if not held and match.owner and not match.ended:
                self._log.warn("Match {match}: the lease was lost (this node was taken for"
                               " dead); the game stops here", match=match.id)
                await self._lost(match.id)

    async def watch_leases(self) -> None:
        """Check the owner of every started match run elsewhere."""
        assert self.leases is not None
        for match_id, watch in list(self._watches.items()):
            key = self.lease_key(match_id)
            try:
                holder, pttl = await self.leases.read(key)
                verdict = watch.seen(holder, pttl)
                if verdict == "dead" and await self.store.get_ongoing_match(match_id) is None:
                    self._watches.pop(match_id, None)  # it ended: nothing to drop
                    continue
                if verdict == "dead":
                    if await self.leases.declare_dead(key):
                        self._log.warn("Match {match}: its node {node} is lost", match=match_id,
                                       node=watch.holder or "(unknown)")
                        verdict = "gone"
            except StoreError:
                watch.unreachable()
                continue
            if verdict == "gone" and self._watches.get(match_id) is watch:
                await self._lost(match_id)

    async def discover(self) -> None:
        """Watch every started match of the store that is not run here."""
        records = await self.store.list_ongoing_matches(None, True, 1_000_000, 0)
        for record in records:
            match = self.matches.get(record.id)
            if isinstance(match, ClusterMatch) and match.owner:
                continue
            self._watches.setdefault(record.id, LeaseWatch(self.clock))

    async def _lost(self, match_id: int) -> None:
        """The node running the match is gone: drop it, tell this node's sockets."""
        self._watches.pop(match_id, None)
        match = self.matches.get(match_id)
        if isinstance(match, ClusterMatch):
            self._report(match, "lost")
            match.owner = False
            self._end_here(match, frames.ABORTED_LOST)
        try:
            if await self.store.delete_ongoing_match(match_id):
                self._log.info("Match {match} dropped: no live node runs it", match=match_id)
        except StoreError:
            self._watches.setdefault(match_id, LeaseWatch(self.clock))  # try again later


__all__ = ["ClusterMatchService", "TOMBSTONE"]
