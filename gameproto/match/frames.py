"""
Every frame and JSON shape of the match protocol (specs/match.md, DESIGN.md §4 "match"),
in one place so that the protocol, the service and the REST API say the same thing.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from gameproto.rest import timestamp
from gameproto.store import CompletedMatch, OngoingMatch
from gameproto.wire import CloseCode


class Role(enum.Enum):
    """What a connection is to its match, as named in the query string."""

    HOST = "host"
    CHALLENGER = "challenger"
    SPECTATOR = "spectator"


SUCCESS = {"status": "success", "code": 0}


@attrs.frozen
class Refusal:
    """A handshake that fails a check: one error frame, then a close."""

    code: int
    error: str
    close: CloseCode

    def frame(self) -> dict[str, Any]:
        return {"error": self.error, "code": self.code}


# The handshake checks, in the order DESIGN.md runs them.
UNAUTHENTICATED = Refusal(6, "unauthenticated user, please send auth token", CloseCode.UNAUTHENTICATED)
BAD_QUERY_KEY = Refusal(7, "bad key in query string. expected: role", CloseCode.BAD_REQUEST)
BAD_QUERY_VALUE = Refusal(
    7, "bad value in query string. expected: [spectator, host, challenger]", CloseCode.BAD_REQUEST
)
NO_SUCH_MATCH = Refusal(5, "non existent requested match", CloseCode.NOT_FOUND)
NOT_THE_HOST = Refusal(8, "trying to join a match as host which you did not start", CloseCode.NORMAL)
ALREADY_ELSEWHERE = Refusal(
    9,
    "trying to join a match while already in another match or the match is full",
    CloseCode.NORMAL,
)

# Errors in answer to a client's message.
NO_COMMAND = {"error": "no command sent", "code": 2}
INVALID_COMMAND = {"error": "invalid command", "code": 2}
# Sent at most once a second while a player's messages are dropped over its rate.
RATE_LIMITED = {"error": "rate limit exceeded, message dropped", "code": 2}
CHALLENGER_NOT_READY = {"error": "challenger not ready", "code": 3}
MATCH_ENDED = {"error": "match ended, stop sending commands", "code": 4}
SHUTTING_DOWN = {"error": "server shutting down", "code": 4}
# The result of a finished match could not be stored (the store is down): no Elo change.
ABORTED_NOT_RECORDED = {"message_type": "aborted", "reason": "the result could not be recorded"}


def lobby(match: OngoingMatch) -> dict[str, Any]:
    return {
        "message_type": "lobby",
        "challenger": match.challenger,
        "challenger_ready": match.challenger_ready,
        "spectators": len(match.spectators),
    }


def ongoing_json(match: OngoingMatch) -> dict[str, Any]:
    """An ongoing match as the REST API shows it."""
    return {
        "id": match.id,
        "host": match.host,
        "challenger": match.challenger,
        "challenger_ready": match.challenger_ready,
        "spectators": list(match.spectators),
        "is_full": match.is_full,
        "is_started": match.is_started,
        "creation_timestamp": timestamp(match.creation_timestamp),
        "start_timestamp": timestamp(match.start_timestamp),
    }


def completed_json(match: CompletedMatch) -> dict[str, Any]:
    """A completed match as the REST API shows it: the C{end} frame's fields."""
    return {
        "id": match.id,
        "winner": match.winner,
        "loser": match.loser,
        "start_timestamp": timestamp(match.start_timestamp),
        "completion_timestamp": timestamp(match.completion_timestamp),
        "winner_score": match.winner_score,
        "loser_score": match.loser_score,
        "winner_elo_before_match": match.winner_elo_before_match,
        "loser_elo_before_match": match.loser_elo_before_match,
        "winner_elo_after_match": match.winner_elo_after_match,
        "loser_elo_after_match": match.loser_elo_after_match,
    }


def end(match: CompletedMatch) -> dict[str, Any]:
    return {"message_type": "end", **completed_json(match)}
# The node running a match across nodes was lost (DESIGN.md §3): no result, no Elo change.
ABORTED_LOST = {"message_type": "aborted", "reason": "match server lost"}
# Across nodes only: the shared store could not be reached while admitting a socket.
UNAVAILABLE = Refusal(10, "match service unavailable, try again", CloseCode.INTERNAL_ERROR)
