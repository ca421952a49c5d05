"""
The messages of the processor endpoint (specs/processor.md): the client's C{context}, and
what every server message carries.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime

from gameproto import wire
from gameproto.processor.languages import LANGUAGES

SERVER_ERROR = "SERVER_ERROR"
INTERPRETER_ERROR = "INTERPRETER_ERROR"
NO_SUCH_ARENA = "no such arena"
ARENAS_UNREACHABLE = "the arena's node cannot be reached; try again"
ENGINES = ("client", "arena", "match")
#: The seats a program may take in a match.
SEAT_ROLES = ("host", "challenger")
_ECHO_LIMIT = 50


@attrs.frozen
class Context:
    """A validated C{context} message."""

    language: str
    engine: str = "client"
    arena: str | None = None
    # The match engine's seat; none when the program matchmakes.
    match: str | None = None
    role: str | None = None


class BadContext(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def echo(value: str) -> str:
    """What an error message repeats of a client's value: its first 50 characters."""
    return value[:_ECHO_LIMIT]


def parse_context(message: dict[str, Any]) -> Context:
    """
    C{{"type": "context", "language": ..., "engine": "client"|"arena"|"match", "arena": id,
    "match": id, "role": "host"|"challenger"}}.  C{engine} defaults to C{"client"};
    C{arena} is required with the arena engine; C{match} and C{role} go together with
    the match engine (without them the program matchmakes); each is ignored with the
    other engines, like any other member.

    @raise BadContext: with the SERVER_ERROR text.
    """
    language = message.get("language")
    if not isinstance(language, str):
        raise BadContext("context: language must be one of " + ", ".join(LANGUAGES))
    if language not in LANGUAGES:
        raise BadContext(f"unknown language: {echo(language)}")
    engine = message.get("engine", "client")
    if engine not in ENGINES:
        raise BadContext('context: engine must be "client", "arena" or "match"')
    arena = None
    if engine == "arena":
        arena = message.get("arena")
        if not isinstance(arena, str) or not arena:
            raise BadContext("context: the arena engine needs an arena id")
        if wire.parse_name_id(arena) is None:
            raise BadContext(f"no such arena: {echo(arena)}")
    if engine == "match":
        return _match_context(language, message)
    return Context(language, engine, arena)


def _match_context(language: str, message: dict[str, Any]) -> Context:
    match, role = message.get("match"), message.get("role")
    if match is None and role is None:
        return Context(language, "match")  # the program matchmakes
    if isinstance(match, int) and not isinstance(match, bool) and match >= 0:
        match = str(match)
    if not isinstance(match, str) or wire.parse_id(match) is None:
        raise BadContext('context: "match" must be a match id (with "role")')
    if role not in SEAT_ROLES:
        raise BadContext('context: "role" must be "host" or "challenger" (with "match")')
    return Context(language, "match", match=match, role=role)


def now_ms(clock: IReactorTime) -> str:
    return str(int(clock.seconds() * 1000))
