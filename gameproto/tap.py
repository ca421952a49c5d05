"""
C{twistd gameproto}: the command-line options and L{makeService}.

Every option is a flag with a C{GAMEPROTO_*} environment fallback (C{--token-ttl}
↔ C{GAMEPROTO_TOKEN_TTL}); a flag beats the environment, which beats the default.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable

import attrs
from twisted.application.service import IService
from twisted.python import usage

import gameproto
from gameproto.processor.sandbox import RunLimits, parse_uid_range
from gameproto.store import check_store_description
from gameproto.server import GameprotoServer, ServerConfig
from gameproto.throttle import RequestLimits
from gameproto.wire import Rate

_DEFAULTS = ServerConfig()
_REQUEST_LIMITS = RequestLimits()


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


def _size(value: str) -> int:
    """A size in bytes: C{1048576}, C{1024KiB}, C{1MiB} (also C{k}, C{K}, C{KB}, C{M}, C{MB})."""
    text = value.strip()
    number = text.rstrip("KMiBkmb")
    unit = text[len(number):].lower()
    factor = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
              "m": 1024**2, "mb": 1024**2, "mib": 1024**2}.get(unit)
    try:
        size = int(number) * factor if factor is not None else 0
    except ValueError:
        size = 0
    if size <= 0:
        raise ValueError(f"{value!r} is not a size in bytes (such as 1048576, 1024KiB or 1MiB)")
    return size


_size.coerceDoc = "Bytes, or with a unit: 256KiB, 1MiB."  # type: ignore[attr-defined]


def _rate(value: str) -> Rate | None:
    """C{10/h}, C{30/m}, C{20/10m}, C{5/90s}, or C{off}."""
    if value.strip().lower() == "off":
        return None
    return Rate.parse(value)


_rate.coerceDoc = (  # type: ignore[attr-defined]
    "COUNT/PERIOD: 10/h, 30/m, 20/10m, 90/45s; off for no limit."
)


def _uid_range(value: str) -> range:
    return parse_uid_range(value)


_uid_range.coerceDoc = "FIRST-LAST, inclusive."  # type: ignore[attr-defined]

_PROCESSOR_LANGUAGES = ("python", "javascript", "ruby", "php")
_LIMITS = RunLimits()
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


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
            "sign-ups-per-address",
            None,
            _REQUEST_LIMITS.sign_ups_per_address,
            "Sign-ups (POST /api/users/sign_up/) allowed from one client address.",
            _rate,
        ],
        [
            "logins-per-address",
            None,
            _REQUEST_LIMITS.logins_per_address,
            "Logins (POST /api/token/) allowed from one client address.",
            _rate,
        ],
        [
            "failed-logins-per-account",
            None,
            _REQUEST_LIMITS.failed_logins_per_account,
            "Logins with wrong credentials allowed for one username; past it every login "
            "of that username waits.",
            _rate,
        ],
        [
            "creations-per-account",
            None,
            _REQUEST_LIMITS.creations_per_account,
            "Matches and arenas one user may create over REST.",
            _rate,
        ],
        [
            "creations-per-address",
            None,
            _REQUEST_LIMITS.creations_per_address,
            "Matches and arenas that may be created over REST from one client address.",
            _rate,
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
            "chat-ping-interval",
            None,
            _DEFAULTS.chat_engineio.ping_interval,
            "Seconds between the chat's Engine.IO pings (pingInterval).",
            _positive(float),
        ],
        [
            "chat-ping-timeout",
            None,
            _DEFAULTS.chat_engineio.ping_timeout,
            "Seconds the chat waits for a pong before closing the session (pingTimeout).",
            _positive(float),
        ],
        [
            "chat-max-payload",
            None,
            _DEFAULTS.chat_engineio.max_payload,
            "Largest chat message or polling request in bytes (maxPayload).",
            _positive(int),
        ],
        [
            "chat-connect-timeout",
            None,
            _DEFAULTS.chat_connect_timeout,
            "Seconds a chat session has to send its Socket.IO CONNECT (connectTimeout).",
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
        [
            "arena-max-per-user",
            None,
            _DEFAULTS.arena_max_per_user,
            "Arenas one user may own at once.",
            _positive(int),
        ],
        [
            "arena-max",
            None,
            _DEFAULTS.arena_max,
            "Arenas the server runs at once, the default arena included.",
            _positive(int),
        ],
        ["log-format", None, "text", "Log output: text or json (one object per line).", _log_format],
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
            _uid_range,
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
            _positive(int),
        ],
        [
            "processor-time-limit",
            None,
            _LIMITS.program_time,
            "Seconds of program time per run (wall time minus time blocked in engine calls).",
            _positive(float),
        ],
        [
            "processor-session-limit",
            None,
            _LIMITS.session_time,
            "Seconds of wall time per run, engine calls included.",
            _positive(float),
        ],
        [
            "processor-cpu-limit",
            None,
            _LIMITS.cpu_time,
            "Seconds of CPU time per run (RLIMIT_CPU).",
            _positive(int),
        ],
        [
            "processor-memory-limit",
            None,
            _LIMITS.memory,
            "Memory per run (RLIMIT_DATA).",
            _size,
        ],
        [
            "processor-process-limit",
            None,
            _LIMITS.processes,
            "Processes and threads per run.",
            _positive(int),
        ],
        [
            "processor-file-size-limit",
            None,
            _LIMITS.file_size,
            "Largest file a program may write (RLIMIT_FSIZE).",
            _size,
        ],
        [
            "processor-dir-size-limit",
            None,
            _LIMITS.run_dir_size,
            "Size of a run's directory and /tmp (a tmpfs; root only).",
            _size,
        ],
        [
            "processor-output-limit",
            None,
            _LIMITS.output,
            "Output (stdout and stderr together) per run.",
            _size,
        ],
        [
            "processor-code-limit",
            None,
            _LIMITS.code,
            "Largest program a client may send.",
            _size,
        ],
        [
            "processor-engine-timeout",
            None,
            _LIMITS.engine_call_timeout,
            "Seconds an engine call may wait for its reply before it fails (the run goes on).",
            _positive(float),
        ],
        [
            "processor-engine-wait-limit",
            None,
            _LIMITS.engine_wait,
            "Seconds a run may spend blocked in engine calls, all of them together.",
            _positive(float),
        ],
        [
            "processor-runs-per-minute",
            None,
            _DEFAULTS.processor_runs_per_minute,
            "Runs one user may start in any 60 s.",
            _positive(int),
        ],
        [
            "processor-max-message-size",
            None,
            _DEFAULTS.processor_max_message_size,
            "Largest WebSocket message on the processor endpoint.",
            _size,
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
