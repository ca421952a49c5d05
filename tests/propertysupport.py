"""
What the property-based tests share: the Hypothesis settings profile they run under,
the strategies of JSON values, text and client frames, and a whole server on a Clock
for the protocol machines.

The profile is deterministic (C{derandomize}: the examples follow from the test's
source, so a CI failure replays on any machine) and writes no example database.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import Any, Callable

import attrs
import txaio
from hypothesis import HealthCheck, settings, strategies as st
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from gameproto.auth import token_digest
from gameproto.server import GameprotoServer, ServerConfig
from gameproto.store import TokenRecord, User
from gameproto.store.memory import MemoryStore
from gameproto.testing import BINARY, CLOSE, TEXT, HTTPResponse, WebSocketClient, request

settings.register_profile(
    "gameproto",
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("gameproto")

# Text a JSON codec can carry: any code point but the lone surrogates, which UTF-8
# cannot encode.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)

# The values orjson round-trips: integers within 64 bits, finite floats.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)


def json_values(scalars: st.SearchStrategy[Any] = json_scalars) -> st.SearchStrategy[Any]:
    """Any JSON value: nested lists and objects of C{scalars}."""
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(text, children, max_size=4),
        max_leaves=12,
    )


json_objects = st.dictionaries(text, json_values(), max_size=4)


def commands(objects: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """The steps that send C{objects} as JSON text frames."""
    return st.tuples(st.just("json"), objects)


def frames(valid: st.SearchStrategy[tuple[str, Any]], weight: int = 2,
           longest_pause: int = 300) -> st.SearchStrategy[tuple[str, Any]]:
    """
    One step of a client: a C{valid} step of the protocol (twice as likely as each
    other kind), any JSON object or value, text that is not JSON, a binary frame or
    a pause of the clock.
    """
    return st.one_of(
        valid,
        valid,
        commands(json_objects),
        commands(json_values()),
        st.tuples(st.just("text"), text),
        st.tuples(st.just("binary"), st.binary(max_size=40)),
        st.tuples(st.just("advance"), st.integers(min_value=0, max_value=longest_pause)),
    )


def sequences(valid: st.SearchStrategy[tuple[str, Any]], weight: int = 2,
              longest_pause: int = 300) -> st.SearchStrategy[list[tuple[str, Any]]]:
    """
    Up to 30 L{frames}, and perhaps last a text frame of bytes that may not be UTF-8
    (last: Autobahn closes the connection on invalid UTF-8, which would end most
    sequences early).
    """
    last = st.lists(st.tuples(st.just("raw-text"), st.binary(max_size=20)), max_size=1)
    return st.builds(lambda steps, end: steps + end, st.lists(frames(valid, weight, longest_pause), max_size=30), last)


# ---------------------------------------------------------------------------
# A whole server on a Clock, for the protocol machines

START = 1_800_000_000.0
#: A pause of the clock is this many seconds at a time: the match's tick, half the
#: arena's, and a hair over so that a sum of rounded floats (a float has a 2.4e-7 s
#: resolution at 1.8e9 s) never falls just short of a tick.
STEP = 0.01 + 1e-6


class ServerUnderTest:
    """
    A started L{GameprotoServer} on a Clock with a memory store, as
    docs/embedding.md "Testing an embedded server" builds one, for one Hypothesis
    example: every example starts from a fresh server.  It records every failure
    logged while it runs; L{stop} undoes everything it set up.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self._previous_loop = txaio.config.loop
        txaio.config.loop = self.clock  # Autobahn's own timers
        self.logged_failures: list[str] = []
        globalLogPublisher.addObserver(self._observe)
        self.store = MemoryStore()
        self.server = GameprotoServer(
            ServerConfig(port=None, store="memory:"),
            self.clock,
            store=self.store,
            run_in_thread=maybeDeferred,
        )
        self.server.startService()
        self._ports = itertools.count(42000)
        self._tokens: dict[str, str] = {}

    def _observe(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            self.logged_failures.append(failure.getTraceback())

    def stop(self) -> None:
        try:
            self.server.stopService()
        finally:
            globalLogPublisher.removeObserver(self._observe)
            txaio.config.loop = self._previous_loop

    def token(self, username: str) -> str:
        """A token of C{username}, the user created in the store the first time."""
        if username not in self._tokens:
            now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
            self.store.create_user(User(username, "x", now))
            key = f"{len(self._tokens) + 1:040x}"
            self.store.add_token(TokenRecord(token_digest(key), username, now))
            self._tokens[username] = key
        return self._tokens[username]

    def headers(self, username: str | None) -> dict[str, str]:
        return {} if username is None else {"Authorization": f"Token {self.token(username)}"}

    def call(self, method: str, path: str, username: str | None = None, body: Any = None) -> HTTPResponse:
        return request(self.server.site, method, path, body, self.headers(username))

    def connect(self, path: str, username: str | None = None) -> WebSocketClient:
        return WebSocketClient(self.server.site, path, self.headers(username), port=next(self._ports))


@attrs.define
class Heard:
    """What a client was sent: its data frames and its close frame, if any."""

    texts: list[str] = attrs.Factory(list)
    binaries: list[bytes] = attrs.Factory(list)
    closes: list[tuple[int | None, str]] = attrs.Factory(list)


def listen(ws: WebSocketClient) -> Heard:
    """Read (and forget) what arrived since the last call."""
    heard = Heard()
    for opcode, payload in ws.frames():
        if opcode == TEXT:
            heard.texts.append(payload.decode("utf-8"))
        elif opcode == BINARY:
            heard.binaries.append(payload)
        elif opcode == CLOSE:
            heard.closes.append((ws.close_code, ws.close_reason or ""))
    ws.forget_read()
    return heard


def play(server: ServerUnderTest, ws: WebSocketClient, steps: list[tuple[str, Any]],
         check: Callable[[Heard], None]) -> None:
    """Send C{steps} (L{frames}) one by one, checking what arrives after each."""
    check(listen(ws))
    for kind, value in steps:
        if ws.closed or ws.disconnected:
            break
        if kind == "json":
            ws.send_json(value)
        elif kind == "text":
            ws.send_text(value)
        elif kind == "binary":
            ws.send_binary(value)
        elif kind == "raw-text":
            ws.send(value, TEXT)
        else:
            # Step by step: a Clock runs a timer once however far it is advanced,
            # and a game's ticks must each run.
            for _ in range(value):
                server.clock.advance(STEP)
        check(listen(ws))
