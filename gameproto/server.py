"""
One gameproto server: the store, the accounts, every protocol and the REST API on
one Site, behind one listening endpoint, as a C{twisted.application} service.

Start-up opens the store before listening; shutdown runs in order: stop
accepting, close every WebSocket with 4012, then flush and close the store.
(C{MultiService} would stop its children all at once, closing the store under
connections that are still saying goodbye.)
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

import gameproto
from gameproto import wire, web
from gameproto.api import AccountsAPI, HealthAPI
from gameproto.bus import bus_for_store
from gameproto.arena.api import ArenasAPI
from gameproto.arena.protocol import arena_resource
from gameproto.arena.service import (
    DEFAULT_MAX_ARENAS,
    DEFAULT_MAX_PER_USER,
    ArenaSeams,
    ArenaService,
)
from gameproto.auth import Accounts
from gameproto.chat import mount_chat
from gameproto.chat.cluster import RedisPresence, RoomRelay
from gameproto.listening import DEFAULT_BACKLOG, with_backlog
from gameproto.match.api import MatchAPI
from gameproto.metrics import Metrics, metrics_site
from gameproto.match.replay import ReplayLimits
from gameproto.match.replay_api import ReplayAPI
from gameproto.match.replay_service import ReplayService
from gameproto.match.replay_stream import ReplayMatchProtocol
from gameproto.match.redis_directory import RedisMatchDirectory
from gameproto.match.relay import RelaySink
from gameproto.match.service import MatchService
from gameproto.matchmaking.api import MatchmakingAPI
from gameproto.matchmaking.protocol import matchmaking_resource
from gameproto.matchmaking.redis_queue import RedisMatchQueue
from gameproto.matchmaking.rules import MatchmakingConfig
from gameproto.matchmaking.service import MATCHER, MatchmakingService
from gameproto.node import Node
from gameproto.page import mount_page
from gameproto.processor.match_engine import MatchSeats
from gameproto.processor.protocol import processor_resource
from gameproto.processor.sandbox import RunLimits, SandboxConfig
from gameproto.processor.service import ProcessorService
from gameproto.redis import RedisURL
from gameproto.rest import JSONRouter
from gameproto.session import SessionAPI, session_key
from gameproto.socketio.engineio import EngineIOConfig
from gameproto.store import IStore, store_from_string
from gameproto.store.measured import MeasuredStore
from gameproto.throttle import RequestLimits, Throttle


@attrs.frozen
class ServerConfig:
    """Everything C{twistd gameproto} options decide; see gameproto.tap for the flags."""

    # None: listen nowhere; an embedding application serves GameprotoServer.root.
    port: str | None = "tcp:8000:interface=127.0.0.1"
    # The listen queue of that port (see gameproto.listening), unless its description sets one.
    listen_backlog: int = DEFAULT_BACKLOG
    # Which requests the access log records (gameproto.web.ACCESS_LOG_POLICIES).
    access_log: str = "requests"
    # Where GET /metrics is served (a listening endpoint of its own); None: nowhere.
    metrics_port: str | None = None
    store: str = "sqlite:gameproto.sqlite3"
    allowed_origins: tuple[str, ...] = ()
    token_ttl: float | None = None
    max_message_size: int = 64 * wire.KiB
    connections_per_address: int = 1000
    messages_per_second: float = 200.0
    message_burst: int = 400
    open_handshake_timeout: float = 5.0
    auto_ping_interval: float = 30.0
    auto_ping_timeout: float = 10.0
    match_tick: float = 0.01
    match_lobby_timeout: float = 600.0
    matchmaking: MatchmakingConfig = MatchmakingConfig()
    # Replays of completed matches: size cap, retention, streams (gameproto.match.replay).
    replays: ReplayLimits = ReplayLimits()
    arena_owner: str | None = None
    arena_idle_timeout: float = 600.0
    arena_max_per_user: int = DEFAULT_MAX_PER_USER
    arena_max: int = DEFAULT_MAX_ARENAS
    # Rates of sign-ups, logins and creations over REST (gameproto.throttle).
    request_limits: RequestLimits = RequestLimits()
    processor_anonymous: bool = False
    processor_dir: str = "/tmp/gameproto-runs"
    processor_uids: range = range(60000, 60064)
    # (language, interpreter path) pairs overriding the system interpreters.
    processor_interpreters: tuple[tuple[str, str], ...] = ()
    processor_max_runs: int | None = None
    processor_runs_per_minute: int = 30
    processor_allow_weak_sandbox: bool = False
    processor_max_message_size: int = 1 * wire.MiB
    processor_limits: RunLimits = RunLimits()
    chat_engineio: EngineIOConfig = EngineIOConfig()
    chat_connect_timeout: float = 45.0

    @property
    def server_limits(self) -> wire.ServerLimits:
        return wire.ServerLimits(
            open_handshake_timeout=self.open_handshake_timeout,
            auto_ping_interval=self.auto_ping_interval,
            auto_ping_timeout=self.auto_ping_timeout,
            connections_per_address=self.connections_per_address,
        )

    @property
    def game_limits(self) -> wire.EndpointLimits:
        """Limits of the JSON game endpoints (match, arena)."""
        return wire.EndpointLimits(
            max_message_size=self.max_message_size,
            messages_per_second=self.messages_per_second,
            burst=self.message_burst,
        )


class GameprotoServer(MultiService):
    """
    The server.  Its parts are attributes so that an embedding application (or a
    test) can reach them: C{store}, C{bus}, C{cluster} (with Redis), C{accounts},
    C{context}, C{router}, C{root}, C{site}, and the protocols' services
    C{matches}, C{chat}, C{arenas}, C{processor}.  Children added with C{addService}
    start, in order, after the store and the bus are open.
    """

    _log = Logger()

    def __init__(
        self,
        config: ServerConfig,
        reactor: Any,
        store: IStore | None = None,
        run_in_thread: Callable[..., Deferred[Any]] | None = None,
    ) -> None:
        super().__init__()
        if run_in_thread is None:
            # The reactor's thread pool, looked up per call: it exists only once the
            # reactor runs (and never on a MemoryReactor).
            def run_in_thread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
                return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

        self.config = config
        self.reactor = reactor
        # What the server counts, served on config.metrics_port (gameproto.metrics).
        self.metrics = Metrics()
        self.metrics.gauge("gameproto_reactor_delayed_calls",
                           "Timers pending in the reactor (a leak shows as growth).", (),
                           lambda: {(): len(reactor.getDelayedCalls())})
        # Every store call is timed in the metrics.
        self.store: IStore = MeasuredStore(
            store if store is not None else store_from_string(reactor, config.store), self.metrics
        )
        self.bus = bus_for_store(reactor, config.store)
        if hasattr(self.bus, "on_reconnect"):  # the Redis bus
            self.bus.on_reconnect = self.metrics.bus_reconnects.inc
            self.bus.observe_command = self.metrics.redis_commands("bus")
        # With a Redis store the node is one of several: its heartbeat (and Redis
        # connections) comes first, so that the services after it can use them.
        self.cluster: Node | None = None
        if config.store.startswith("redis://"):
            self.cluster = Node(reactor, RedisURL.parse(config.store))
            self.cluster.observe_command = self.metrics.redis_commands("node")
            self.addService(self.cluster)
        self.accounts = Accounts(self.store, reactor, run_in_thread, token_ttl=config.token_ttl)
        self.connections = wire.Connections(config.server_limits, reactor)
        self.context = wire.WireContext(
            clock=reactor,
            connections=self.connections,
            origins=wire.OriginPolicy.from_list(list(config.allowed_origins)),
            authenticate=self.accounts.authenticate_handshake,
            server_limits=config.server_limits,
            metrics=self.metrics,
        )
        self.router = JSONRouter()
        self.root = web.Root()
        web.mount(self.root, "/api", self.router)
        web.mount(self.root, "/healthz", self.router)
        self._mount_matches()
        origins = self.context.origins
        self.accounts_api = AccountsAPI(
            self.accounts, whereabouts=self.matches.whereabouts,
            throttle=Throttle(config.request_limits, reactor),
            cookie_key=lambda request: session_key(request, origins),
        )
        # Routes added with authenticated=True (gameproto's and an application's) get
        # the user of the request's token, or answer 401.
        self.router.authenticate = self.accounts_api.require_user
        self.accounts_api.install(self.router)
        SessionAPI(self.accounts_api, origins, config.token_ttl).install(self.router)
        HealthAPI(self.store, self.bus, reactor, self._health_details).install(self.router)
        MatchAPI(self.matches, self.accounts_api).install(self.router)
        self._mount_matchmaking()
        ReplayAPI(self.replays, self.accounts_api).install(self.router)
        self._mount_chat()
        self._mount_arenas()
        self._mount_processor()
        mount_page(self.root)
        self.site: Site = web.make_site(self.root, reactor, metrics=self.metrics,
                                        access_log=config.access_log)
        self.port: IListeningPort | None = None
        self.metrics_port: IListeningPort | None = None
        self._started: Deferred[None] | None = None
        self._start_failure: Failure | None = None

    # -- the parts ---------------------------------------------------------------

    def _mount_matches(self) -> None:
        config, reactor = self.config, self.reactor
        seams: dict[str, Any] = {}
        if self.cluster is not None:
            # Every node sharing this Redis serves every match: the directory in
            # Redis, the game under a lease, frames and changes relayed on the bus.
            seams = dict(
                directory=RedisMatchDirectory(self.cluster, self.store),
                ownership=self.cluster.ownership("match"),
                sink=RelaySink(self.bus, reactor, self.cluster.node_id),
            )
        # Every game run here is recorded; any node streams any completed match's replay.
        self.replays = ReplayService(self.store, reactor, config.replays, config.match_tick)
        self.addService(self.replays)
        self.matches = MatchService(
            self.store, reactor, tick=config.match_tick,
            lobby_timeout=config.match_lobby_timeout, metrics=self.metrics,
            replays=self.replays, **seams,
        )
        self.addService(self.matches)
        factory = wire.make_factory(
            ReplayMatchProtocol, config.game_limits, self.context, service=self.matches,
            replays=self.replays,
        )
        # The match id is the segment below this resource, wherever the tree is mounted.
        web.mount(self.root, "/ws/game", web.WebSocketEndpoint(factory))

    def _mount_matchmaking(self) -> None:
        queue = ownership = None
        if self.cluster is not None:
            # One queue in Redis; the node holding the matcher's lease pairs.
            ownership = self.cluster.ownership("matchmaking")
            queue = RedisMatchQueue(self.cluster, ownership.key(MATCHER))
        self.matchmaking = MatchmakingService(
            self.matches, self.store, self.reactor, self.bus, queue=queue, ownership=ownership,
            config=self.config.matchmaking,
        )
        self.addService(self.matchmaking)
        MatchmakingAPI(self.matchmaking).install(self.router)
        web.mount(self.root, "/ws/matchmaking",
                  matchmaking_resource(self.matchmaking, self.config.game_limits, self.context))

    def _mount_chat(self) -> None:
        presence = relay = None
        if self.cluster is not None:
            # Names unique across nodes, rooms relayed through the bus, a dead
            # node's users announced gone.
            presence = RedisPresence(
                self.reactor, self.cluster,
                lambda room, name: self.chat.app.announce_left(room, name),
            )
            relay = RoomRelay(
                self.bus, self.cluster.node_id, lambda room, p: self.chat.app.deliver(room, p)
            )
        self.chat = mount_chat(
            self.root,
            self.context,
            self.reactor,
            config=self.config.chat_engineio,
            connect_timeout=self.config.chat_connect_timeout,
            presence=presence,
            relay=relay,
        )

    def _mount_arenas(self) -> None:
        config, reactor = self.config, self.reactor
        # Each arena runs on one node under a lease; the others route their sockets to it.
        seams = (ArenaSeams.local(reactor) if self.cluster is None
                 else ArenaSeams.of_node(self.cluster, self.store, self.bus))
        self.arenas = ArenaService(
            reactor, default_owner=config.arena_owner, idle_timeout=config.arena_idle_timeout,
            max_per_user=config.arena_max_per_user, max_arenas=config.arena_max, seams=seams,
            metrics=self.metrics,
        )
        self.metrics.gauge(
            "gameproto_games_running", "Matches and arenas running on this node.", ("game",),
            lambda: {("arena",): len(self.arenas.arenas()),
                     ("match",): sum(1 for m in self.matches.matches.values()
                                     if m.owner and m.running)})
        self.addService(self.arenas)
        ArenasAPI(self.arenas, self.accounts_api).install(self.router)
        web.mount(
            self.root, "/ws/arena", arena_resource(self.arenas, config.game_limits, self.context)
        )

    def _mount_processor(self) -> None:
        config = self.config
        # Programs take seats in matches as their users (the match endpoint's rate limit
        # applies), and queue for one through the same matchmaking as the REST API's.
        self.match_seats = MatchSeats(
            self.matches, config.game_limits, self.context.server_limits.rate_limit_grace,
            matchmake=self.matchmaking.matched,
        )
        self.processor = ProcessorService(
            self.reactor,
            self.reactor,
            SandboxConfig(
                run_base=config.processor_dir,
                uids=config.processor_uids,
                interpreters=dict(config.processor_interpreters),
                allow_weak=config.processor_allow_weak_sandbox,
            ),
            config.processor_limits,
            max_runs=config.processor_max_runs,
            runs_per_minute=config.processor_runs_per_minute,
            metrics=self.metrics,
        )
        self.addService(self.processor)
        web.mount(
            self.root,
            "/ws/processor",
            processor_resource(
                self.processor,
                # A run is paced by its own engine calls: no rate limit on this endpoint.
                wire.EndpointLimits(
                    max_message_size=config.processor_max_message_size, messages_per_second=None
                ),
                self.context,
                arenas=self.arenas,
                anonymous=config.processor_anonymous,
                matches=self.match_seats,
            ),
        )

    def _health_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"processor": self.processor.status}
        if self.cluster is not None:
            details["node"] = self.cluster.node_id  # which node answered, behind a balancer
        return details

    # -- the service ---------------------------------------------------------------

    def startService(self) -> None:
        self.running = 1  # MultiService.startService would start the children now
        self._started = ensureDeferred(self._start())
        self._started.addErrback(self._failedToStart)

    async def _start(self) -> None:
        await self.store.start()
        await self.bus.start()
        for child in self:
            # A child may return a Deferred (the match registry loads from the
            # store): nothing is served before it fires.
            await maybeDeferred(child.startService)
        if self.config.metrics_port:
            endpoint = endpoints.serverFromString(self.reactor, self.config.metrics_port)
            self.metrics_port = await endpoint.listen(metrics_site(self.metrics, self.reactor))
            address = self.metrics_port.getHost()
            self._log.info("metrics on http://{host}:{port}/metrics",
                           host=getattr(address, "host", address),
                           port=getattr(address, "port", ""))
        if not self.config.port:
            # Embedded: the application serves self.root on a Site of its own.
            self._log.info("gameproto {version} started without a port of its own",
                           version=gameproto.__version__)
            return
        description = with_backlog(self.config.port, self.config.listen_backlog)
        endpoint = endpoints.serverFromString(self.reactor, description)
        self.port = await endpoint.listen(self.site)
        address = self.port.getHost()
        self._log.info(
            "gameproto {version} listening on {host}:{port} (store: {store})",
            version=gameproto.__version__,
            host=getattr(address, "host", address),
            port=getattr(address, "port", ""),
            store=self.store.description,
        )

    def whenStarted(self) -> Deferred[None]:
        """
        Fires once the store is open and every part has started (and the port listens,
        if the server has one of its own); fails with the reason if the start failed.
        An application that serves L{root} on its own Site awaits it before listening.
        """
        if self._started is None:
            raise RuntimeError("whenStarted() is only meaningful after startService()")
        started: Deferred[None] = Deferred()

        def done(result: None) -> None:
            if self._start_failure is not None:
                started.errback(self._start_failure)
            else:
                started.callback(None)
            return result

        self._started.addBoth(done)
        return started

    def _failedToStart(self, failure: Failure) -> None:
        self._start_failure = failure
        self._log.failure("gameproto could not start", failure)
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> Deferred[None]:
        self.running = 0
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._started is not None:
            await self._started  # never close a store that is still opening
        if self.port is not None:
            # IListeningPort.stopListening returns a Deferred only when it does not finish
            # at once.
            await maybeDeferred(self.port.stopListening)
        if self.metrics_port is not None:
            await maybeDeferred(self.metrics_port.stopListening)
        await self.connections.close_all()
        for child in reversed(list(self)):
            await maybeDeferred(child.stopService)
        await self.bus.stop()
        await self.store.close()
        self._log.info("gameproto stopped")
