"""
The match sink of nodes sharing one bus (L{gameproto.match.sink.IMatchSink}): this
node's sockets, and the other nodes through two channels per match.

- C{gp:match:{id}:out}: every event of the match (gameproto.match.sink), listened
  to by each node while it has sockets in the match.  A node applies its own
  events as it tells them, and skips them when they come back.
- C{gp:match:{id}:input}: the paddle commands of players connected to other nodes,
  listened to by the node that runs the game.

What a node tells during one reactor turn goes out as one message
C{{"node", "items": [...]}} (L{gameproto.bus.Outbox}), in order.  Items on the out
channel: C{{"t": "lobby", "seq", "record"}}, C{{"t": "seat", "user", "role",
"node", "number"}}, C{{"t": "started", "seq", "record"}}, C{{"t": "frame", "p"}},
C{{"t": "over"}}, C{{"t": "farewell", "m"}}; a record is the Redis store's JSON
text of it.  On the input channel: C{{"side": "left"|"right", "c": "up"|...}}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from gameproto import wire
from gameproto.bus import IBus, Outbox, Subscription
from gameproto.match.directory import SeatRef
from gameproto.match.frames import Role
from gameproto.match.pong import PaddleCommand, Side
from gameproto.match.sink import (
    EventHandler,
    Farewell,
    GameFrame,
    GameOver,
    GameStarted,
    IMatchSink,
    InputHandler,
    LobbyChanged,
    MatchEvent,
    SeatTaken,
    deliver,
)
from gameproto.store.redis import ongoing_json, ongoing_record

if TYPE_CHECKING:
    from gameproto.match.live import LiveMatch

# How long a stopping node waits for what it told to leave.
DRAIN_TIMEOUT = 1.0


def event_json(event: MatchEvent) -> dict[str, Any]:
    if isinstance(event, GameFrame):
        return {"t": "frame", "p": event.payload.decode()}
    if isinstance(event, LobbyChanged):
        return {"t": "lobby", "seq": event.seq, "record": ongoing_json(event.record)}
    if isinstance(event, GameStarted):
        return {"t": "started", "seq": event.seq, "record": ongoing_json(event.record)}
    if isinstance(event, SeatTaken):
        return {"t": "seat", "user": event.username, "role": event.role.value,
                "node": event.seat.node, "number": event.seat.number}
    if isinstance(event, GameOver):
        return {"t": "over"}
    return {"t": "farewell", "m": event.last}


def event_from_json(item: dict[str, Any]) -> MatchEvent:
    kind = item["t"]
    if kind == "frame":
        return GameFrame(item["p"].encode())
    if kind in ("lobby", "started"):
        record = ongoing_record(item["record"])
        assert record is not None
        return (LobbyChanged if kind == "lobby" else GameStarted)(item["seq"], record)
    if kind == "seat":
        return SeatTaken(item["user"], Role(item["role"]), SeatRef(item["node"], item["number"]))
    if kind == "over":
        return GameOver()
    return Farewell(item["m"])


@implementer(IMatchSink)
class RelaySink:
    _log = Logger()

    def __init__(self, bus: IBus, clock: IReactorTime, node_id: str, prefix: str = "gp:") -> None:
        self.bus = bus
        self.clock = clock
        self.node_id = node_id
        self.prefix = prefix
        self._subscriptions: dict[str, Deferred[Subscription]] = {}
        self._outboxes: dict[str, Outbox] = {}

    def out_channel(self, match_id: int) -> str:
        return f"{self.prefix}match:{match_id}:out"

    def input_channel(self, match_id: int) -> str:
        return f"{self.prefix}match:{match_id}:input"

    # -- telling -----------------------------------------------------------------------

    def frame(self, match: LiveMatch, payload: bytes) -> None:
        deliver(match.sockets(), payload)
        self._outbox(self.out_channel(match.id)).put({"t": "frame", "p": payload.decode()})

    def tell(self, match_id: int, event: MatchEvent) -> None:
        self._outbox(self.out_channel(match_id)).put(event_json(event))

    def forward(self, match_id: int, side: Side, command: PaddleCommand) -> None:
        self._outbox(self.input_channel(match_id)).put({"side": side.value, "c": command.value})

    def drained(self) -> Deferred[None]:
        waits = []
        for box in list(self._outboxes.values()):
            d = box.drained()
            d.addTimeout(DRAIN_TIMEOUT, self.clock)
            waits.append(d)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    def _outbox(self, channel: str) -> Outbox:
        box = self._outboxes.get(channel)
        if box is None:
            box = self._outboxes[channel] = Outbox(self.bus, self.clock, channel,
                                                   {"node": self.node_id})
        return box

    # -- hearing -----------------------------------------------------------------------

    def listen(self, match_id: int, hear: EventHandler) -> Deferred[None]:
        return self._subscribe(self.out_channel(match_id), lambda raw: self._events(raw, hear))

    def forget(self, match_id: int) -> None:
        self._unsubscribe(self.out_channel(match_id))
        if self.input_channel(match_id) not in self._subscriptions:
            self._drop_outbox(self.input_channel(match_id))  # what this node forwarded

    def listen_inputs(self, match_id: int, hear: InputHandler) -> Deferred[None]:
        return self._subscribe(self.input_channel(match_id), lambda raw: self._inputs(raw, hear))

    def forget_inputs(self, match_id: int) -> None:
        self._unsubscribe(self.input_channel(match_id))

    def _events(self, raw: str, hear: EventHandler) -> None:
        message = wire.decode(raw)
        if message.get("node") == self.node_id:
            return  # applied here already
        for item in message["items"]:
            hear(event_from_json(item))

    def _inputs(self, raw: str, hear: InputHandler) -> None:
        for item in wire.decode(raw)["items"]:
            command = PaddleCommand.parse(item.get("c", ""))
            if command is not None and item.get("side") in ("left", "right"):
                hear(Side(item["side"]), command)

    def _subscribe(self, channel: str, handler: Callable[[str], None]) -> Deferred[None]:
        """Listen to C{channel} (once: a second listener shares the first's handler)."""
        d = self._subscriptions.get(channel)
        if d is None:
            d = self._subscriptions[channel] = self.bus.subscribe(channel, handler)
        listening: Deferred[None] = Deferred()

        def ready(subscription: Any) -> Any:
            listening.callback(None)
            return subscription

        d.addCallback(ready)
        return listening

    def _unsubscribe(self, channel: str) -> None:
        d = self._subscriptions.pop(channel, None)
        if d is not None:
            d.addCallback(Subscription.cancel)
        self._drop_outbox(channel)

    def _drop_outbox(self, channel: str) -> None:
        box = self._outboxes.get(channel)
        if box is not None:
            # Forgotten once what was told has gone (unless told again meanwhile).
            box.drained().addCallback(
                lambda _: self._outboxes.pop(channel, None)
                if self._outboxes.get(channel) is box else None)

