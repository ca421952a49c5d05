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
from gameproto.option_types import (
    log_format,
    positive,
    rate_or_off,
    size_in_bytes,
    uid_range,
)
from gameproto.matchmaking.rules import MatchmakingConfig, Window
from gameproto.processor.sandbox import RunLimits, parse_uid_range
from gameproto.server import ServerConfig
from gameproto.store import check_store_description
from gameproto.throttle import RequestLimits

_DEFAULTS = ServerConfig()
_REQUEST_LIMITS = RequestLimits()

_PROCESSOR_LANGUAGES = ("python", "javascript", "ruby", "php")
_LIMITS = RunLimits()
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


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
            "metrics-port",
            None,
            None,
            "Where Prometheus reads GET /metrics: a strports description of its own "
            "(tcp:9464:interface=127.0.0.1), never the public port [default: off].",
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
            positive(float),
        ],
        [
            "max-message-size",
            None,
            _DEFAULTS.max_message_size,
            "Largest WebSocket message in bytes on the match and arena endpoints.",
            positive(int),
        ],
        [
            "connections-per-address",
            None,
            _DEFAULTS.connections_per_address,
            "Open WebSocket connections allowed from one client address.",
            positive(int),
        ],
        [
            "rate-limit",
            None,
            _DEFAULTS.messages_per_second,
            "Messages per second one WebSocket client may send (token bucket rate).",
            positive(float),
        ],
        [
            "rate-burst",
            None,
            _DEFAULTS.message_burst,
            "Token bucket size: messages one client may send in a burst.",
            positive(int),
        ],
        [
            "sign-ups-per-address",
            None,
            _REQUEST_LIMITS.sign_ups_per_address,
            "Sign-ups (POST /api/users/sign_up/) allowed from one client address.",
            rate_or_off,
        ],
        [
            "logins-per-address",
            None,
            _REQUEST_LIMITS.logins_per_address,
            "Logins (POST /api/token/) allowed from one client address.",
            rate_or_off,
        ],
        [
            "failed-logins-per-account",
            None,
            _REQUEST_LIMITS.failed_logins_per_account,
            "Logins with wrong credentials allowed for one username; past it every login "
            "of that username waits.",
            rate_or_off,
        ],
        [
            "creations-per-account",
            None,
            _REQUEST_LIMITS.creations_per_account,
            "Matches and arenas one user may create over REST.",
            rate_or_off,
        ],
        [
            "creations-per-address",
            None,
            _REQUEST_LIMITS.creations_per_address,
            "Matches and arenas that may be created over REST from one client address.",
            rate_or_off,
        ],
        [
            "handshake-timeout",
            None,
            _DEFAULTS.open_handshake_timeout,
            "Seconds a client has to complete the WebSocket opening handshake.",
            positive(float),
        ],
        [
            "auto-ping-interval",
            None,
            _DEFAULTS.auto_ping_interval,
            "Seconds between WebSocket pings from the server.",
            positive(float),
        ],
        [
            "auto-ping-timeout",
            None,
            _DEFAULTS.auto_ping_timeout,
            "Seconds to wait for a pong before the connection is dropped.",
            positive(float),
        ],
        [
            "chat-ping-interval",
            None,
            _DEFAULTS.chat_engineio.ping_interval,
            "Seconds between the chat's Engine.IO pings (pingInterval).",
            positive(float),
        ],
        [
            "chat-ping-timeout",
            None,
            _DEFAULTS.chat_engineio.ping_timeout,
            "Seconds the chat waits for a pong before closing the session (pingTimeout).",
            positive(float),
        ],
        [
            "chat-max-payload",
            None,
            _DEFAULTS.chat_engineio.max_payload,
            "Largest chat message or polling request in bytes (maxPayload).",
            positive(int),
        ],
        [
            "chat-connect-timeout",
            None,
            _DEFAULTS.chat_connect_timeout,
            "Seconds a chat session has to send its Socket.IO CONNECT (connectTimeout).",
            positive(float),
        ],
        [
            "match-tick",
            None,
            _DEFAULTS.match_tick,
            "Seconds between two steps of a Pong match (the engine's dt).",
            positive(float),
        ],
        [
            "match-lobby-timeout",
            None,
            _DEFAULTS.match_lobby_timeout,
            "Seconds an unstarted match may wait without its host connected before it is deleted.",
            positive(float),
        ],
        [
            "matchmaking-window",
            None,
            _DEFAULTS.matchmaking.window.base,
            "Elo difference within which matchmaking pairs two users at first.",
            positive(int),
        ],
        [
            "matchmaking-window-step",
            None,
            _DEFAULTS.matchmaking.window.step,
            "Elo added to a queued user's window every --matchmaking-window-interval.",
            positive(int),
        ],
        [
            "matchmaking-window-interval",
            None,
            _DEFAULTS.matchmaking.window.interval,
            "Seconds of waiting after which a queued user's window widens by one step.",
            positive(float),
        ],
        [
            "matchmaking-seat-timeout",
            None,
            _DEFAULTS.matchmaking.seat_timeout,
            "Seconds a matched user has to connect to the match before losing the ticket.",
            positive(float),
        ],
        [
            "matchmaking-interval",
            None,
            _DEFAULTS.matchmaking.round_interval,
            "Seconds between two pairing rounds of the matchmaking queue.",
            positive(float),
        ],
        [
            "replay-max-size",
            None,
            _DEFAULTS.replays.max_size,
            "Largest replay of one match, encoded; a longer match keeps its beginning and is "
            "marked truncated.",
            size_in_bytes,
        ],
        [
            "replay-retention",
            None,
            _DEFAULTS.replays.retention,
            "Seconds a match's replay is kept after its end [default: 30 days].",
            positive(float),
        ],
        [
            "replay-streams",
            None,
            _DEFAULTS.replays.max_streams,
            "Replay streams this node serves at once.",
            positive(int),
        ],
        [
            "replay-streams-per-user",
            None,
            _DEFAULTS.replays.max_streams_per_user,
            "Replay streams one user may watch at once on this node.",
            positive(int),
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
            positive(float),
        ],
        [
            "arena-max-per-user",
            None,
            _DEFAULTS.arena_max_per_user,
            "Arenas one user may own at once.",
            positive(int),
        ],
        [
            "arena-max",
            None,
            _DEFAULTS.arena_max,
            "Arenas the server runs at once, the default arena included.",
            positive(int),
        ],
        ["log-format", None, "text", "Log output: text or json (one object per line).", log_format],
        [
            "processor-dir",
            None,
            _DEFAULTS.processor_dir,
            "Directory of the processor's run directories (created mode 0711; never under the "
            "working directory).",
        ],
        [
            "processor-uids",
            None,
            f"{_DEFAULTS.processor_uids[0]}-{_DEFAULTS.processor_uids[-1]}",
            "Uids (and gids) given to processor runs as root, one per concurrent run.",
            uid_range,
        ],
        *[
            [
                f"processor-{language}",
                None,
                None,
                f"Interpreter for {language} programs [default: the system's]. The run uid "
                "must be able to execute it (not under root's home).",
            ]
            for language in _PROCESSOR_LANGUAGES
        ],
        [
            "processor-max-runs",
            None,
            None,
            "Processor runs at once [default: 2 x the cores].",
            positive(int),
        ],
        [
            "processor-time-limit",
            None,
            _LIMITS.program_time,
            "Seconds of program time per run (wall time minus time blocked in engine calls).",
            positive(float),
        ],
        [
            "processor-session-limit",
            None,
            _LIMITS.session_time,
            "Seconds of wall time per run, engine calls included.",
            positive(float),
        ],
        [
            "processor-cpu-limit",
            None,
            _LIMITS.cpu_time,
            "Seconds of CPU time per run (RLIMIT_CPU).",
            positive(int),
        ],
        [
            "processor-memory-limit",
            None,
            _LIMITS.memory,
            "Memory per run (RLIMIT_DATA).",
            size_in_bytes,
        ],
        [
            "processor-process-limit",
            None,
            _LIMITS.processes,
            "Processes and threads per run.",
            positive(int),
        ],
        [
            "processor-file-size-limit",
            None,
            _LIMITS.file_size,
            "Largest file a program may write (RLIMIT_FSIZE).",
            size_in_bytes,
        ],
        [
            "processor-dir-size-limit",
            None,
            _LIMITS.run_dir_size,
            "Size of a run's directory and /tmp (a tmpfs; root only).",
            size_in_bytes,
        ],
        [
            "processor-output-limit",
            None,
            _LIMITS.output,
            "Output (stdout and stderr together) per run.",
            size_in_bytes,
        ],
        [
            "processor-code-limit",
            None,
            _LIMITS.code,
            "Largest program a client may send.",
            size_in_bytes,
        ],
        [
            "processor-engine-timeout",
            None,
            _LIMITS.engine_call_timeout,
            "Seconds an engine call may wait for its reply before it fails (the run goes on).",
            positive(float),
        ],
        [
            "processor-engine-wait-limit",
            None,
            _LIMITS.engine_wait,
            "Seconds a run may spend blocked in engine calls, all of them together.",
            positive(float),
        ],
        [
            "processor-runs-per-minute",
            None,
            _DEFAULTS.processor_runs_per_minute,
            "Runs one user may start in any 60 s.",
            positive(int),
        ],
        [
            "processor-max-message-size",
            None,
            _DEFAULTS.processor_max_message_size,
            "Largest WebSocket message on the processor endpoint.",
            size_in_bytes,
        ],
    ]

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
                for language in _PROCESSOR_LANGUAGES
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
