"""
The WebSocket transport: an Autobahn protocol that carries one session's packets,
one packet a frame, or the probe of an upgrade from polling; and the writes around
packets sent alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from gameproto import wire
from gameproto.socketio.engineio.config import EngineError
from gameproto.socketio.engineio.framing import EnginePacket, PacketError, decode_text_packet

if TYPE_CHECKING:
    from gameproto.socketio.engineio.server import EngineIOServer
    from gameproto.socketio.engineio.session import Session


class EngineIOWebSocket(wire.JSONProtocol):
    """
    A thin adapter that turns frames into Engine.IO packets for its L{Session}: the
    session's own transport, or (L{probing}) the probe of its upgrade, whose packets
    the session's state machine judges (the transport's go straight to the session:
    they are the hot path).  The base class has already checked the origin and the
    per-address cap.
    """

    endpoint = "engine.io"
    metrics_protocol = "chat"
    # The session whose packets it carries; None before, and once the session has
    # let it go (an upgrade that failed, a session closed).
    session: Session | None = None
    probing = False
    _sid: str | None = None
    _writes: AloneWrites | None = None

    @property
    def engine(self) -> EngineIOServer:
        engine: EngineIOServer = self.factory.engine
        return engine

    @property
    def address(self) -> str:
        return wire.peer_address(self.peer)

    def carry(self, session: Session, *, probe: bool) -> None:
        """Carry C{session}'s packets, as its transport or as the probe of an upgrade."""
        self.session = session
        self.probing = probe

    def detach(self) -> None:
        """Carry nothing any more: what the client still sends is ignored."""
        self.session = None

    # -- from the client -------------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> Any:
        sid = request.params.get("sid", [None])[0]
        if sid is not None and sid not in self.engine.sessions:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, EngineError.UNKNOWN_SID.message)
        self._sid = sid
        return super().onConnect(request)

    def connectionOpened(self) -> None:
        self.engine.websocket_opened(self, self._sid)

    def textReceived(self, payload: bytes) -> None:
        session = self.session
        if session is None:
            return
        if self._writes is not None:
            self._writes.client_spoke()
        try:
            packet = decode_text_packet(payload.decode("utf-8"))
        except PacketError as e:
            session.invalid_frame(str(e))
            return
        if self.probing:
            session.probe_received(packet)
        else:
            session.packet_received(packet)

    def binaryReceived(self, payload: bytes) -> None:
        session = self.session
        if session is None:
            return
        if self._writes is not None:
            self._writes.client_spoke()
        if self.probing:
            session.probe_received(EnginePacket.message(payload))
        else:
            session.packet_received(EnginePacket.message(payload))

    def connectionClosed(self, code: int | None) -> None:
        if self._writes is not None:
            self._writes.release()  # nothing is written any more: this ends its timer
        if self.session is not None:
            self.session.websocket_closed()

    def serverShuttingDown(self) -> None:
        if self.session is not None:
            self.session.server_shutting_down()
        if self.state == self.STATE_OPEN:
            super().serverShuttingDown()

    # -- to the client ---------------------------------------------------------

    def send_packet(self, packet: EnginePacket, alone: bool = False) -> None:
        """Send C{packet}; with C{alone}, as L{AloneWrites} says."""
        if self.state != self.STATE_OPEN:
            return
        if self._writes is None:
            self._writes = AloneWrites(self.engine.clock, self._write)
        self._writes.send(packet, alone)

    def _write(self, packet: EnginePacket) -> None:
        if self.state != self.STATE_OPEN:
            return
        # One packet a frame (framing.py): binary data bare, text behind its type;
        # framed once per packet, however many sockets it goes to.
        self.sendPreparedMessage(packet.websocket_message)

    def closeWith(self, code: wire.CloseCode, reason: str) -> None:
        # A session may end while its socket is already closing: nothing left to say.
        if self.state == self.STATE_OPEN:
            # What waits behind a packet sent alone goes before the close frame.
            if self._writes is not None:
                self._writes.release()
            super().closeWith(code, reason)


# ---------------------------------------------------------------------------
# Packets sent alone


# How long packets wait behind a packet sent alone while the client says nothing:
# time for a client that handles one WebSocket message per turn to read it first,
# even on a loaded machine.  (The official server only waits for the write to
# complete; measured here, that was not enough for its own test-suite's client.)
ALONE_FOR = 0.01


def call_after_write(clock: IReactorTime, f: Callable[[], None]) -> None:
    """
    Call C{f} once what was written to a transport so far has been handed to the
    kernel.  A turn of a Twisted reactor runs the timed calls that are due, then its
    I/O step, which sends what its transports were given: a call made now runs before
    the next I/O step, and a call that one makes runs after it.
    """
    clock.callLater(0, clock.callLater, 0, f)


class AloneWrites:
    """
    The writes of one WebSocket around packets sent alone.  A packet sent alone is
    written at once; what is sent after it waits until it has been written out, then
    until the client sends something (it has read it) or L{ALONE_FOR} has passed.
    Anything else is written at once, so a turn's packets leave in one write.
    """

    def __init__(self, clock: IReactorTime, write: Callable[[EnginePacket], None]) -> None:
        self._clock = clock
        self._write = write
        # Packets behind a packet sent alone, with their own alone flag; None: none.
        self._held: list[tuple[EnginePacket, bool]] | None = None
        self._written = False
        self._client_spoke = False
        self._timer: IDelayedCall | None = None

    def send(self, packet: EnginePacket, alone: bool = False) -> None:
        if self._held is not None:
            self._held.append((packet, alone))
            return
        self._write(packet)
        if alone:
            self._held = []
            self._written = self._client_spoke = False
            call_after_write(self._clock, self._write_done)

    def client_spoke(self) -> None:
        """A packet from the client: what it says now, it says having read ours."""
        if self._held is None:
            return
        if self._written:
            self.release()
        else:
            self._client_spoke = True

    def release(self) -> None:
        """Write what waits, now (also before a close frame)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        held, self._held = self._held or [], None
        for packet, alone in held:
            # A packet sent alone among them holds the rest again.
            self.send(packet, alone)

    def _write_done(self) -> None:
        if self._held is None:  # released meanwhile (the connection closed)
            return
        self._written = True
        if self._client_spoke:
            self.release()
        else:
            self._timer = self._clock.callLater(ALONE_FOR, self.release)
