"""
Who holds which name in which room.  The chat asks L{IPresence} and never looks at
how it is stored: L{LocalPresence} serves one process; a Redis-backed version
(a key per name with a TTL refreshed by each node) can replace it for several nodes
without touching the chat.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import Interface, implementer


class IPresence(Interface):
    """Unique names per room; every method answers with a Deferred."""

    def claim(room: str, key: str, name: str = "") -> "Deferred[bool]":
        """
        Take C{key} in C{room} if nobody holds it: C{True} if this caller now holds
        it, C{False} if someone else does.  Atomic: of two racing claims one wins.
        C{name} is the name as displayed, for announcements made on the holder's
        behalf (when its node dies).
        """

    def release(room: str, key: str) -> "Deferred[None]":
        """Give C{key} in C{room} back; releasing a key not held does nothing."""


@implementer(IPresence)
class LocalPresence:
    """The names of one process, in memory."""

    def __init__(self) -> None:
        self._rooms: dict[str, set[str]] = {}

    def claim(self, room: str, key: str, name: str = "") -> "Deferred[bool]":
        held = self._rooms.setdefault(room, set())
        if key in held:
            return succeed(False)
        held.add(key)
        return succeed(True)

    def release(self, room: str, key: str) -> "Deferred[None]":
        held = self._rooms.get(room)
        if held is not None:
            held.discard(key)
            if not held:
                del self._rooms[room]
        return succeed(None)

    def holders(self, room: str) -> frozenset[str]:
        """The keys held in C{room} (for tests and metrics)."""
        return frozenset(self._rooms.get(room, ()))
