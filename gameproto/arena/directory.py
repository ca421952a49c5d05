"""
The arenas that exist: their records (id, owner, configuration), whichever node runs them.

An L{ArenaDirectory} keeps them in the arena part of an L{gameproto.store.IStore}: on a
single node a L{gameproto.store.memory.MemoryStore} of its own (arenas live in memory, a
restart starts with the C{default} arena alone), with several nodes the shared Redis
store, so that every node sees the same arenas and the limits are counted across nodes.
Both stores are held to one contract (C{tests/store_contract.py}, on a real redis-server
too).  Where an arena runs is not recorded here: it is the holder of its lease
(L{gameproto.ownership.Ownership}).

The C{default} arena has no record: it exists on every node, from the options.
"""

from __future__ import annotations

import secrets
import string
from datetime import datetime, timezone
from typing import Any, Final

import attrs
from twisted.internet.interfaces import IReactorTime

from gameproto import wire
from gameproto.arena.config import ArenaConfig
from gameproto.store import ArenaRecord, ArenaTaken, IStore, TooManyArenas
from gameproto.store.memory import MemoryStore

DEFAULT_ARENA: Final = "default"
_RANDOM_ID_ALPHABET = string.ascii_lowercase + string.digits
_RANDOM_ID_LENGTH = 8


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


@attrs.frozen
class ArenaEntry:
    """
    An arena that exists, as its record says: what REST shows of an arena that does not
    run here and whose node does not answer.  C{owner} is C{None} for the C{default}
    arena without C{--arena-owner}.
    """

    id: str
    owner: str | None
    config: ArenaConfig

    def asjson(self) -> dict[str, Any]:
        return {
            "id": self.id, "owner": self.owner, "config": self.config.asdict(), "players": [],
            "started": False, "controller_connected": False,
        }


def _entry(record: ArenaRecord) -> ArenaEntry:
    return ArenaEntry(record.id, record.owner, ArenaConfig.from_dict(record.config))


class ArenaDirectory:
    """The arenas' records in C{records} (see the module's docstring)."""

    def __init__(self, records: IStore, clock: IReactorTime) -> None:
        self.records = records
        self.clock = clock

    @classmethod
    def local(cls, clock: IReactorTime) -> ArenaDirectory:
        """A single node's: in its memory."""
        return cls(MemoryStore(), clock)

    async def add(self, owner: str, config: ArenaConfig, arena_id: str | None,
                  max_per_owner: int, max_arenas: int) -> ArenaEntry:
        """
        Record a new arena of C{owner}, with a random id unless C{arena_id} is given.

        @raise ArenaExists: C{arena_id} is taken (C{default} always is).
        @raise ArenaLimitReached: C{owner} already owns C{max_per_owner} arenas.
        @raise ServerFull: C{max_arenas} arenas exist, C{default} included (it counts toward
            the limit without a record).
        """
        if arena_id == DEFAULT_ARENA:
            raise ArenaExists("an arena with this id already exists", "id")
        created = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        while True:
            chosen = arena_id or "".join(
                secrets.choice(_RANDOM_ID_ALPHABET) for _ in range(_RANDOM_ID_LENGTH)
            )
            record = ArenaRecord(chosen, owner, config.asdict(), created)
            try:
                await self.records.create_arena(record, max_per_owner, max_arenas - 1)
            except ArenaTaken:
                if arena_id is None:
                    continue
                raise ArenaExists("an arena with this id already exists", "id") from None
            except TooManyArenas as e:
                if e.scope == "owner":
                    raise ArenaLimitReached(
                        f"a user may own at most {max_per_owner} arenas") from None
                raise ServerFull(f"this server already runs {max_arenas} arenas") from None
            return ArenaEntry(chosen, owner, config)

    async def get(self, arena_id: str) -> ArenaEntry | None:
        """The arena C{arena_id}, or C{None} (also for anything that is not an arena id)."""
        if wire.parse_name_id(arena_id) is None:
            return None  # not an id: no need to ask the store
        record = await self.records.get_arena(arena_id)
        return None if record is None else _entry(record)

    async def list(self, limit: int, offset: int) -> list[ArenaEntry]:
        """The recorded arenas, in creation order."""
        return [_entry(record) for record in await self.records.list_arenas(limit, offset)]

    async def remove(self, arena_id: str) -> bool:
        """Forget an arena: C{True} if it was recorded."""
        return bool(await self.records.delete_arena(arena_id))
