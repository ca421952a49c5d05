"""
The arena shooter of specs/arena.md, with the rules of DESIGN.md §4 "arena".

Pure and deterministic: no I/O, no reactor, no clock.  The only randomness is the injected
L{random.Random}, used for random spawns, so a seed replays a game exactly.

How a protocol adapter drives an L{ArenaEngine}:

  - a player connection's frame: C{engine.submit(client, parse_command(decoded))}, answering an
    L{InvalidCommand} with C{invalid_command_error(e.reason)};
  - the controller's frame: C{engine.control(parse_command(decoded))};
  - a closed player connection: C{engine.leave(client)};
  - every C{config.tick_ms}: C{engine.tick()}.

C{client} is any hashable key for a connection (the protocol instance itself will do).  Every
call returns the messages to send, in order, as L{Outgoing} C{(recipient, message)} pairs whose
recipient is a client key or L{CONTROLLER}; a message going to many recipients is one shared
dict, so it can be encoded once.  Messages to L{CONTROLLER} while no controller is connected are
simply dropped by the adapter.  Messages are encoded with orjson: the controller's snapshot
carries its shots as an C{orjson.Fragment} of their JSON (L{ArenaEngine.snapshot} has them as
dicts).

Geometry: x grows to the right and y with the sine of the heading; headings are absolute
degrees, 0 being +x and 90 being +y.

Decisions DESIGN.md leaves open:

  - a player command is judged when its tick applies it; only a second command in one tick and
    a player's C{StartGameCommand} are refused at once;
  - a player's position is rounded to 5 decimals after each move, so what its ack says is what
    the engine checks; players collide within 2 * C{player_radius} (the design's 10);
  - random spawns are integral, max(C{spawn_margin}, C{player_radius}) from the walls, facing 0,
    and more than 2 * C{player_radius} from every player; after 1000 draws the registration is
    refused ("no free spot");
  - a parked player holds its spawn point into the next round, where the point is skipped;
    parked players count against C{max_players} separately, as the next round's players;
  - life stops at 0; a fatal hit sends C{PlayerHitByShotNotification} then
    C{PlayerDestroyedNotification}; later shots reaching a player destroyed in the same tick
    are spent without effect;
  - a leave ends the game at once (from L{ArenaEngine.leave}); a destruction at step 6, so a
    late joiner admitted in the same tick keeps the game going; a game started with fewer
    than two players ends only when one of them is destroyed or leaves;
  - C{GameOverNotification} also goes to destroyed and parked players; a destroyed player's
    commands, C{ConfigurePlayerCommand} included, are refused until then;
  - two radar crossings that truncate to the same point are reported once, like a tangent; a
    player exactly on the scanner is inside any long range cone.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Hashable
from typing import assert_never

import orjson

from gameproto.arena.commands import (
    Command,
    ConfigurePlayerCommand,
    InvalidCommand,
    MovePlayerCommand,
    parse_command,
    PlayerCommand,
    PlayerShootCommand,
    RegisterPlayerCommand,
    Rotate,
    StartGameCommand,
)
from gameproto.arena.config import ArenaConfig
from gameproto.arena.radar import radar_radius, radar_scan
from gameproto.arena.shots import ShotsInFlight
from gameproto.arena.spawn import random_spawn
from gameproto.arena.world import (
    CONTROLLER,
    Message,
    Outgoing,
    Player,
    PlayerState,
    Pose,
    Rejected,
    coordinates,
    invalid_command_error,
    message,
    refusal,
    rounded,
    scan_walls,
)

__all__ = [
    "CONTROLLER",
    "ArenaEngine",
    "InvalidCommand",
    "Message",
    "Outgoing",
    "invalid_command_error",
    "parse_command",
    "scan_walls",
]

# ---------------------------------------------------------------------------
# The engine


class ArenaEngine:
    """
    One arena: its players, shots and rounds.  See the module docstring for how to drive it.

    @ivar config: the arena's rules.
    """

    def __init__(self, config: ArenaConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._started = False
        # Keyed by client; insertion order is registration order, which decides who a shot
        # hits when it reaches two players at once.
        self._players: dict[Hashable, Player] = {}
        self._shots = ShotsInFlight(config)
        # One command per client per tick; insertion order is arrival order.
        self._queue: dict[Hashable, PlayerCommand] = {}
        # The user each connection is attributed to, for the players it registers.
        self._users: dict[Hashable, str] = {}
        self._player_ids = itertools.count(1)
        self._shot_ids = itertools.count(1)
        self._spawn_cursor = 0

    # -- inputs --------------------------------------------------------------

    def attribute(self, client: Hashable, user: str | None) -> None:
        """The players C{client} registers belong to C{user} (shown in the snapshots)."""
        if user is None:
            self._users.pop(client, None)
        else:
            self._users[client] = user

    def submit(self, client: Hashable, command: Command) -> list[Outgoing]:
        """
        Queue a player connection's command for the next tick, which sends its reply.

        @return: an immediate C{InvalidCommandError} if C{client} already has a command queued
            for this tick, or if the command is the controller's; otherwise nothing.
        """
        if isinstance(command, StartGameCommand):
            return refusal(client, "only the controller can start the game")
        if client in self._queue:
            return refusal(client, "only one command per player per tick")
        self._queue[client] = command
        return []

    def control(self, command: Command) -> list[Outgoing]:
        """
        Apply the controller's command at once.

        @return: C{StartGameAck} to the controller and C{StartGameOrder} to every player in the
            arena; or an C{InvalidCommandError} to the controller.
        """
        if not isinstance(command, StartGameCommand):
            return refusal(CONTROLLER, "the controller can only send StartGameCommand")
        if self._started:
            return refusal(CONTROLLER, "the game has already started")
        self._started = True
        order = message("StartGameOrder")
        return [Outgoing(CONTROLLER, message("StartGameAck"))] + [
            Outgoing(player.client, order) for player in self._in_arena()
        ]

    def leave(self, client: Hashable) -> list[Outgoing]:
        """
        Forget a closed connection: its queued command and its player.

        @return: C{GameOverNotification}s if this leaves a started game with at most one player.
        """
        self._queue.pop(client, None)
        self._users.pop(client, None)
        player = self._players.pop(client, None)
        if player is None or not self._started or player.state is not PlayerState.IN_ARENA:
            return []
        return self._end_round_if_decided()

    def tick(self, snapshot: bool = True) -> list[Outgoing]:
        """
        Advance the arena by one tick, in the order of DESIGN.md; steps 1 to 4 only run while
        a game is started.

        @param snapshot: whether to make the controller's snapshot (step 7); not when no
            controller would receive it.
        @return: every notification, reply and the controller's snapshot of this tick.
        """
        out: list[Outgoing] = []
        someone_destroyed = False
        if self._started:
            hits = self._move_shots()  # 1
            hit_messages, someone_destroyed = self._apply_hits(hits)  # 2
            out += hit_messages
            # Who is in the arena changes at step 2 and again only at step 5.
            players = self._in_arena()
            self._regenerate_tokens(players)  # 3
            out += self._scan_radars(players)  # 4
        out += self._apply_queued_commands()  # 5
        if someone_destroyed:
            out += self._end_round_if_decided()  # 6
        if snapshot:
            # The shots' entries go as JSON already encoded (see ShotsInFlight.encoded).
            shots = orjson.Fragment(self._shots.encoded()) if self._shots else []
            view = self._snapshot(shots)
            out.append(Outgoing(CONTROLLER, message("GameSnapshotNotification",
                                                    arena_snapshot=view)))  # 7
        return out

    # -- views ---------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether a round is being played."""
        return self._started

    def player_ids(self) -> list[str]:
        """@return: the ids of the players in the arena, in registration order."""
        return [player.id for player in self._in_arena()]

    def snapshot(self) -> Message:
        """
        @return: the C{arena_snapshot} of C{GameSnapshotNotification}, as the arena is now.
            The one L{tick} sends encodes to the same bytes, but its C{shots_snapshots} is
            an C{orjson.Fragment} of their JSON when there are shots in flight.
        """
        return self._snapshot(self._shots.snapshots())

    def _snapshot(self, shots: list[Message] | orjson.Fragment) -> Message:
        return {
            "players_snapshots": [self._player_snapshot(player) for player in self._in_arena()],
            "shots_snapshots": shots,
        }

    def _player_snapshot(self, player: Player) -> Message:
        return {
            "id": player.id,
            "coordinates": coordinates(player.pose),
            "rotation": player.pose.rotation,
            "life": player.life,
            "tokens": player.tokens,
            "radar": {"type": player.radar.value, "radius": radar_radius(self.config, player.radar)},
            "user": player.user,
        }

    # -- who is where --------------------------------------------------------

    def _in_arena(self) -> list[Player]:
        return [p for p in self._players.values() if p.state is PlayerState.IN_ARENA]

    def _count(self, state: PlayerState) -> int:
        return sum(player.state is state for player in self._players.values())

    def _occupants(self) -> list[Player]:
        """Players whose spot is taken: in the arena, or parked on the spot they will play."""
        return [p for p in self._players.values() if p.state is not PlayerState.DESTROYED]

    # -- steps 1 to 4 --------------------------------------------------------

    def _move_shots(self) -> list[Player]:
        """
        Step 1: move every shot and drop those that reach a wall or a player.

        @return: the player each hitting shot reached, in shot order (with repeats).
        """
        return self._shots.move(self._in_arena())

    def _apply_hits(self, hits: list[Player]) -> tuple[list[Outgoing], bool]:
        """
        Step 2: take life from each player hit; a player out of life is destroyed.

        @return: the notifications, and whether anyone was destroyed.
        """
        out: list[Outgoing] = []
        someone_destroyed = False
        for player in hits:
            # A second shot reaching a player destroyed earlier in this tick finds nobody.
            if player.state is not PlayerState.IN_ARENA:
                continue
            player.life = max(0, player.life - self.config.shot_damage)
            hit = message("PlayerHitByShotNotification", life=player.life)
            out.append(Outgoing(player.client, hit))
            if player.life <= 0:
                player.state = PlayerState.DESTROYED
                out.append(Outgoing(player.client, message("PlayerDestroyedNotification")))
                someone_destroyed = True
        return out, someone_destroyed

    def _regenerate_tokens(self, players: list[Player]) -> None:
        """Step 3, for C{players}, those in the arena."""
        most, more = self.config.max_tokens, self.config.tokens_per_tick
        for player in players:
            player.tokens = min(most, player.tokens + more)

    def _scan_radars(self, players: list[Player]) -> list[Outgoing]:
        """Step 4: what the radar of each of C{players}, those in the arena, sees."""
        out: list[Outgoing] = []
        # A scan that sees nothing (the common case in a roomy arena) is one message shared
        # by every player it goes to, so that it is encoded and framed once.
        nothing: Message | None = None
        for player in players:
            elements, walls = radar_scan(self.config, player, players)
            if elements or walls:
                scan = message("RadarScanNotification", elements=elements, walls=walls)
            else:
                if nothing is None:
                    nothing = message("RadarScanNotification", elements=[], walls=[])
                scan = nothing
            out.append(Outgoing(player.client, scan))
        return out

    # -- step 5: player commands ---------------------------------------------

    def _apply_queued_commands(self) -> list[Outgoing]:
        queue, self._queue = self._queue, {}
        out: list[Outgoing] = []
        for client, command in queue.items():
            try:
                out += self._apply(client, command)
            except Rejected as rejection:
                out += refusal(client, rejection.reason)
        return out

    def _apply(self, client: Hashable, command: PlayerCommand) -> list[Outgoing]:
        match command:
            case RegisterPlayerCommand():
                return self._register(client)
            case MovePlayerCommand():
                return self._move(client, command)
            case PlayerShootCommand():
                return self._shoot(client)
            case ConfigurePlayerCommand():
                return self._configure(client, command)
            case _:
                assert_never(command)

    def _register(self, client: Hashable) -> list[Outgoing]:
        if client in self._players:
            if self._players[client].state is PlayerState.DESTROYED:
                raise Rejected("the player was destroyed; register again after the game is over")
            raise Rejected("this connection has already registered a player")
        joins_now = not self._started or self.config.players_can_join_started_game
        # A parked registrant takes a place in the next round, which holds max_players too.
        state = PlayerState.IN_ARENA if joins_now else PlayerState.PARKED
        if self._count(state) >= self.config.max_players:
            raise Rejected("the arena is full")
        pose, spawn_index = self._spawn()
        player = Player(
            id=str(next(self._player_ids)),
            client=client,
            pose=pose,
            life=self.config.player_life,
            tokens=self.config.initial_tokens,
            state=state,
            spawn_index=spawn_index,
            user=self._users.get(client),
        )
        self._players[client] = player
        out = [Outgoing(client, self._register_player_ack(player))]
        if self._started and joins_now:
            out.append(Outgoing(client, message("StartGameOrder")))
        return out

    def _register_player_ack(self, player: Player) -> Message:
        return message(
            "RegisterPlayerAck",
            id=player.id,
            # Spawns are integral (spawn points are integers, random spawns are drawn as such).
            x=player.pose.x,
            y=player.pose.y,
            life=player.life,
            shooting=self._shooting(player),
        )

    def _shooting(self, player: Player) -> dict[str, int]:
        return {"tokens": player.tokens, "cost": self.config.shot_cost}

    def _move(self, client: Hashable, command: MovePlayerCommand) -> list[Outgoing]:
        player = self._playing(client)
        x, y, rotation = player.pose.x, player.pose.y, player.pose.rotation
        moved = False
        for step in command.steps:
            if isinstance(step, Rotate):
                rotation = step.degrees
            else:
                # Pose.advanced, float for float, without a pose for the way there.
                distance = step.direction.sign * self.config.move_speed
                heading = math.radians(rotation)
                # Keep exactly what the ack reports, so a bot's arithmetic matches the engine's.
                x = rounded(x + distance * math.cos(heading))
                y = rounded(y + distance * math.sin(heading))
                moved = True
        pose = Pose(x, y, rotation)
        if moved:
            self._check_room(player, pose)
        player.pose = pose
        # The tokens too: they come back every tick, and a bot that moves must not have to
        # shoot to learn whether it can afford a shot.
        ack = message("MovePlayerAck", **coordinates(pose), rotation=pose.rotation,
                       shooting=self._shooting(player))
        return [Outgoing(client, ack)]

    def _check_room(self, player: Player, pose: Pose) -> None:
        """@raise Rejected: if C{player} at C{pose} would cross a wall or touch another player."""
        radius = self.config.player_radius
        if (
            pose.x - radius < 0
            or pose.y - radius < 0
            or pose.x + radius > self.config.width
            or pose.y + radius > self.config.height
        ):
            raise Rejected("the move hits a wall")
        # Every move command asks this: no list of the players in the arena for it.
        for other in self._players.values():
            if (other is not player and other.state is PlayerState.IN_ARENA
                    and other.pose.distance_to(pose) <= 2 * radius):
                raise Rejected("the move hits another player")

    def _shoot(self, client: Hashable) -> list[Outgoing]:
        player = self._playing(client)
        if player.tokens < self.config.shot_cost:
            raise Rejected("not enough tokens to shoot")
        player.tokens -= self.config.shot_cost
        # Born on the shooter's edge; it first moves, and can first hit, in the next tick.
        muzzle = player.pose.advanced(self.config.player_radius)
        self._shots.add(str(next(self._shot_ids)), muzzle)
        return [Outgoing(client, message("PlayerShotAck", shooting=self._shooting(player)))]

    def _configure(self, client: Hashable, command: ConfigurePlayerCommand) -> list[Outgoing]:
        player = self._registered(client)
        # Settings apply in order and radarType is the only op, so the last one wins.
        player.radar = command.radars[-1]
        return [Outgoing(client, message("ConfigurePlayerAck"))]

    def _registered(self, client: Hashable) -> Player:
        player = self._players.get(client)
        if player is None:
            raise Rejected("the player is not registered")
        if player.state is PlayerState.DESTROYED:
            raise Rejected("the player was destroyed")
        return player

    def _playing(self, client: Hashable) -> Player:
        player = self._registered(client)
        if player.state is PlayerState.PARKED:
            raise Rejected("waiting for the next round")
        if not self._started:
            raise Rejected("the game has not started")
        return player

    # -- spawning ------------------------------------------------------------

    def _spawn(self) -> tuple[Pose, int | None]:
        """
        @return: where the next registrant starts, and the index of the spawn point it holds:
            the next spawn point in order that nobody holds (a parked player keeps its point
            into the next round), then random spots.
        """
        held = {player.spawn_index for player in self._occupants()}
        points = self.config.spawn_points
        while self._spawn_cursor < len(points):
            index = self._spawn_cursor
            self._spawn_cursor += 1
            if index not in held:
                point = points[index]
                return Pose(point.x, point.y, point.rotation), index
        others = [player.pose for player in self._occupants()]
        return random_spawn(self.config, self._rng, others), None

    # -- step 6: rounds ------------------------------------------------------

    def _end_round_if_decided(self) -> list[Outgoing]:
        players = self._in_arena()
        if len(players) > 1:
            return []
        return self._end_round(players[0].id if players else None)

    def _end_round(self, winner: str | None) -> list[Outgoing]:
        """
        Announce the winner to every player (destroyed and parked ones too) and the controller,
        then clear the round: its registrations and shots go, parked players move in.
        """
        game_over = message("GameOverNotification", winner=winner)
        out = [Outgoing(player.client, game_over) for player in self._players.values()]
        out.append(Outgoing(CONTROLLER, game_over))
        self._started = False
        self._shots.clear()
        self._players = {
            client: player
            for client, player in self._players.items()
            if player.state is PlayerState.PARKED
        }
        for player in self._players.values():
            player.state = PlayerState.IN_ARENA
        self._spawn_cursor = 0
        return out

