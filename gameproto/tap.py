"""
C{twistd gameproto}: the command-line options and L{makeService}.

Every option is a flag with a C{GAMEPROTO_*} environment fallback (C{--token-ttl}
↔ C{GAMEPROTO_TOKEN_TTL}); a flag beats the environment, which beats the default.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

from twisted.application.service import IService
from twisted.python import usage

from gameproto.store import check_store_description
from gameproto.server import GameprotoServer, ServerConfig

_DEFAULTS = ServerConfig()


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def coerce(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if number <= 0:
            raise ValueError(f"{value!r} must be greater than 0")
        return number

    coerce.coerceDoc = "Must be greater than 0."  # type: ignore[attr-defined]
    return coerce


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError("must be text or json")
    return value


class Options(usage.Options):
    synopsis = "[gameproto options]"
    longdesc = (
        "Serve the gameproto protocols (match, chat, arena, processor) and the REST API "
        "on one port. Each option can also be set with the environment variable "
        "GAMEPROTO_<OPTION> (upper case, dashes as underscores)."
    )

    optParameters: list[list[Any]] = [
        ["port", "p", _DEFAULTS.port, "Listening endpoint (a Twisted strports description)."],
        [
            "store",
            None,
            _DEFAULTS.store,
            "Where data lives: sqlite:PATH (embedded), memory: (lost on exit) or "
            "redis://HOST:PORT/DB (several nodes; also selects the Redis bus).",
        ],
        [
            "redis",
            None,
            None,
            "Several nodes sharing one Redis: redis://HOST:PORT/DB selects the Redis store "
            "and bus (the same as --store redis://...) [default: none].",
        ],
        [
            "token-ttl",
            None,
            None,
            "Seconds an API token stays valid [default: none, tokens never expire]",
            _positive(float),
        ],
        [
            "max-message-size",
            None,
            _DEFAULTS.max_message_size,
            "Largest WebSocket message in bytes on the match and arena endpoints.",
            _positive(int),
        ],
        [
            "connections-per-address",
            None,
            _DEFAULTS.connections_per_address,
            "Open WebSocket connections allowed from one client address.",
            _positive(int),
        ],
        [
            "rate-limit",
            None,
            _DEFAULTS.messages_per_second,
            "Messages per second one WebSocket client may send (token bucket rate).",
            _positive(float),
        ],
        [
            "rate-burst",
            None,
            _DEFAULTS.message_burst,
            "Token bucket size: messages one client may send in a burst.",
            _positive(int),
        ],
        [
            "handshake-timeout",
            None,
            _DEFAULTS.open_handshake_timeout,
            "Seconds a client has to complete the WebSocket opening handshake.",
            _positive(float),
        ],
        [
            "auto-ping-interval",
            None,
            _DEFAULTS.auto_ping_interval,
            "Seconds between WebSocket pings from the server.",
            _positive(float),
        ],
        [
            "auto-ping-timeout",
            None,
            _DEFAULTS.auto_ping_timeout,
            "Seconds to wait for a pong before the connection is dropped.",
            _positive(float),
        ],
        [
            "match-tick",
            None,
            _DEFAULTS.match_tick,
            "Seconds between two steps of a Pong match (the engine's dt).",
            _positive(float),
        ],
        [
            "match-lobby-timeout",
            None,
            _DEFAULTS.match_lobby_timeout,
            "Seconds an unstarted match may wait without its host connected before it is deleted.",
            _positive(float),
        ],
        [
            "arena-owner",
            None,
            None,
            "Username that controls the default arena [default: none, any authenticated user].",
        ],
        [
            "arena-idle-timeout",
            None,
            _DEFAULTS.arena_idle_timeout,
            "Seconds an arena other than default may go without a connection before it is deleted.",
            _positive(float),
        ],
        ["log-format", None, "text", "Log output: text or json (one object per line).", _log_format],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["allowed-origins"] = []
        env = os.environ
        for name, _, _, _, *coerce in self.optParameters:
            value = env.get(self.environment_name(name))
            if value is not None and value != "":
                try:
                    self[name] = coerce[0](value) if coerce else value
                except ValueError as e:
                    raise usage.UsageError(f"{self.environment_name(name)}: {e}") from None
        origins = env.get("GAMEPROTO_ALLOWED_ORIGIN", "")
        self["allowed-origins"] = [o.strip() for o in origins.split(",") if o.strip()]

    @staticmethod
    def environment_name(option: str) -> str:
        return "GAMEPROTO_" + option.upper().replace("-", "_")

    def opt_allowed_origin(self, origin: str) -> None:
        """
        Allow WebSocket handshakes from a web page at this origin (scheme://host[:port]);
        repeatable; * allows any origin and disables cookie authentication
        [default: same origin only; env GAMEPROTO_ALLOWED_ORIGIN, comma-separated].
        """
        origin = origin.strip()
        if origin not in ("*", "null") and "://" not in origin:
            raise usage.UsageError(f"--allowed-origin {origin!r}: expected scheme://host[:port]")
        self["allowed-origins"].append(origin)

    def postOptions(self) -> None:
        if self["redis"]:
            if not self["redis"].startswith("redis://"):
                raise usage.UsageError("--redis: expected redis://HOST:PORT/DB")
            # --redis URL is --store URL: the Redis store comes with the Redis bus.
            self["store"] = self["redis"]
        try:
            check_store_description(self["store"])
        except ValueError as e:
            raise usage.UsageError(f"--store: {e}") from None
        if self["log-format"] == "json" and self.parent is not None:
            # twistd builds its log observer from its own --logger option after
            # parsing: point it at gameproto's JSON-lines observer unless the user
            # chose a logger of their own.
            if self.parent.get("logger") is None:
                self.parent["logger"] = "gameproto.logs.json_observer"

    def config(self) -> ServerConfig:
        return ServerConfig(
            port=self["port"],
            store=self["store"],
            allowed_origins=tuple(self["allowed-origins"]),
            token_ttl=self["token-ttl"],
            max_message_size=self["max-message-size"],
            connections_per_address=self["connections-per-address"],
            messages_per_second=self["rate-limit"],
            message_burst=self["rate-burst"],
            open_handshake_timeout=self["handshake-timeout"],
            auto_ping_interval=self["auto-ping-interval"],
            auto_ping_timeout=self["auto-ping-timeout"],
            match_tick=self["match-tick"],
            match_lobby_timeout=self["match-lobby-timeout"],
            arena_owner=self["arena-owner"] or None,
            arena_idle_timeout=self["arena-idle-timeout"],
        )


def makeService(options: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
        reactor.callWhenRunning(_stop_cleanly_on_sigterm, reactor)
    return GameprotoServer(options.config(), reactor)


def _stop_cleanly_on_sigterm(reactor: Any) -> None:
    """
    SIGTERM is how operators ask for a graceful stop, so its end is a success:
    exit status 0.  Twisted's own handler makes the process re-raise SIGTERM on
    itself after the reactor stops, which reports "killed by SIGTERM" to systemd,
    shells and supervisors.  Replaced once the reactor has installed its handlers.
    """

    def stop_once() -> None:
        if not stopping:
            stopping.append(True)
            reactor.stop()

    def stop(signum: int, frame: Any) -> None:
        reactor.callFromThread(stop_once)

    stopping: list[bool] = []

    signal.signal(signal.SIGTERM, stop)
