"""
The table of C{twistd gameproto}'s options with a value: name, short name, default,
help text and the function that checks and converts a value (the same for a flag and
for its C{GAMEPROTO_*} environment variable).  L{gameproto.options} reads it.
"""

from __future__ import annotations

from typing import Any

from gameproto.option_types import (
    access_log_policy,
    log_format,
    positive,
    rate_or_off,
    size_in_bytes,
    uid_range,
)
from gameproto.processor.sandbox import RunLimits
from gameproto.server import ServerConfig
from gameproto.throttle import RequestLimits

_DEFAULTS = ServerConfig()
_REQUEST_LIMITS = RequestLimits()
_LIMITS = RunLimits()

PROCESSOR_LANGUAGES = ("python", "javascript", "ruby", "php")

PARAMETERS: list[list[Any]] = [
    ["port", "p", _DEFAULTS.port, "Listening endpoint (a Twisted strports description)."],
    [
        "listen-backlog",
        None,
        _DEFAULTS.listen_backlog,
        "Connections the kernel queues before gameproto accepts them, for a tcp, ssl or "
        "unix --port that gives no backlog= of its own (capped by net.core.somaxconn).",
        positive(int),
    ],
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
        "access-log",
        None,
        _DEFAULTS.access_log,
        "Which HTTP requests are logged: requests (all but the polls of Engine.IO "
        "sessions), all, or off.",
        access_log_policy,
    ],
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
        for language in PROCESSOR_LANGUAGES
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
