"""
The options of C{twistd gameproto}: every flag with its C{GAMEPROTO_*} environment
fallback (C{--token-ttl} ↔ C{GAMEPROTO_TOKEN_TTL}; a flag beats the environment, which
beats the default), their validation, and the L{ServerConfig} they make.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import attrs
from twisted.python import usage

import gameproto
from gameproto.match.replay import ReplayLimits
from gameproto.option_table import PARAMETERS, PROCESSOR_LANGUAGES
from gameproto.matchmaking.rules import MatchmakingConfig, Window
from gameproto.processor.sandbox import RunLimits, parse_uid_range
from gameproto.server import ServerConfig
from gameproto.store import check_store_description
from gameproto.throttle import RequestLimits

_DEFAULTS = ServerConfig()
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Options(usage.Options):
    synopsis = "[gameproto options]"
    longdesc = (
        "Serve the gameproto protocols (match, chat, arena, processor) and the REST API "
        "on one port. Each option can also be set with the environment variable "
        "GAMEPROTO_<OPTION> (upper case, dashes as underscores)."
    )

    optParameters: list[list[Any]] = PARAMETERS

    optFlags: list[list[Any]] = [
        [
            "processor-anonymous",
            None,
            "Let unauthenticated clients run programs on /ws/processor/ (local use only).",
        ],
        [
            "processor-allow-weak-sandbox",
            None,
            "Where the isolated sandbox cannot run (no root, no bubblewrap, no cgroup, no "
            "libseccomp), run programs in the weak one instead of keeping the processor off.",
        ],
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
        for name, _, _ in self.optFlags:
            value = env.get(self.environment_name(name), "").strip().lower()
            if value in _TRUE:
                self[name] = 1
            elif value not in _FALSE + ("",):
                raise usage.UsageError(
                    f"{self.environment_name(name)}: expected true or false, not {value!r}"
                )
        origins = env.get("GAMEPROTO_ALLOWED_ORIGIN", "")
        self["allowed-origins"] = [o.strip() for o in origins.split(",") if o.strip()]

    def opt_version(self) -> None:
        """
        Display gameproto's version (and Twisted's) and exit.
        """
        # usage.Options' own --version names only Twisted's version.
        from twisted import copyright

        print(f"gameproto {gameproto.__version__} (Twisted {copyright.version})")
        sys.exit(0)

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
            listen_backlog=self["listen-backlog"],
            access_log=self["access-log"],
            metrics_port=self["metrics-port"] or None,
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
            chat_engineio=attrs.evolve(
                _DEFAULTS.chat_engineio,
                ping_interval=self["chat-ping-interval"],
                ping_timeout=self["chat-ping-timeout"],
                max_payload=self["chat-max-payload"],
            ),
            chat_connect_timeout=self["chat-connect-timeout"],
            match_tick=self["match-tick"],
            match_lobby_timeout=self["match-lobby-timeout"],
            matchmaking=MatchmakingConfig(
                window=Window(
                    base=self["matchmaking-window"],
                    step=self["matchmaking-window-step"],
                    interval=self["matchmaking-window-interval"],
                ),
                seat_timeout=self["matchmaking-seat-timeout"],
                round_interval=self["matchmaking-interval"],
            ),
            replays=ReplayLimits(
                max_size=self["replay-max-size"],
                retention=self["replay-retention"],
                max_streams=self["replay-streams"],
                max_streams_per_user=self["replay-streams-per-user"],
            ),
            arena_owner=self["arena-owner"] or None,
            arena_idle_timeout=self["arena-idle-timeout"],
            arena_max_per_user=self["arena-max-per-user"],
            arena_max=self["arena-max"],
            request_limits=RequestLimits(
                sign_ups_per_address=self["sign-ups-per-address"],
                logins_per_address=self["logins-per-address"],
                failed_logins_per_account=self["failed-logins-per-account"],
                creations_per_account=self["creations-per-account"],
                creations_per_address=self["creations-per-address"],
            ),
            processor_anonymous=bool(self["processor-anonymous"]),
            processor_dir=self["processor-dir"],
            processor_uids=(
                parse_uid_range(self["processor-uids"])
                if isinstance(self["processor-uids"], str)  # the default is not coerced
                else self["processor-uids"]
            ),
            processor_interpreters=tuple(
                (language, self[f"processor-{language}"])
                for language in PROCESSOR_LANGUAGES
                if self[f"processor-{language}"]
            ),
            processor_max_runs=self["processor-max-runs"],
            processor_runs_per_minute=self["processor-runs-per-minute"],
            processor_allow_weak_sandbox=bool(self["processor-allow-weak-sandbox"]),
            processor_max_message_size=self["processor-max-message-size"],
            processor_limits=RunLimits(
                program_time=self["processor-time-limit"],
                session_time=self["processor-session-limit"],
                cpu_time=self["processor-cpu-limit"],
                memory=self["processor-memory-limit"],
                processes=self["processor-process-limit"],
                file_size=self["processor-file-size-limit"],
                run_dir_size=self["processor-dir-size-limit"],
                output=self["processor-output-limit"],
                code=self["processor-code-limit"],
                engine_call_timeout=self["processor-engine-timeout"],
                engine_wait=self["processor-engine-wait-limit"],
            ),
        )
