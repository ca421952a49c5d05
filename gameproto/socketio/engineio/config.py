"""
What an Engine.IO server is configured with, the errors it answers requests with,
and what an application on top of it implements.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from gameproto.socketio.engineio.session import Session


POLLING = "polling"
WEBSOCKET = "websocket"


@attrs.frozen
class EngineIOConfig:
    """
    The options of one Engine.IO server, with the official server's defaults.
    Times are in seconds; C{max_payload} is in bytes and bounds both a polling POST
    and a WebSocket message.
    """

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    upgrade_timeout: float = 10.0
    max_payload: int = 1_000_000
    transports: tuple[str, ...] = (POLLING, WEBSOCKET)
    allow_upgrades: bool = True
    # Packets per second per client (ClientRates: its user, else its address), over
    # all its sessions and both transports, across reconnects.  None: no limit.
    messages_per_second: float | None = 1000.0
    burst: int = 2000

    @property
    def upgrades_from_polling(self) -> list[str]:
        return [WEBSOCKET] if self.allow_upgrades and WEBSOCKET in self.transports else []

    @property
    def drain_time(self) -> float:
        """
        How long a closed polling session's last packets wait for the client's next
        GET: as long as a live client may go without polling.
        """
        return self.ping_interval + self.ping_timeout


class EngineError(enum.Enum):
    """The official server's request errors: (code, message, HTTP status)."""

    UNKNOWN_TRANSPORT = (0, "Transport unknown", 400)
    UNKNOWN_SID = (1, "Session ID unknown", 400)
    BAD_HANDSHAKE_METHOD = (2, "Bad handshake method", 400)
    BAD_REQUEST = (3, "Bad request", 400)
    FORBIDDEN = (4, "Forbidden", 403)
    UNSUPPORTED_PROTOCOL_VERSION = (5, "Unsupported protocol version", 400)

    @property
    def code(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]

    @property
    def status(self) -> int:
        return self.value[2]


class EngineApp(Protocol):
    """
    What runs on top of Engine.IO.  Each method is called on the reactor thread; an
    exception is logged and closes only that session.
    """

    def session_opened(self, session: "Session") -> None:
        """A new session; messages sent now go out right after the open packet."""

    def message_received(self, session: "Session", data: str | bytes) -> None:
        """A message packet: text, or binary data."""

    def session_closed(self, session: "Session", reason: str) -> None:
        """The session is over; sending to it does nothing any more."""
