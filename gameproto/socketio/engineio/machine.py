"""
The state machine of one Engine.IO session (the diagram is in
L{gameproto.socketio.engineio.session}, with the adapter around it): its inputs,
the core its outputs work on, and its transitions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import attrs
from automat import TypeMachineBuilder
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web.server import Request

from gameproto import wire
from gameproto.socketio.engineio.config import POLLING, WEBSOCKET, EngineError
from gameproto.socketio.engineio.framing import EnginePacket, EngineType, PacketError
from gameproto.socketio.engineio.heartbeat import Heartbeat
from gameproto.socketio.engineio.polling import (
    PayloadTooLarge,
    PollingTransport,
    read_payload,
    write_error,
    write_payload,
    write_too_large,
)
from gameproto.socketio.engineio.websocket import EngineIOWebSocket

if TYPE_CHECKING:
    from gameproto.socketio.engineio.server import EngineIOServer
    from gameproto.socketio.engineio.session import Session

CloseCode = wire.CloseCode
_log = Logger()


class SessionInputs(Protocol):
    """Everything that can happen to one Engine.IO session."""

    # The handshake's outcome.
    def openedOverPolling(self) -> None: ...

    def openedOverWebSocket(self, ws: EngineIOWebSocket) -> None: ...

    def refused(self) -> None: ...

    # Polling requests.
    def pollReceived(self, request: Request) -> None: ...

    def postReceived(self, request: Request) -> list[EnginePacket] | None:
        """The packets of a POST to hand to the session one by one; None if refused."""

    def pollAbandoned(self) -> None: ...

    # The upgrade from polling to WebSocket.
    def probeOpened(self, ws: EngineIOWebSocket) -> None: ...

    def probePinged(self) -> None: ...

    def upgradeRequested(self) -> None: ...

    def probeFailed(self, why: str) -> None: ...

    # The WebSocket: the session's transport, or the probe while upgrading.
    def frameInvalid(self, why: str) -> None: ...

    def websocketClosed(self) -> None: ...

    # The ends.
    def pingTimedOut(self) -> None: ...

    def clientClosed(self) -> None: ...

    def appClosed(self, reason: str) -> None: ...

    def failed(self, reason: str, code: CloseCode) -> None: ...

    def shuttingDown(self) -> None: ...

    def drained(self) -> None: ...


class Outgoing(Protocol):
    """Where the packets of L{Session.send} go: the current transport."""

    def send_packet(self, packet: EnginePacket, alone: bool = False) -> None: ...


class _Nowhere:
    """A closed session's transport."""

    def send_packet(self, packet: EnginePacket, alone: bool = False) -> None:
        pass


NOWHERE = _Nowhere()


@attrs.define(eq=False)
class SessionCore:
    session: "Session"
    engine: "EngineIOServer"
    polling: PollingTransport
    heartbeat: Heartbeat
    outgoing: Outgoing = NOWHERE
    transport: str = POLLING
    closed: bool = False
    websocket: EngineIOWebSocket | None = None
    probe: EngineIOWebSocket | None = None
    upgrade_timer: IDelayedCall | None = None
    # Closing: what the client's next GET gets, until drain_timer.
    last_packets: list[EnginePacket] = attrs.Factory(list)
    drain_timer: IDelayedCall | None = None

    def send_open_packet(self, upgrades: list[str]) -> None:
        config = self.engine.config
        handshake = {
            "sid": self.session.sid,
            "upgrades": upgrades,
            "pingInterval": round(config.ping_interval * 1000),
            "pingTimeout": round(config.ping_timeout * 1000),
            "maxPayload": config.max_payload,
        }
        # Alone: an app's first messages (sent in session_opened) follow in a write
        # of their own, as from the official server.
        self.outgoing.send_packet(
            EnginePacket(EngineType.OPEN, wire.encode(handshake).decode("ascii")), alone=True
        )
        self.heartbeat.start()

    def stop_upgrade_timer(self) -> None:
        if self.upgrade_timer is not None and self.upgrade_timer.active():
            self.upgrade_timer.cancel()
        self.upgrade_timer = None

    def end_upgrade(self, why: str, code: CloseCode = CloseCode.BAD_REQUEST) -> None:
        """Let the probe go, closed with C{why}: the session stays on polling."""
        self.stop_upgrade_timer()
        probe, self.probe = self.probe, None
        if probe is not None:
            probe.detach()
            probe.closeWith(code, why)

    def ending(self) -> None:
        """What every end does first: nothing is sent, timed or counted any more."""
        self.closed = True
        self.outgoing = NOWHERE
        self.heartbeat.stop()
        self.engine.forget(self.session)
        self.end_upgrade("session closed", CloseCode.NORMAL)

    def ended(self, reason: str) -> None:
        _log.info("Engine.IO session {sid} closed ({reason})", sid=self.session.sid, reason=reason)
        try:
            self.engine.app.session_closed(self.session, reason)
        except Exception:
            _log.failure("Engine.IO app failed in session_closed for {sid}", sid=self.session.sid)

    def end_polling(self, reason: str, farewell: EngineType = EngineType.CLOSE) -> None:
        """
        End a polling session now.  C{farewell} answers a held GET: the close packet
        when the server ends the session, a noop when the client asked to close.
        With no GET held, what waits is dropped: the client is gone.
        """
        self.ending()
        self.polling.answer(self.polling.take() + [EnginePacket(farewell)])
        self.ended(reason)

    def end_websocket(self, reason: str, code: CloseCode = CloseCode.NORMAL) -> None:
        self.ending()
        ws, self.websocket = self.websocket, None
        assert ws is not None
        ws.detach()
        ws.closeWith(code, reason)
        self.ended(reason)


