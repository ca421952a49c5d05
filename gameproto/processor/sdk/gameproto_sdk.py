"""
gameproto SDK for Python: ``from gameproto_sdk import send``.

``send(command)`` sends any JSON value to the game engine and returns its reply.  A reply
that is an object with an ``"error"`` key raises ``EngineError`` (for instance
``engine call timed out`` when the engine took more than 10 s); the program goes on if it
catches it.
"""

import json
import os
import sys
from typing import BinaryIO

__all__ = ["EngineError", "send"]

_REQUESTS_FD = 3
_REPLIES_FD = 4
_replies: "BinaryIO | None" = None


class EngineError(Exception):
    """The engine answered ``{"error": ...}``."""


def send(command: object) -> object:
    """Send ``command`` (a JSON value) to the engine; return the engine's reply."""
    global _replies
    # Output printed before the call must reach the user before the call does.
    sys.stdout.flush()
    sys.stderr.flush()
    line = json.dumps(command, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    data = (line + "\n").encode("utf-8")
    while data:
        data = data[os.write(_REQUESTS_FD, data):]
    if _replies is None:
        _replies = open(_REPLIES_FD, "rb", closefd=False)
    reply_line = _replies.readline()
    if not reply_line.endswith(b"\n"):
        raise EngineError("engine channel closed")
    reply = json.loads(reply_line)
    if isinstance(reply, dict) and "error" in reply:
        raise EngineError(reply["error"])
    return reply
