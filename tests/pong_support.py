"""
What the tests of programs playing Pong share: the example bots' code, and a human host
on a real match WebSocket who never moves.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred

from gameproto.client import match as match_client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTENSIONS = {"python": "py", "javascript": "js", "ruby": "rb", "php": "php"}


def example_bot(language: str) -> str:
    with open(os.path.join(ROOT, "examples", f"pong_bot.{EXTENSIONS[language]}")) as f:
        return f.read()


class HumanHost:
    """
    A host on a match WebSocket who starts the game once the challenger is ready and never
    moves; it keeps the frames it was sent.
    """

    def __init__(self, socket: match_client.MatchClient) -> None:
        self.socket = socket
        self.frames: list[dict[str, Any]] = []
        self.started = False
        self.watchers: list[tuple[Any, Deferred[dict[str, Any]]]] = []
        socket.keep_frames = False
        socket.on_frame = self.frame

    def frame(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        if (frame.get("message_type") == "lobby" and frame["challenger_ready"]
                and not self.started):
            self.started = True
            self.socket.command("start_match")
        for watcher in list(self.watchers):
            if watcher[0](frame):
                self.watchers.remove(watcher)
                watcher[1].callback(frame)

    def when(self, predicate: Any) -> Deferred[dict[str, Any]]:
        """Fires with the first frame from now on that satisfies C{predicate}."""
        seen: Deferred[dict[str, Any]] = Deferred()
        self.watchers.append((predicate, seen))
        return seen