builder = TypeMachineBuilder(SessionInputs, SessionCore)
Opening = builder.state("Opening")
Polling = builder.state("Polling")
Probing = builder.state("Probing")
Upgrading = builder.state("Upgrading")
WebSocket = builder.state("WebSocket")
Closing = builder.state("Closing")
Closed = builder.state("Closed")

_OVER_POLLING = (Polling, Probing, Upgrading)
_UPGRADING = (Probing, Upgrading)
_OVER = (Closing, Closed)


def _ignore(inputs: SessionInputs, core: SessionCore, *args: Any, **kwargs: Any) -> None:
    pass


# -- opening ----------------------------------------------------------------------


@Opening.upon(SessionInputs.openedOverPolling).to(Polling)
def open_polling(inputs: SessionInputs, core: SessionCore) -> None:
    core.outgoing = core.polling
    core.send_open_packet(core.engine.config.upgrades_from_polling)


@Opening.upon(SessionInputs.openedOverWebSocket).to(WebSocket)
def open_websocket(inputs: SessionInputs, core: SessionCore, ws: EngineIOWebSocket) -> None:
    ws.carry(core.session, probe=False)
    core.websocket = core.outgoing = ws
    core.transport = WEBSOCKET
    core.send_open_packet([])


@Opening.upon(SessionInputs.refused).to(Closed)
def refuse(inputs: SessionInputs, core: SessionCore) -> None:
    # Never opened: the app never hears of it.
    core.closed = True
    core.engine.forget(core.session)


# -- polling requests ---------------------------------------------------------------


def _hold_poll(inputs: SessionInputs, core: SessionCore, request: Request) -> None:
    if core.polling.holding:
        # Two GETs at once: the official server refuses the second and ends the
        # session; the first one gets the close packet.
        write_error(request, EngineError.BAD_REQUEST)
        inputs.failed("overlapping poll", CloseCode.NORMAL)
        return
    core.polling.hold(request)


for _state in (Polling, Probing):
    _state.upon(SessionInputs.pollReceived).loop()(_hold_poll)


@Upgrading.upon(SessionInputs.pollReceived).loop()
def release_poll(inputs: SessionInputs, core: SessionCore, request: Request) -> None:
    # The client is moving to the WebSocket: release the poll at once.
    write_payload(request, [EnginePacket(EngineType.NOOP)], core.engine.traffic)


@Closing.upon(SessionInputs.pollReceived).to(Closed)
def last_poll(inputs: SessionInputs, core: SessionCore, request: Request) -> None:
    write_payload(request, core.last_packets, core.engine.traffic)
    forget_last_packets(inputs, core)


def _poll_mismatch(inputs: SessionInputs, core: SessionCore, request: Request) -> None:
    # Polling a session that moved to WebSocket: a transport mismatch.
    write_error(request, EngineError.BAD_REQUEST)


def _poll_unknown_sid(inputs: SessionInputs, core: SessionCore, request: Request) -> None:
    write_error(request, EngineError.UNKNOWN_SID)


WebSocket.upon(SessionInputs.pollReceived).loop()(_poll_mismatch)
Closed.upon(SessionInputs.pollReceived).loop()(_poll_unknown_sid)


def _read_post(
    inputs: SessionInputs, core: SessionCore, request: Request
) -> list[EnginePacket] | None:
    try:
        return read_payload(request, core.engine.config.max_payload, core.engine.traffic)
    except PayloadTooLarge:
        write_too_large(request)
        inputs.failed("payload too large", CloseCode.NORMAL)
    except PacketError as e:
        write_error(request, EngineError.BAD_REQUEST)
        _log.info("Engine.IO session {sid}: invalid packet ({why})", sid=core.session.sid, why=str(e))
        inputs.failed("parse error", CloseCode.NORMAL)
    return None


def _post_mismatch(
    inputs: SessionInputs, core: SessionCore, request: Request
) -> list[EnginePacket] | None:
    write_error(request, EngineError.BAD_REQUEST)
    return None


def _post_unknown_sid(
    inputs: SessionInputs, core: SessionCore, request: Request
) -> list[EnginePacket] | None:
    write_error(request, EngineError.UNKNOWN_SID)
    return None


for _state in _OVER_POLLING:
    _state.upon(SessionInputs.postReceived).loop()(_read_post)
WebSocket.upon(SessionInputs.postReceived).loop()(_post_mismatch)
for _state in _OVER:
    _state.upon(SessionInputs.postReceived).loop()(_post_unknown_sid)


@Polling.upon(SessionInputs.pollAbandoned).to(Closed)
def poll_abandoned(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_polling("transport error")


for _state in _UPGRADING:
    _state.upon(SessionInputs.pollAbandoned).to(Closed)(poll_abandoned)
for _state in (WebSocket, *_OVER):
    _state.upon(SessionInputs.pollAbandoned).loop()(_ignore)


# -- the upgrade ------------------------------------------------------------------


@Polling.upon(SessionInputs.probeOpened).to(Probing)
def start_probe(inputs: SessionInputs, core: SessionCore, ws: EngineIOWebSocket) -> None:
    ws.carry(core.session, probe=True)
    core.probe = ws
    core.upgrade_timer = core.engine.clock.callLater(
        core.engine.config.upgrade_timeout, inputs.probeFailed, "upgrade timeout"
    )


def _cannot_upgrade(inputs: SessionInputs, core: SessionCore, ws: EngineIOWebSocket) -> None:
    # As the official server: accept, then close; a refused upgrade would be an
    # unhandled error in some clients.
    ws.closeWith(CloseCode.BAD_REQUEST, "session cannot upgrade")


def _no_session(inputs: SessionInputs, core: SessionCore, ws: EngineIOWebSocket) -> None:
    ws.closeWith(CloseCode.NOT_FOUND, EngineError.UNKNOWN_SID.message)


for _state in (Probing, Upgrading, WebSocket):
    _state.upon(SessionInputs.probeOpened).loop()(_cannot_upgrade)
for _state in _OVER:
    _state.upon(SessionInputs.probeOpened).loop()(_no_session)


@Probing.upon(SessionInputs.probePinged).to(Upgrading)
def answer_probe(inputs: SessionInputs, core: SessionCore) -> None:
    assert core.probe is not None
    core.probe.send_packet(EnginePacket(EngineType.PONG, "probe"))
    # From now on polls are released at once, the one held too.
    core.polling.answer([EnginePacket(EngineType.NOOP)])


@Upgrading.upon(SessionInputs.upgradeRequested).to(WebSocket)
def upgrade(inputs: SessionInputs, core: SessionCore) -> None:
    core.stop_upgrade_timer()
    ws, core.probe = core.probe, None
    assert ws is not None
    ws.carry(core.session, probe=False)
    core.websocket = core.outgoing = ws
    core.transport = WEBSOCKET
    core.engine.polling_ended(core.session)
    _log.debug("Engine.IO session {sid} upgraded to websocket", sid=core.session.sid)
    for packet in core.polling.take():
        ws.send_packet(packet)


def _unexpected(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_upgrade("unexpected packet during upgrade")


def _probe_failed(inputs: SessionInputs, core: SessionCore, why: str) -> None:
    core.end_upgrade(why)


def _probe_invalid(inputs: SessionInputs, core: SessionCore, why: str) -> None:
    _log.info("Engine.IO session {sid}: invalid packet ({why})", sid=core.session.sid, why=why)
    core.end_upgrade("invalid probe packet")


def _probe_closed(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_upgrade("probe closed")


Upgrading.upon(SessionInputs.probePinged).to(Polling)(_unexpected)
Probing.upon(SessionInputs.upgradeRequested).to(Polling)(_unexpected)
for _state in _UPGRADING:
    _state.upon(SessionInputs.probeFailed).to(Polling)(_probe_failed)
    _state.upon(SessionInputs.frameInvalid).to(Polling)(_probe_invalid)
    _state.upon(SessionInputs.websocketClosed).to(Polling)(_probe_closed)
for _state in (Polling, WebSocket, *_OVER):
    # No probe any more (it was let go of): nothing to judge.
    _state.upon(SessionInputs.probePinged).loop()(_ignore)
    _state.upon(SessionInputs.upgradeRequested).loop()(_ignore)
    _state.upon(SessionInputs.probeFailed).loop()(_ignore)
for _state in (Polling, *_OVER):
    _state.upon(SessionInputs.frameInvalid).loop()(_ignore)
    _state.upon(SessionInputs.websocketClosed).loop()(_ignore)


# -- the ends -----------------------------------------------------------------------


@Polling.upon(SessionInputs.appClosed).to(Closing)
def close_polling(inputs: SessionInputs, core: SessionCore, reason: str) -> None:
    # What was sent before the close (a Socket.IO disconnect, say) and the close
    # packet go to the held GET, or wait for the next one.
    core.ending()
    last = core.polling.take() + [EnginePacket(EngineType.CLOSE)]
    if core.polling.answer(last):
        inputs.drained()
    else:
        core.last_packets = last
        core.drain_timer = core.engine.clock.callLater(core.engine.config.drain_time, inputs.drained)
        core.engine.draining(core.session)
    core.ended(reason)


@Closing.upon(SessionInputs.drained).to(Closed)
def forget_last_packets(inputs: SessionInputs, core: SessionCore) -> None:
    if core.drain_timer is not None and core.drain_timer.active():
        core.drain_timer.cancel()
    core.drain_timer = None
    core.last_packets = []
    core.engine.drained(core.session)


# A server going down drops what waits: it will not be there for the next GET.
Closing.upon(SessionInputs.shuttingDown).to(Closed)(forget_last_packets)


@Polling.upon(SessionInputs.pingTimedOut).to(Closed)
def ping_timed_out_polling(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_polling("ping timeout")


@Polling.upon(SessionInputs.clientClosed).to(Closed)
def client_closed_polling(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_polling("transport close", farewell=EngineType.NOOP)


@Polling.upon(SessionInputs.failed).to(Closed)
def failed_polling(inputs: SessionInputs, core: SessionCore, reason: str, code: CloseCode) -> None:
    core.end_polling(reason)


@Polling.upon(SessionInputs.shuttingDown).to(Closed)
def shutting_down_polling(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_polling("server shutting down")


for _state in _UPGRADING:
    _state.upon(SessionInputs.appClosed).to(Closing)(close_polling)
    _state.upon(SessionInputs.pingTimedOut).to(Closed)(ping_timed_out_polling)
    _state.upon(SessionInputs.clientClosed).to(Closed)(client_closed_polling)
    _state.upon(SessionInputs.failed).to(Closed)(failed_polling)
    _state.upon(SessionInputs.shuttingDown).to(Closed)(shutting_down_polling)


@WebSocket.upon(SessionInputs.appClosed).to(Closed)
def close_websocket(inputs: SessionInputs, core: SessionCore, reason: str) -> None:
    core.end_websocket(reason)


@WebSocket.upon(SessionInputs.pingTimedOut).to(Closed)
def ping_timed_out_websocket(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_websocket("ping timeout")


@WebSocket.upon(SessionInputs.clientClosed).to(Closed)
def client_closed_websocket(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_websocket("transport close")


@WebSocket.upon(SessionInputs.websocketClosed).to(Closed)
def websocket_closed(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_websocket("transport close")


@WebSocket.upon(SessionInputs.frameInvalid).to(Closed)
def frame_invalid(inputs: SessionInputs, core: SessionCore, why: str) -> None:
    _log.info("Engine.IO session {sid}: invalid packet ({why})", sid=core.session.sid, why=why)
    core.end_websocket("parse error", CloseCode.BAD_REQUEST)


@WebSocket.upon(SessionInputs.failed).to(Closed)
def failed_websocket(inputs: SessionInputs, core: SessionCore, reason: str, code: CloseCode) -> None:
    core.end_websocket(reason, code)


@WebSocket.upon(SessionInputs.shuttingDown).to(Closed)
def shutting_down_websocket(inputs: SessionInputs, core: SessionCore) -> None:
    core.end_websocket("server shutting down", CloseCode.SHUTTING_DOWN)


for _state in _OVER:
    for _input in (
        SessionInputs.appClosed,
        SessionInputs.pingTimedOut,
        SessionInputs.clientClosed,
        SessionInputs.failed,
    ):
        _state.upon(_input).loop()(_ignore)
Closed.upon(SessionInputs.shuttingDown).loop()(_ignore)
Closed.upon(SessionInputs.drained).loop()(_ignore)

SessionMachine = builder.build()
