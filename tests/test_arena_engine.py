"""
The pure arena engine (gameproto.arena.engine), its configuration and its command parser, against
specs/arena.md and DESIGN.md §4 "arena".  Players are placed with spawn_points so that every
expectation can be worked out by hand from the rules.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Hashable
from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase

from gameproto.arena.commands import (
    ConfigurePlayerCommand,
    Direction,
    InvalidCommand,
    Move,
    MovePlayerCommand,
    PlayerShootCommand,
    RadarType,
    RegisterPlayerCommand,
    Rotate,
    StartGameCommand,
    parse_command,
)
from gameproto.arena.config import ArenaConfig, ArenaConfigError, SpawnPoint
from gameproto.arena.engine import (
    CONTROLLER,
    ArenaEngine,
    Message,
    Outgoing,
    invalid_command_error,
    scan_walls,
)
from gameproto.arena.world import message

DEFAULTS = {
    "width": 800,
    "height": 400,
    "max_players": 4,
    "tick_ms": 20,
    "players_can_join_started_game": False,
    "player_radius": 5,
    "player_life": 100,
    "spawn_margin": 16,
    "move_speed": 2,
    "shot_speed": 1.5,
    "shot_radius": 1,
    "shot_damage": 5,
    "shot_cost": 6,
    "initial_tokens": 40,
    "max_tokens": 40,
    "tokens_per_tick": 2,
    "circular_scan_radius": 40,
    "long_range_scan_radius": 80,
    "long_range_scan_half_angle": 30,
    "spawn_points": [],
}

# Client keys: the protocol will use its connections; any hashable will do here.
ALICE, BOB, CAROL, DAVE, ERIN, FRANK = "alice", "bob", "carol", "dave", "erin", "frank"


def make_engine(seed: int = 0, **config: Any) -> ArenaEngine:
    return ArenaEngine(ArenaConfig.from_dict(config), random.Random(seed))


def messages(out: list[Outgoing], recipient: Hashable, type_: str | None = None) -> list[Message]:
    """The messages of C{out} to C{recipient}, optionally only those of C{type_}."""
    return [
        message
        for to, message in out
        if to == recipient and (type_ is None or message["type"] == type_)
    ]


def types(out: list[Outgoing], recipient: Hashable) -> list[str]:
    return [message["type"] for message in messages(out, recipient)]


def register(engine: ArenaEngine, *clients: Hashable) -> dict[Hashable, Message]:
    """Register C{clients} in one tick; return each one's RegisterPlayerAck data."""
    for client in clients:
        assert engine.submit(client, RegisterPlayerCommand()) == []
    out = engine.tick()
    return {client: messages(out, client, "RegisterPlayerAck")[0]["data"] for client in clients}


def start(engine: ArenaEngine) -> list[Outgoing]:
    return engine.control(StartGameCommand())


def send(engine: ArenaEngine, client: Hashable, command: dict[str, Any]) -> list[Outgoing]:
    """Send one JSON command, as the protocol would, and run the tick that answers it."""
    assert engine.submit(client, parse_command(command)) == []
    return engine.tick()


def reply(engine: ArenaEngine, client: Hashable, command: dict[str, Any]) -> Message:
    """Send one JSON command; return the one reply it got in its tick."""
    out = send(engine, client, command)
    replies = [
        message
        for message in messages(out, client)
        if message["type"] not in ("RadarScanNotification", "StartGameOrder")
    ]
    assert len(replies) == 1, replies
    return replies[0]


def move_command(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"type": "MovePlayerCommand", "data": list(steps)}


SHOOT = {"type": "PlayerShootCommand"}
REGISTER = {"type": "RegisterPlayerCommand"}


def player_snapshot(engine: ArenaEngine, player_id: str) -> Message | None:
    for player in engine.snapshot()["players_snapshots"]:
        if player["id"] == player_id:
            return player
    return None


def position(engine: ArenaEngine, player_id: str) -> tuple[float, float, float]:
    player = player_snapshot(engine, player_id)
    assert player is not None
    return (player["coordinates"]["x"], player["coordinates"]["y"], player["rotation"])


def ticks(engine: ArenaEngine, count: int) -> list[Outgoing]:
    out: list[Outgoing] = []
    for _ in range(count):
        out += engine.tick()
    return out


def playing(
    points: list[list[int]], *clients: Hashable, **config: Any
) -> tuple[ArenaEngine, dict[Hashable, str]]:
    """An engine with C{clients} registered on C{points}, in order, and the game started."""
    engine = make_engine(spawn_points=points, **config)
    acks = register(engine, *clients)
    start(engine)
    return engine, {client: ack["id"] for client, ack in acks.items()}


class ArenaConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Every key of DESIGN.md has its documented default, and asdict echoes all of them."""
        self.assertEqual(ArenaConfig().asdict(), DEFAULTS)
        self.assertEqual(ArenaConfig.from_dict({}).asdict(), DEFAULTS)

    def test_overrides(self) -> None:
        """Given keys override the defaults; spawn points become records and echo as lists."""
        config = ArenaConfig.from_dict(
            {"width": 1000, "players_can_join_started_game": True, "shot_speed": 2.5,
             "spawn_points": [[10, 20, 90], [0, 400, 360]]}
        )
        self.assertEqual(config.width, 1000)
        self.assertTrue(config.players_can_join_started_game)
        self.assertEqual(config.shot_speed, 2.5)
        self.assertEqual(config.spawn_points, (SpawnPoint(10, 20, 90), SpawnPoint(0, 400, 360)))
        self.assertEqual(config.asdict()["spawn_points"], [[10, 20, 90], [0, 400, 360]])

    def assertRefused(self, values: object, key: str) -> ArenaConfigError:
        with self.assertRaises(ArenaConfigError) as caught:
            ArenaConfig.from_dict(values)
        self.assertIsInstance(caught.exception, ValueError)
        self.assertEqual(caught.exception.key, key)
        self.assertIn(key, str(caught.exception))
        return caught.exception

    def test_unknown_key(self) -> None:
        """An unknown key is refused, naming it."""
        self.assertRefused({"width": 900, "gravity": 9.8}, "gravity")

    def test_not_an_object(self) -> None:
        """A configuration that is not a JSON object is refused."""
        self.assertRefused([1, 2], "config")

    def test_ranges(self) -> None:
        """The ranges of DESIGN.md: both bounds are accepted, one past them is refused."""
        for key, low, high in [
            ("width", 100, 10_000), ("height", 100, 10_000),
            ("max_players", 1, 64), ("tick_ms", 10, 1000),
        ]:
            self.assertEqual(getattr(ArenaConfig.from_dict({key: low}), key), low)
            self.assertEqual(getattr(ArenaConfig.from_dict({key: high}), key), high)
            self.assertRefused({key: low - 1}, key)
            self.assertRefused({key: high + 1}, key)

    def test_other_ranges(self) -> None:
        """Keys without a documented range still refuse nonsense: a zero radius, negative
        costs or a half angle over 180."""
        for key, value in [
            ("player_radius", 0), ("player_life", 0), ("move_speed", 0), ("shot_speed", -1),
            ("shot_cost", -1), ("max_tokens", -1), ("long_range_scan_half_angle", 181),
            ("circular_scan_radius", -0.5), ("spawn_margin", -1),
        ]:
            self.assertRefused({key: value}, key)

    def test_types(self) -> None:
        """Integers must be integers (not floats, strings or booleans), numbers must be
        finite numbers, and the flag must be a boolean."""
        for key, value in [
            ("width", 800.5), ("width", "800"), ("width", True), ("max_players", None),
            ("move_speed", "2"), ("move_speed", False), ("move_speed", math.inf),
            ("players_can_join_started_game", 1),
        ]:
            self.assertRefused({key: value}, key)

    def test_cross_key_checks(self) -> None:
        """More initial tokens than the maximum, or a spawn margin that leaves no room for a
        random spawn, are refused naming the key to change."""
        self.assertRefused({"initial_tokens": 50}, "initial_tokens")
        self.assertRefused({"width": 100, "spawn_margin": 51}, "spawn_margin")
        ArenaConfig.from_dict({"width": 100, "spawn_margin": 50})

    def test_spawn_points(self) -> None:
        """spawn_points must be a list of [x, y, rotation] integers inside the arena (its
        border included) with a rotation in 0-360."""
        ArenaConfig.from_dict({"spawn_points": [[0, 0, 0], [800, 400, 360]]})
        for value in [
            {"x": 1}, [[1, 2]], [[1, 2, 3, 4]], [[1.5, 2, 0]], [[1, True, 0]], ["1,2,0"],
            [[801, 10, 0]], [[10, -1, 0]], [[10, 10, 361]], [[0, 0, 0]] * 1001,
        ]:
            self.assertRefused({"spawn_points": value}, "spawn_points")

    def test_constructor_validates(self) -> None:
        """Building a configuration in code is validated like the REST body."""
        with self.assertRaises(ArenaConfigError):
            ArenaConfig(width=99)
        with self.assertRaises(ArenaConfigError):
            ArenaConfig(spawn_points=(SpawnPoint(900, 0, 0),))


class ParseCommandTests(SynchronousTestCase):
    def assertInvalid(self, message: object, *fragments: str) -> None:
        with self.assertRaises(InvalidCommand) as caught:
            parse_command(message)
        for fragment in fragments:
            self.assertIn(fragment, caught.exception.reason)

    def test_commands_without_data(self) -> None:
        """The commands that take no data parse, ignoring any data sent along."""
        self.assertEqual(parse_command(REGISTER), RegisterPlayerCommand())
        self.assertEqual(parse_command({"type": "StartGameCommand"}), StartGameCommand())
        self.assertEqual(parse_command(SHOOT), PlayerShootCommand())
        self.assertEqual(
            parse_command({"type": "RegisterPlayerCommand", "data": {}}), RegisterPlayerCommand()
        )
        self.assertEqual(
            parse_command({"type": "PlayerShootCommand", "data": None}), PlayerShootCommand()
        )

    def test_shoot_alias(self) -> None:
        """The spec's payload spelling PlayerShootComman is a PlayerShootCommand."""
        self.assertEqual(parse_command({"type": "PlayerShootComman"}), PlayerShootCommand())

    def test_not_a_command(self) -> None:
        """A non-object, a missing or non-string type and an unknown type are refused."""
        self.assertInvalid([REGISTER], "JSON object")
        self.assertInvalid("RegisterPlayerCommand", "JSON object")
        self.assertInvalid({"data": {}}, "no type")
        self.assertInvalid({"type": 7}, "must be a string")
        self.assertInvalid({"type": "registerplayercommand"}, "unknown", "registerplayercommand")

    def test_unknown_type_echo_is_short(self) -> None:
        """
        An unknown type is named in the reason, cut to 50 characters (not bytes):
        "unknown command type 'Fly'".
        """
        for name, shown in [("Fly", "Fly"), ("a" * 50, "a" * 50), ("b" * 51, "b" * 50),
                            ("x" * 100_000, "x" * 50), ("é" * 60, "é" * 50)]:
            with self.assertRaises(InvalidCommand) as caught:
                parse_command({"type": name})
            self.assertEqual(caught.exception.reason, f"unknown command type '{shown}'")

    def test_move(self) -> None:
        """A move and a rotation parse into steps, in order; rotations may be reals."""
        self.assertEqual(
            parse_command(move_command({"rotate": 60}, {"move": "forward"})),
            MovePlayerCommand((Rotate(60), Move(Direction.FORWARD))),
        )
        self.assertEqual(
            parse_command(move_command({"move": "backward"}, {"rotate": 359.5})),
            MovePlayerCommand((Move(Direction.BACKWARD), Rotate(359.5))),
        )
        self.assertEqual(
            parse_command(move_command({"rotate": 0})), MovePlayerCommand((Rotate(0),))
        )
        self.assertEqual(
            parse_command(move_command({"rotate": 360})), MovePlayerCommand((Rotate(360),))
        )

    def test_move_data_shape(self) -> None:
        """MovePlayerCommand data must be a non-empty list."""
        self.assertInvalid({"type": "MovePlayerCommand"}, "list")
        self.assertInvalid({"type": "MovePlayerCommand", "data": {"move": "forward"}}, "list")
        self.assertInvalid(move_command(), "empty")

    def test_move_steps_shape(self) -> None:
        """Each step is an object with exactly one key, move or rotate."""
        self.assertInvalid(move_command("forward"), "object")
        self.assertInvalid(move_command({}), "exactly one")
        self.assertInvalid(move_command({"move": "forward", "rotate": 60}), "exactly one")
        self.assertInvalid(move_command({"speed": 3}), "exactly one")

    def test_move_values(self) -> None:
        """move is forward or backward; rotate is a number 0-360 and never a boolean."""
        self.assertInvalid(move_command({"move": "left"}), "forward", "backward")
        self.assertInvalid(move_command({"move": 1}), "forward")
        self.assertInvalid(move_command({"rotate": "60"}), "number")
        self.assertInvalid(move_command({"rotate": True}), "number")
        self.assertInvalid(move_command({"rotate": None}), "number")
        self.assertInvalid(move_command({"rotate": -1}), "between 0 and 360")
        self.assertInvalid(move_command({"rotate": 360.5}), "between 0 and 360")
        self.assertInvalid(move_command({"rotate": math.nan}), "between 0 and 360")

    def test_move_at_most_one_of_each(self) -> None:
        """There can be only one move and one rotate per command."""
        self.assertInvalid(move_command({"move": "forward"}, {"move": "forward"}), "one move")
        self.assertInvalid(move_command({"rotate": 1}, {"rotate": 2}), "one rotate")

    def test_configure_forms(self) -> None:
        """radarType is accepted in the spec's array form, as a bare object, and with a string
        argument; several settings apply in order."""
        long_range = ConfigurePlayerCommand((RadarType.LONG_RANGE_SCAN,))
        for data in [
            [{"op": "radarType", "args": ["long_range_scan"]}],
            {"op": "radarType", "args": ["long_range_scan"]},
            {"op": "radarType", "args": "long_range_scan"},
            [{"op": "radarType", "args": "long_range_scan"}],
        ]:
            self.assertEqual(
                parse_command({"type": "ConfigurePlayerCommand", "data": data}), long_range
            )
        self.assertEqual(
            parse_command({"type": "ConfigurePlayerCommand", "data": [
                {"op": "radarType", "args": ["long_range_scan"]},
                {"op": "radarType", "args": ["circular_scan"]},
            ]}),
            ConfigurePlayerCommand((RadarType.LONG_RANGE_SCAN, RadarType.CIRCULAR_SCAN)),
        )

    def test_configure_bad_shapes(self) -> None:
        """A missing, empty or non-list data and settings that are not objects are refused."""
        self.assertInvalid({"type": "ConfigurePlayerCommand"}, "list")
        self.assertInvalid({"type": "ConfigurePlayerCommand", "data": "radarType"}, "list")
        self.assertInvalid({"type": "ConfigurePlayerCommand", "data": []}, "empty")
        self.assertInvalid({"type": "ConfigurePlayerCommand", "data": ["radarType"]}, "object")

    def test_configure_bad_op(self) -> None:
        """An unknown or missing op is refused, naming the op."""
        self.assertInvalid(
            {"type": "ConfigurePlayerCommand", "data": [{"op": "shield", "args": ["on"]}]},
            "unknown configuration op", "shield",
        )
        self.assertInvalid(
            {"type": "ConfigurePlayerCommand", "data": [{"args": ["long_range_scan"]}]}, "op"
        )
        self.assertInvalid(
            {"type": "ConfigurePlayerCommand", "data": [{"op": ["radarType"], "args": []}]}, "op"
        )

    def test_configure_bad_args(self) -> None:
        """Args must be one known radar type, as a string or a list of one string."""
        for args in [None, [], ["long_range_scan", "circular_scan"], [1], 1, {"a": 1}]:
            self.assertInvalid(
                {"type": "ConfigurePlayerCommand", "data": {"op": "radarType", "args": args}},
                "radarType args",
            )
        self.assertInvalid(
            {"type": "ConfigurePlayerCommand", "data": {"op": "radarType", "args": ["sonar"]}},
            "unknown radar type", "sonar",
        )


class RegistrationTests(SynchronousTestCase):
    def test_ack(self) -> None:
        """RegisterPlayerAck, sent in the next tick, carries a string id, the integer spawn
        position, the life and the shooting info."""
        engine = make_engine(spawn_points=[[10, 20, 0]])
        self.assertEqual(engine.submit(ALICE, RegisterPlayerCommand()), [])
        out = engine.tick()
        self.assertEqual(
            messages(out, ALICE),
            [{"type": "RegisterPlayerAck", "data": {
                "id": "1", "x": 10, "y": 20, "life": 100,
                "shooting": {"tokens": 40, "cost": 6},
            }}],
        )
        self.assertIsInstance(messages(out, ALICE)[0]["data"]["x"], int)

    def test_ids_are_distinct_strings(self) -> None:
        """Every player gets its own string id."""
        acks = register(make_engine(), ALICE, BOB, CAROL)
        ids = [ack["id"] for ack in acks.values()]
        self.assertTrue(all(isinstance(id_, str) for id_ in ids))
        self.assertEqual(len(set(ids)), 3)

    def test_register_twice(self) -> None:
        """A connection that already registered a player cannot register another."""
        engine = make_engine()
        register(engine, ALICE)
        error = reply(engine, ALICE, REGISTER)
        self.assertEqual(error["type"], "InvalidCommandError")
        self.assertIn("already registered", error["data"]["reason"])
        self.assertEqual(len(engine.player_ids()), 1)

    def test_full_arena(self) -> None:
        """Past max_players, a registration gets InvalidCommandError: the arena is full."""
        engine = make_engine(max_players=2)
        register(engine, ALICE, BOB)
        self.assertEqual(
            reply(engine, CAROL, REGISTER), invalid_command_error("the arena is full")
        )

    def test_arrival_order(self) -> None:
        """Queued commands apply in arrival order: the first to ask takes the last place."""
        engine = make_engine(max_players=1)
        engine.submit(BOB, RegisterPlayerCommand())
        engine.submit(ALICE, RegisterPlayerCommand())
        out = engine.tick()
        self.assertEqual(types(out, BOB), ["RegisterPlayerAck"])
        self.assertEqual(types(out, ALICE), ["InvalidCommandError"])

    def test_configure_needs_registration(self) -> None:
        """ConfigurePlayerCommand from a connection that registered no player is refused."""
        error = reply(make_engine(), ALICE, {
            "type": "ConfigurePlayerCommand", "data": {"op": "radarType", "args": "circular_scan"}
        })
        self.assertEqual(error, invalid_command_error("the player is not registered"))


class TickQueueTests(SynchronousTestCase):
    def test_reply_in_next_tick(self) -> None:
        """A player command is only queued: its reply comes with the next tick."""
        engine, ids = playing([[100, 100, 0]], ALICE)
        self.assertEqual(engine.submit(ALICE, parse_command(move_command({"rotate": 90}))), [])
        self.assertEqual(position(engine, ids[ALICE]), (100.0, 100.0, 0))
        self.assertEqual(types(engine.tick(), ALICE), [
            "RadarScanNotification", "MovePlayerAck",
        ])
        self.assertEqual(position(engine, ids[ALICE]), (100.0, 100.0, 90))

    def test_one_command_per_tick(self) -> None:
        """A second command in the same tick is refused at once; the first still applies, and
        the next tick takes commands again."""
        engine, ids = playing([[100, 100, 0]], ALICE)
        engine.submit(ALICE, parse_command(move_command({"move": "forward"})))
        refused = engine.submit(ALICE, parse_command(move_command({"move": "forward"})))
        self.assertEqual(refused, [
            Outgoing(ALICE, invalid_command_error("only one command per player per tick"))
        ])
        self.assertEqual(messages(engine.tick(), ALICE, "MovePlayerAck")[0]["data"]["x"], 102.0)
        self.assertEqual(engine.submit(ALICE, parse_command(SHOOT)), [])

    def test_one_command_per_player(self) -> None:
        """The limit is per player: two players each get their command applied."""
        engine, ids = playing([[100, 100, 0], [200, 200, 0]], ALICE, BOB)
        engine.submit(ALICE, parse_command(move_command({"move": "forward"})))
        engine.submit(BOB, parse_command(move_command({"move": "forward"})))
        out = engine.tick()
        self.assertEqual(len(messages(out, ALICE, "MovePlayerAck")), 1)
        self.assertEqual(len(messages(out, BOB, "MovePlayerAck")), 1)

    def test_leave_drops_queued_command(self) -> None:
        """A connection that closes before the tick has its queued command forgotten."""
        engine = make_engine()
        engine.submit(ALICE, RegisterPlayerCommand())
        self.assertEqual(engine.leave(ALICE), [])
        out = engine.tick()
        self.assertEqual(messages(out, ALICE), [])
        self.assertEqual(engine.player_ids(), [])


class StartGameTests(SynchronousTestCase):
    def test_start(self) -> None:
        """StartGameCommand applies at once: StartGameAck to the controller and a
        StartGameOrder to every registered player."""
        engine = make_engine()
        register(engine, ALICE, BOB)
        out = start(engine)
        self.assertEqual(out, [
            Outgoing(CONTROLLER, {"type": "StartGameAck", "data": {}}),
            Outgoing(ALICE, {"type": "StartGameOrder", "data": {}}),
            Outgoing(BOB, {"type": "StartGameOrder", "data": {}}),
        ])
        self.assertTrue(engine.started)

    def test_start_twice(self) -> None:
        """Starting a started game is refused."""
        engine = make_engine()
        start(engine)
        self.assertEqual(start(engine), [
            Outgoing(CONTROLLER, invalid_command_error("the game has already started"))
        ])

    def test_player_cannot_start(self) -> None:
        """A player connection sending StartGameCommand gets InvalidCommandError at once."""
        engine = make_engine()
        register(engine, ALICE)
        out = engine.submit(ALICE, StartGameCommand())
        self.assertEqual(types(out, ALICE), ["InvalidCommandError"])
        self.assertIn("controller", out[0].message["data"]["reason"])
        self.assertFalse(engine.started)

    def test_controller_cannot_play(self) -> None:
        """The controller sending a player command gets InvalidCommandError."""
        out = make_engine().control(RegisterPlayerCommand())
        self.assertEqual(types(out, CONTROLLER), ["InvalidCommandError"])

    def test_moves_before_start(self) -> None:
        """Moves and shots before the start are refused: the game has not started."""
        engine = make_engine()
        register(engine, ALICE)
        not_started = invalid_command_error("the game has not started")
        self.assertEqual(reply(engine, ALICE, move_command({"move": "forward"})), not_started)
        self.assertEqual(reply(engine, ALICE, SHOOT), not_started)

    def test_unregistered_player(self) -> None:
        """Moves and shots from a connection that registered no player are refused."""
        engine = make_engine()
        start(engine)
        not_registered = invalid_command_error("the player is not registered")
        self.assertEqual(reply(engine, ALICE, move_command({"move": "forward"})), not_registered)
        self.assertEqual(reply(engine, ALICE, SHOOT), not_registered)


class MovementTests(SynchronousTestCase):
    def moved(self, *steps: dict[str, Any], at: tuple[int, int, int] = (10, 10, 0)) -> Message:
        """The reply to one MovePlayerCommand from a lone started player at C{at}."""
        engine, ids = playing([list(at)], ALICE)
        return reply(engine, ALICE, move_command(*steps))

    def test_rotate_then_forward(self) -> None:
        """From (10, 10) heading 0, rotate 60 then forward moves 2 along 60 degrees:
        (11.0, 11.73205), rounded to 5 decimals."""
        self.assertEqual(
            self.moved({"rotate": 60}, {"move": "forward"}),
            {"type": "MovePlayerAck", "data": {"x": 11.0, "y": 11.73205, "rotation": 60,
                                              "shooting": {"tokens": 40, "cost": 6}}},
        )

    def test_rotate_only(self) -> None:
        """A rotation alone turns the player in place."""
        self.assertEqual(
            self.moved({"rotate": 60})["data"],
            {"x": 10.0, "y": 10.0, "rotation": 60, "shooting": {"tokens": 40, "cost": 6}},
        )

    def test_forward(self) -> None:
        """forward moves move_speed along the heading."""
        self.assertEqual(
            self.moved({"move": "forward"})["data"],
            {"x": 12.0, "y": 10.0, "rotation": 0, "shooting": {"tokens": 40, "cost": 6}},
        )

    def test_backward(self) -> None:
        """backward moves move_speed against the heading."""
        self.assertEqual(
            self.moved({"move": "backward"})["data"],
            {"x": 8.0, "y": 10.0, "rotation": 0, "shooting": {"tokens": 40, "cost": 6}},
        )

    def test_steps_in_order(self) -> None:
        """Steps apply in order: forward then rotate moves along the old heading."""
        self.assertEqual(
            self.moved({"move": "forward"}, {"rotate": 60})["data"],
            {"x": 12.0, "y": 10.0, "rotation": 60, "shooting": {"tokens": 40, "cost": 6}},
        )

    def test_rotation_is_absolute(self) -> None:
        """rotate sets the heading, it does not add to it: 90 then 90 is still 90, and
        90 is +y."""
        engine, ids = playing([[100, 100, 0]], ALICE)
        reply(engine, ALICE, move_command({"rotate": 90}))
        self.assertEqual(
            reply(engine, ALICE, move_command({"rotate": 90}, {"move": "forward"}))["data"],
            {"x": 100.0, "y": 102.0, "rotation": 90, "shooting": {"tokens": 40, "cost": 6}},
        )

    def test_ack_floats(self) -> None:
        """MovePlayerAck coordinates are floats, even when they are whole."""
        data = self.moved({"rotate": 60})["data"]
        self.assertIsInstance(data["x"], float)
        self.assertIsInstance(data["y"], float)

    def test_wall(self) -> None:
        """At x = 798 in an 800-wide arena, moving forward would put the player's edge past
        the wall: refused, and the player stays where it was."""
        engine, ids = playing([[798, 200, 0]], ALICE)
        self.assertEqual(
            reply(engine, ALICE, move_command({"move": "forward"})),
            invalid_command_error("the move hits a wall"),
        )
        self.assertEqual(position(engine, ids[ALICE]), (798.0, 200.0, 0))

    def test_every_wall(self) -> None:
        """Each of the four walls stops a player whose edge would cross it."""
        engine, ids = playing(
            [[798, 200, 0], [200, 398, 90], [2, 200, 180], [200, 2, 270]],
            ALICE, BOB, CAROL, DAVE,
        )
        for client in (ALICE, BOB, CAROL, DAVE):
            engine.submit(client, parse_command(move_command({"move": "forward"})))
        out = engine.tick()
        for client in (ALICE, BOB, CAROL, DAVE):
            self.assertEqual(
                messages(out, client, "InvalidCommandError"),
                [invalid_command_error("the move hits a wall")],
            )

    def test_touching_wall_allowed(self) -> None:
        """An edge exactly on the wall is not past it: from 793, forward to 795 is fine."""
        self.assertEqual(
            self.moved({"move": "forward"}, at=(793, 200, 0))["data"],
            {"x": 795.0, "y": 200.0, "rotation": 0, "shooting": {"tokens": 40, "cost": 6}},
        )

    def test_ack_carries_the_tokens(self) -> None:
        """
        MovePlayerAck says the tokens as PlayerShotAck does: 40 - 6 after a shot, then 2
        more each tick, up to 40 (a bot learns it can shoot again without shooting).
        """
        engine, ids = playing([[100, 100, 0]], ALICE)
        self.assertEqual(reply(engine, ALICE, SHOOT)["data"]["shooting"], {"tokens": 34, "cost": 6})
        tokens = [reply(engine, ALICE, move_command({"rotate": 90}))["data"]["shooting"]["tokens"]
                  for _ in range(4)]
        self.assertEqual(tokens, [36, 38, 40, 40])

    def test_player_collision_rolls_back_rotation(self) -> None:
        """With players at (200, 200) and (206, 200), a move that keeps the centres within 10
        is refused, and the rotation of the same command is rolled back too."""
        engine, ids = playing([[200, 200, 0], [206, 200, 0]], ALICE, BOB)
        self.assertEqual(
            reply(engine, ALICE, move_command({"move": "forward"})),
            invalid_command_error("the move hits another player"),
        )
        self.assertEqual(
            reply(engine, ALICE, move_command({"rotate": 90}, {"move": "forward"})),
            invalid_command_error("the move hits another player"),
        )
        self.assertEqual(position(engine, ids[ALICE]), (200.0, 200.0, 0))

    def test_collision_boundary(self) -> None:
        """Centres exactly 10 apart collide (the rule is <=); 11 apart do not."""
        engine, ids = playing([[200, 200, 0], [212, 200, 0], [200, 300, 0], [213, 300, 0]],
                              ALICE, BOB, CAROL, DAVE)
        engine.submit(ALICE, parse_command(move_command({"move": "forward"})))
        engine.submit(CAROL, parse_command(move_command({"move": "forward"})))
        out = engine.tick()
        self.assertEqual(types(out, ALICE)[-1], "InvalidCommandError")
        self.assertEqual(messages(out, CAROL, "MovePlayerAck")[0]["data"]["x"], 202.0)

    def test_destroyed_player_does_not_block(self) -> None:
        """A destroyed player has left the arena: others may move through its spot."""
        engine, ids = playing([[100, 100, 0], [120, 100, 180], [300, 300, 0]],
                              ALICE, BOB, CAROL, shot_damage=100)
        send(engine, ALICE, SHOOT)
        ticks(engine, 6)
        self.assertIsNone(player_snapshot(engine, ids[BOB]))
        # Alice walks to 110, within 10 of where Bob was at 120.
        for _ in range(5):
            self.assertEqual(reply(engine, ALICE, move_command({"move": "forward"}))["type"],
                             "MovePlayerAck")
        self.assertEqual(position(engine, ids[ALICE])[0], 110.0)


class ShootingTests(SynchronousTestCase):
    def test_first_shot_tokens(self) -> None:
        """The first shot costs 6 of the 40 initial tokens: its ack shows 34."""
        engine, ids = playing([[100, 100, 0]], ALICE)
        self.assertEqual(
            reply(engine, ALICE, SHOOT),
            {"type": "PlayerShotAck", "data": {"shooting": {"tokens": 34, "cost": 6}}},
        )

    def test_alias_shoots(self) -> None:
        """PlayerShootComman shoots too."""
        engine, ids = playing([[100, 100, 0]], ALICE)
        self.assertEqual(reply(engine, ALICE, {"type": "PlayerShootComman"})["type"],
                         "PlayerShotAck")

    def test_tokens_regenerate_up_to_max(self) -> None:
        """Tokens come back by 2 a tick and never exceed max_tokens."""
        engine, ids = playing([[100, 100, 90]], ALICE)
        reply(engine, ALICE, SHOOT)
        seen = []
        for _ in range(5):
            engine.tick()
            snapshot = player_snapshot(engine, ids[ALICE])
            assert snapshot is not None
            seen.append(snapshot["tokens"])
        self.assertEqual(seen, [36, 38, 40, 40, 40])

    def test_no_regeneration_before_start(self) -> None:
        """Tokens only regenerate while a game is started."""
        engine = make_engine(initial_tokens=10)
        ids = {client: ack["id"] for client, ack in register(engine, ALICE).items()}
        ticks(engine, 3)
        snapshot = player_snapshot(engine, ids[ALICE])
        assert snapshot is not None
        self.assertEqual(snapshot["tokens"], 10)

    def test_out_of_tokens(self) -> None:
        """A shot that costs more tokens than the player has is refused."""
        engine, ids = playing([[100, 100, 0]], ALICE, initial_tokens=5, tokens_per_tick=0)
        self.assertEqual(
            reply(engine, ALICE, SHOOT), invalid_command_error("not enough tokens to shoot")
        )
        self.assertEqual(engine.snapshot()["shots_snapshots"], [])

    def test_shot_spawns_at_edge_and_flies(self) -> None:
        """A shot is born on the shooter's edge along its heading and then moves 1.5 a tick."""
        engine, ids = playing([[100, 100, 60]], ALICE)
        send(engine, ALICE, SHOOT)
        shots = engine.snapshot()["shots_snapshots"]
        self.assertEqual(shots, [
            {"id": shots[0]["id"], "coordinates": {"x": 102.5, "y": 104.33013}, "rotation": 60}
        ])
        engine.tick()
        # 5 + 1.5 = 6.5 from the centre along 60 degrees.
        self.assertEqual(engine.snapshot()["shots_snapshots"][0]["coordinates"],
                         {"x": 103.25, "y": 105.62917})
        engine.tick()
        self.assertEqual(engine.snapshot()["shots_snapshots"][0]["coordinates"],
                         {"x": 104.0, "y": 106.9282})

    def test_shot_keeps_its_heading(self) -> None:
        """A shot flies along the heading it was fired with, whatever the shooter does next."""
        engine, ids = playing([[100, 100, 0]], ALICE)
        send(engine, ALICE, SHOOT)
        send(engine, ALICE, move_command({"rotate": 90}))
        shot = engine.snapshot()["shots_snapshots"][0]
        self.assertEqual((shot["coordinates"], shot["rotation"]), ({"x": 106.5, "y": 100.0}, 0))

    def test_shot_dies_at_wall(self) -> None:
        """A shot is destroyed once it reaches a wall: fired from 790 its edge start is 795,
        and the fourth move takes it to 801."""
        engine, ids = playing([[790, 200, 0]], ALICE)
        send(engine, ALICE, SHOOT)
        ticks(engine, 3)
        self.assertEqual(
            engine.snapshot()["shots_snapshots"][0]["coordinates"], {"x": 799.5, "y": 200.0}
        )
        engine.tick()
        self.assertEqual(engine.snapshot()["shots_snapshots"], [])

    def test_shots_have_distinct_ids(self) -> None:
        """Every shot gets its own id."""
        engine, ids = playing([[100, 100, 0], [100, 200, 0]], ALICE, BOB)
        engine.submit(ALICE, PlayerShootCommand())
        engine.submit(BOB, PlayerShootCommand())
        engine.tick()
        shot_ids = [shot["id"] for shot in engine.snapshot()["shots_snapshots"]]
        self.assertEqual(len(set(shot_ids)), 2)


class HitTests(SynchronousTestCase):
    """Alice at (100, 100) shoots Bob at (120, 100): the shot starts at x = 105 and is within
    player_radius + shot_radius = 6 of Bob's centre once x >= 114, after 6 moves."""

    def duel(self, *clients: Hashable, **config: Any) -> tuple[ArenaEngine, dict[Hashable, str]]:
        points = [[100, 100, 0], [120, 100, 180], [300, 300, 0]]
        return playing(points[: len(clients)], *clients, **config)

    def test_one_hit(self) -> None:
        """The shot hits Bob in the sixth tick after it was fired: life 95, notified to him."""
        engine, ids = self.duel(ALICE, BOB)
        send(engine, ALICE, SHOOT)
        out = ticks(engine, 5)
        self.assertEqual(messages(out, BOB, "PlayerHitByShotNotification"), [])
        out = engine.tick()
        self.assertEqual(
            messages(out, BOB, "PlayerHitByShotNotification"),
            [{"type": "PlayerHitByShotNotification", "data": {"life": 95}}],
        )
        self.assertEqual(messages(out, ALICE, "PlayerHitByShotNotification"), [])
        self.assertEqual(engine.snapshot()["shots_snapshots"], [])
        snapshot = player_snapshot(engine, ids[BOB])
        assert snapshot is not None
        self.assertEqual(snapshot["life"], 95)

    def test_twenty_hits_destroy(self) -> None:
        """Twenty hits of 5 take Bob's 100 life: the twentieth notifies life 0, then
        PlayerDestroyedNotification, and as only Alice is left the game is over."""
        engine, ids = self.duel(ALICE, BOB, shot_cost=0)
        out: list[Outgoing] = []
        for _ in range(20):
            out += send(engine, ALICE, SHOOT)
        out += ticks(engine, 6)
        hits = messages(out, BOB, "PlayerHitByShotNotification")
        self.assertEqual([hit["data"]["life"] for hit in hits], list(range(95, -1, -5)))
        self.assertEqual(types(out, BOB)[-3:], [
            "PlayerHitByShotNotification", "PlayerDestroyedNotification", "GameOverNotification",
        ])
        self.assertEqual(messages(out, BOB, "PlayerDestroyedNotification"),
                         [{"type": "PlayerDestroyedNotification", "data": {}}])
        self.assertEqual(messages(out, CONTROLLER, "GameOverNotification"),
                         [{"type": "GameOverNotification", "data": {"winner": ids[ALICE]}}])

    def test_life_never_negative(self) -> None:
        """A hit bigger than the life left reports life 0."""
        engine, ids = self.duel(ALICE, BOB, shot_damage=150)
        send(engine, ALICE, SHOOT)
        out = ticks(engine, 6)
        self.assertEqual(messages(out, BOB, "PlayerHitByShotNotification")[0]["data"],
                         {"life": 0})

    def test_destroyed_player_leaves_arena(self) -> None:
        """A destroyed player leaves the arena and the snapshots and nobody's radar sees it;
        with two players left, the game goes on."""
        engine, ids = self.duel(ALICE, BOB, CAROL, shot_damage=100)
        send(engine, ALICE, SHOOT)
        out = ticks(engine, 6)
        self.assertEqual(types(out, BOB)[-2:], [
            "PlayerHitByShotNotification", "PlayerDestroyedNotification",
        ])
        self.assertEqual(messages(out, CONTROLLER, "GameOverNotification"), [])
        snapshot = messages(out, CONTROLLER, "GameSnapshotNotification")[-1]
        self.assertEqual(
            [player["id"] for player in snapshot["data"]["arena_snapshot"]["players_snapshots"]],
            [ids[ALICE], ids[CAROL]],
        )
        self.assertEqual(engine.player_ids(), [ids[ALICE], ids[CAROL]])
        out = engine.tick()
        self.assertEqual(messages(out, BOB), [])
        self.assertEqual(messages(out, ALICE, "RadarScanNotification")[0]["data"]["elements"], [])
        self.assertTrue(engine.started)

    def test_destroyed_player_cannot_act(self) -> None:
        """A destroyed player stays connected but its moves, shots, settings and a new
        registration are refused until the game is over."""
        engine, ids = self.duel(ALICE, BOB, CAROL, shot_damage=100)
        send(engine, ALICE, SHOOT)
        ticks(engine, 6)
        for command in [move_command({"rotate": 10}), SHOOT,
                        {"type": "ConfigurePlayerCommand",
                         "data": {"op": "radarType", "args": "long_range_scan"}}]:
            self.assertEqual(reply(engine, BOB, command),
                             invalid_command_error("the player was destroyed"))
        error = reply(engine, BOB, REGISTER)
        self.assertEqual(error["type"], "InvalidCommandError")
        self.assertIn("destroyed", error["data"]["reason"])

    def test_first_player_in_registration_order(self) -> None:
        """A shot reaching two overlapping players hits only the first registered."""
        engine, ids = playing([[100, 100, 0], [120, 100, 0], [120, 100, 0]], ALICE, BOB, CAROL)
        send(engine, ALICE, SHOOT)
        out = ticks(engine, 6)
        self.assertEqual(len(messages(out, BOB, "PlayerHitByShotNotification")), 1)
        self.assertEqual(messages(out, CAROL, "PlayerHitByShotNotification"), [])

    def test_shooter_can_be_hit(self) -> None:
        """The shooter is a target too: running after its own shot it is hit when the shot
        is within 6 of its centre (shot at 108 after two moves, shooter at 102)."""
        engine, ids = playing([[100, 100, 0]], ALICE)
        send(engine, ALICE, SHOOT)
        out = send(engine, ALICE, move_command({"move": "forward"}))
        self.assertEqual(messages(out, ALICE, "PlayerHitByShotNotification"), [])
        out = engine.tick()
        self.assertEqual(messages(out, ALICE, "PlayerHitByShotNotification"),
                         [{"type": "PlayerHitByShotNotification", "data": {"life": 95}}])

    def test_hit_then_command_same_tick(self) -> None:
        """Hits apply before the tick's commands: a player destroyed in a tick has its queued
        command of that tick refused."""
        engine, ids = self.duel(ALICE, BOB, CAROL, shot_damage=100)
        send(engine, ALICE, SHOOT)
        ticks(engine, 5)
        engine.submit(BOB, parse_command(move_command({"rotate": 0})))
        out = engine.tick()
        self.assertEqual(types(out, BOB), [
            "PlayerHitByShotNotification", "PlayerDestroyedNotification", "InvalidCommandError",
        ])


class RadarTests(SynchronousTestCase):
    def scans(self, points: list[list[int]], *clients: Hashable,
              configure: dict[Hashable, str] | None = None, **config: Any) -> dict[Hashable, Any]:
        """Each player's RadarScanNotification data from the first tick after the start."""
        engine = make_engine(spawn_points=points, **config)
        register(engine, *clients)
        for client, radar in (configure or {}).items():
            engine.submit(client, parse_command({
                "type": "ConfigurePlayerCommand", "data": {"op": "radarType", "args": radar}
            }))
        engine.tick()
        start(engine)
        out = engine.tick()
        return {client: messages(out, client, "RadarScanNotification")[0]["data"]
                for client in clients}

    def test_circular_walls(self) -> None:
        """At (380, 380) in 800x400 the radius-40 circle crosses y = 400 at x = 380 +- 34.64:
        [[[414, 400], [345, 400]]], truncated, the larger point first."""
        self.assertEqual(self.scans([[380, 380, 0]], ALICE)[ALICE],
                         {"elements": [], "walls": [[[414, 400], [345, 400]]]})

    def test_circular_elements(self) -> None:
        """A circular scan sees every other player whose centre is within its radius (40
        included, 41 not), in registration order, as elements of type unknown."""
        scans = self.scans([[200, 200, 0], [230, 200, 0], [200, 241, 0], [200, 160, 0]],
                           ALICE, BOB, CAROL, DAVE)
        self.assertEqual(scans[ALICE]["elements"], [
            {"type": "unknown", "coordinates": {"x": 230.0, "y": 200.0}},
            {"type": "unknown", "coordinates": {"x": 200.0, "y": 160.0}},
        ])
        self.assertEqual(scans[ALICE]["walls"], [])

    def test_long_range(self) -> None:
        """Long range from (200, 200) heading 0 sees (250, 200), not (290, 200) beyond its 80,
        not (120, 200) behind it; it reports no walls."""
        scans = self.scans([[200, 200, 0], [250, 200, 0], [290, 200, 0], [120, 200, 0]],
                           ALICE, BOB, CAROL, DAVE, configure={ALICE: "long_range_scan"})
        self.assertEqual(scans[ALICE], {
            "elements": [{"type": "unknown", "coordinates": {"x": 250.0, "y": 200.0}}],
            "walls": [],
        })

    def test_long_range_cone(self) -> None:
        """The cone is +-30 degrees around the heading, across 0: heading 350 sees bearings
        14 and -27 degrees but not 32."""
        scans = self.scans([[200, 200, 350], [240, 210, 0], [240, 180, 0], [240, 225, 0]],
                           ALICE, BOB, CAROL, DAVE, configure={ALICE: "long_range_scan"})
        self.assertEqual(
            [element["coordinates"] for element in scans[ALICE]["elements"]],
            [{"x": 240.0, "y": 210.0}, {"x": 240.0, "y": 180.0}],
        )

    def test_long_range_near_walls(self) -> None:
        """Even against a wall, a long range scan reports no walls."""
        scans = self.scans([[380, 380, 0]], ALICE, configure={ALICE: "long_range_scan"})
        self.assertEqual(scans[ALICE]["walls"], [])

    def test_no_radar_before_start(self) -> None:
        """Radar scans only run while a game is started."""
        engine = make_engine()
        register(engine, ALICE)
        self.assertEqual(messages(engine.tick(), ALICE), [])

    def test_every_tick(self) -> None:
        """Each live player gets one scan every tick of a started game."""
        engine, ids = playing([[100, 100, 0], [300, 300, 0]], ALICE, BOB)
        out = ticks(engine, 3)
        self.assertEqual(len(messages(out, ALICE, "RadarScanNotification")), 3)
        self.assertEqual(len(messages(out, BOB, "RadarScanNotification")), 3)

    def test_tangent(self) -> None:
        """A circle tangent to a wall touches it at one point."""
        self.assertEqual(scan_walls(200, 360, 40, 800, 400), [[[200, 400]]])

    def test_corner_clamped(self) -> None:
        """Near a corner the crossings are clamped to the arena; walls come in the order
        x = W, y = 0, x = 0, y = H."""
        # x = 0 at distance 10: y = 390 +- 38.73 -> 428 (clamped to 400) and 351.
        # y = 400 at distance 10: x = 10 +- 38.73 -> 48 and -28 (clamped to 0).
        self.assertEqual(scan_walls(10, 390, 40, 800, 400),
                         [[[0, 400], [0, 351]], [[48, 400], [0, 400]]])
        self.assertEqual(scan_walls(790, 10, 40, 800, 400),
                         [[[800, 48], [800, 0]], [[800, 0], [751, 0]]])

    def test_all_four_walls(self) -> None:
        """A circle larger than the arena crosses the four walls, in order."""
        self.assertEqual(scan_walls(50, 50, 80, 100, 100), [
            [[100, 100], [100, 0]], [[100, 0], [0, 0]], [[0, 100], [0, 0]], [[100, 100], [0, 100]],
        ])

    def test_truncation_toward_zero(self) -> None:
        """Crossings are truncated, not rounded: 414.64 is 414 and 345.36 is 345."""
        self.assertEqual(scan_walls(380, 380, 40, 800, 400), [[[414, 400], [345, 400]]])


class ConfigureTests(SynchronousTestCase):
    def radar(self, engine: ArenaEngine, player_id: str) -> Any:
        snapshot = player_snapshot(engine, player_id)
        assert snapshot is not None
        return snapshot["radar"]

    def test_forms(self) -> None:
        """Each accepted form switches to long range (acked, and shown in the snapshot with
        its radius); circular_scan switches back."""
        engine = make_engine()
        player_id = register(engine, ALICE)[ALICE]["id"]
        self.assertEqual(self.radar(engine, player_id), {"type": "circular_scan", "radius": 40})
        for data in [
            [{"op": "radarType", "args": ["long_range_scan"]}],
            {"op": "radarType", "args": ["long_range_scan"]},
            {"op": "radarType", "args": "long_range_scan"},
        ]:
            self.assertEqual(
                reply(engine, ALICE, {"type": "ConfigurePlayerCommand", "data": data}),
                {"type": "ConfigurePlayerAck", "data": {}},
            )
            self.assertEqual(self.radar(engine, player_id),
                             {"type": "long_range_scan", "radius": 80})
            reply(engine, ALICE, {"type": "ConfigurePlayerCommand",
                                  "data": {"op": "radarType", "args": "circular_scan"}})
            self.assertEqual(self.radar(engine, player_id),
                             {"type": "circular_scan", "radius": 40})

    def test_last_setting_wins(self) -> None:
        """Several settings in one command apply in order."""
        engine = make_engine()
        player_id = register(engine, ALICE)[ALICE]["id"]
        reply(engine, ALICE, {"type": "ConfigurePlayerCommand", "data": [
            {"op": "radarType", "args": ["circular_scan"]},
            {"op": "radarType", "args": ["long_range_scan"]},
        ]})
        self.assertEqual(self.radar(engine, player_id)["type"], "long_range_scan")

    def test_after_start(self) -> None:
        """Configuring works after the start too."""
        engine, ids = playing([[100, 100, 0]], ALICE)
        self.assertEqual(
            reply(engine, ALICE, {"type": "ConfigurePlayerCommand",
                                  "data": {"op": "radarType", "args": "long_range_scan"}})["type"],
            "ConfigurePlayerAck",
        )
        self.assertEqual(self.radar(engine, ids[ALICE])["type"], "long_range_scan")


class LateJoinTests(SynchronousTestCase):
    def test_join_started_game(self) -> None:
        """With players_can_join_started_game, a late registrant spawns at once and gets
        StartGameOrder right after its ack; it can play in the next tick."""
        engine, ids = playing([[100, 100, 0], [300, 300, 0]], ALICE,
                              players_can_join_started_game=True)
        out = send(engine, BOB, REGISTER)
        self.assertEqual(types(out, BOB), ["RegisterPlayerAck", "StartGameOrder"])
        bob = messages(out, BOB, "RegisterPlayerAck")[0]["data"]
        self.assertEqual((bob["x"], bob["y"]), (300, 300))
        self.assertEqual(engine.player_ids(), [ids[ALICE], bob["id"]])
        self.assertEqual(reply(engine, BOB, move_command({"move": "forward"}))["type"],
                         "MovePlayerAck")

    def test_parked_until_next_round(self) -> None:
        """Without players_can_join_started_game, a late registrant gets its ack with its
        reserved spawn point and no StartGameOrder; it is in no snapshot nor radar, and its
        moves and shots wait for the next round."""
        engine, ids = playing([[100, 100, 0], [200, 100, 0], [110, 100, 0]], ALICE, BOB)
        out = send(engine, CAROL, REGISTER)
        self.assertEqual(types(out, CAROL), ["RegisterPlayerAck"])
        self.assertEqual(
            {key: value for key, value in messages(out, CAROL)[0]["data"].items() if key != "id"},
            {"x": 110, "y": 100, "life": 100, "shooting": {"tokens": 40, "cost": 6}},
        )
        self.assertEqual(engine.player_ids(), [ids[ALICE], ids[BOB]])
        waiting = invalid_command_error("waiting for the next round")
        self.assertEqual(reply(engine, CAROL, move_command({"rotate": 1})), waiting)
        self.assertEqual(reply(engine, CAROL, SHOOT), waiting)
        out = engine.tick()
        self.assertEqual(messages(out, ALICE, "RadarScanNotification")[0]["data"]["elements"], [])
        self.assertEqual(messages(out, CAROL), [])
        # Parked players may still choose their radar for the next round.
        self.assertEqual(
            reply(engine, CAROL, {"type": "ConfigurePlayerCommand",
                                  "data": {"op": "radarType", "args": "long_range_scan"}})["type"],
            "ConfigurePlayerAck",
        )

    def test_parked_plays_next_round(self) -> None:
        """When the round ends the parked player is told, moves into the arena on its reserved
        spot, and gets StartGameOrder with the next start; the finished round's players must
        register again."""
        engine, ids = playing([[100, 100, 0], [200, 100, 0], [110, 300, 0]], ALICE, BOB)
        carol = messages(send(engine, CAROL, REGISTER), CAROL)[0]["data"]["id"]
        out = engine.leave(BOB)
        self.assertEqual(messages(out, CAROL), [
            {"type": "GameOverNotification", "data": {"winner": ids[ALICE]}}
        ])
        self.assertFalse(engine.started)
        self.assertEqual(engine.player_ids(), [carol])
        self.assertEqual(position(engine, carol), (110.0, 300.0, 0))
        self.assertEqual(start(engine)[1:], [Outgoing(CAROL, {"type": "StartGameOrder",
                                                               "data": {}})])
        self.assertEqual(reply(engine, ALICE, SHOOT),
                         invalid_command_error("the player is not registered"))
        self.assertEqual(reply(engine, CAROL, SHOOT)["type"], "PlayerShotAck")

    def test_next_round_capacity(self) -> None:
        """Parked players are limited to max_players, the size of the next round."""
        engine, ids = playing([], ALICE, max_players=1)
        self.assertEqual(types(send(engine, BOB, REGISTER), BOB), ["RegisterPlayerAck"])
        self.assertEqual(reply(engine, CAROL, REGISTER),
                         invalid_command_error("the arena is full"))

    def test_join_started_full(self) -> None:
        """Joining a started game is also limited by max_players."""
        engine, ids = playing([], ALICE, max_players=1, players_can_join_started_game=True)
        self.assertEqual(reply(engine, BOB, REGISTER),
                         invalid_command_error("the arena is full"))


class RoundTests(SynchronousTestCase):
    def destroy_bob(self, **config: Any) -> tuple[ArenaEngine, dict[Hashable, str], list[Outgoing]]:
        """Alice destroys Bob with one shot; return what the tick of his end sent."""
        engine, ids = playing([[100, 100, 0], [120, 100, 180]], ALICE, BOB,
                              shot_damage=100, **config)
        send(engine, ALICE, SHOOT)
        ticks(engine, 5)
        return engine, ids, engine.tick()

    def test_game_over(self) -> None:
        """When a destruction leaves one player, GameOverNotification names it as the winner
        to every player (the destroyed one too) and the controller, before the snapshot;
        the arena is no longer started."""
        engine, ids, out = self.destroy_bob()
        over = {"type": "GameOverNotification", "data": {"winner": ids[ALICE]}}
        self.assertEqual(messages(out, ALICE, "GameOverNotification"), [over])
        self.assertEqual(messages(out, BOB, "GameOverNotification"), [over])
        self.assertEqual(types(out, CONTROLLER), ["GameOverNotification",
                                                  "GameSnapshotNotification"])
        self.assertFalse(engine.started)

    def test_round_is_cleared(self) -> None:
        """After game over every registration of the round and every shot is gone."""
        engine, ids = playing([[100, 100, 0], [120, 100, 180]], ALICE, BOB, shot_damage=100)
        send(engine, ALICE, SHOOT)
        send(engine, ALICE, SHOOT)
        ticks(engine, 4)
        self.assertEqual(len(engine.snapshot()["shots_snapshots"]), 2)
        # The first shot reaches Bob; the second is still flying when the round ends.
        engine.tick()
        self.assertEqual(engine.player_ids(), [])
        self.assertEqual(engine.snapshot(), {"players_snapshots": [], "shots_snapshots": []})
        self.assertEqual(reply(engine, ALICE, move_command({"rotate": 1})),
                         invalid_command_error("the player is not registered"))

    def test_second_round(self) -> None:
        """Sockets register again after game over (the destroyed one too), spawn points are
        used from the first one again, ids are new, and the controller starts a new round."""
        engine, ids, out = self.destroy_bob()
        self.assertEqual(engine.snapshot()["shots_snapshots"], [])
        acks = register(engine, BOB, ALICE)
        self.assertEqual((acks[BOB]["x"], acks[BOB]["y"]), (100, 100))
        self.assertEqual((acks[ALICE]["x"], acks[ALICE]["y"]), (120, 100))
        self.assertFalse({acks[BOB]["id"], acks[ALICE]["id"]} & set(ids.values()))
        self.assertEqual(types(start(engine), CONTROLLER), ["StartGameAck"])
        self.assertEqual(reply(engine, BOB, move_command({"rotate": 90}))["type"],
                         "MovePlayerAck")

    def test_late_joiner_same_tick(self) -> None:
        """Game over is checked after the tick's commands: a late joiner admitted in the tick
        that destroys the second-to-last player keeps the game going."""
        engine, ids = playing([[100, 100, 0], [120, 100, 180], [300, 300, 0]], ALICE, BOB,
                              shot_damage=100, players_can_join_started_game=True)
        send(engine, ALICE, SHOOT)
        ticks(engine, 5)
        engine.submit(CAROL, RegisterPlayerCommand())
        out = engine.tick()
        self.assertEqual(types(out, BOB)[-1], "PlayerDestroyedNotification")
        self.assertEqual(types(out, CAROL), ["RegisterPlayerAck", "StartGameOrder"])
        self.assertEqual(messages(out, CONTROLLER, "GameOverNotification"), [])
        self.assertTrue(engine.started)

    def test_game_over_on_leave(self) -> None:
        """A player leaving a started game of two ends it at once, the other one winning."""
        engine, ids = playing([[100, 100, 0], [300, 300, 0]], ALICE, BOB)
        out = engine.leave(BOB)
        over = {"type": "GameOverNotification", "data": {"winner": ids[ALICE]}}
        self.assertEqual(out, [Outgoing(ALICE, over), Outgoing(CONTROLLER, over)])
        self.assertFalse(engine.started)

    def test_no_winner(self) -> None:
        """The last player leaving a started game ends it with no winner."""
        engine, ids = playing([], ALICE)
        self.assertEqual(engine.leave(ALICE), [
            Outgoing(CONTROLLER, {"type": "GameOverNotification", "data": {"winner": None}})
        ])

    def test_game_goes_on(self) -> None:
        """A leave that leaves two players changes nothing else."""
        engine, ids = playing([[100, 100, 0], [300, 300, 0], [500, 300, 0]], ALICE, BOB, CAROL)
        self.assertEqual(engine.leave(BOB), [])
        self.assertTrue(engine.started)
        self.assertEqual(engine.player_ids(), [ids[ALICE], ids[CAROL]])

    def test_leave_before_start(self) -> None:
        """Leaving an arena that is not started just removes the player."""
        engine = make_engine()
        register(engine, ALICE, BOB)
        self.assertEqual(engine.leave(ALICE), [])
        self.assertEqual(len(engine.player_ids()), 1)

    def test_destroyed_or_parked_leaving(self) -> None:
        """A destroyed or parked player leaving does not end the game: it was not playing."""
        engine, ids = playing([[100, 100, 0], [120, 100, 180], [300, 300, 0]],
                              ALICE, BOB, CAROL, shot_damage=100)
        send(engine, DAVE, REGISTER)
        send(engine, ALICE, SHOOT)
        ticks(engine, 6)
        self.assertEqual(engine.leave(BOB), [])
        self.assertEqual(engine.leave(DAVE), [])
        self.assertTrue(engine.started)

    def test_unknown_leaving(self) -> None:
        """A connection that never registered may leave."""
        self.assertEqual(make_engine().leave(ALICE), [])


class SpawnTests(SynchronousTestCase):
    def test_spawn_points_then_random(self) -> None:
        """Spawn points are used in order, with their rotation; then spawns are random,
        spawn_margin from the walls, facing 0."""
        engine = make_engine(spawn_points=[[50, 60, 90], [70, 80, 180]])
        acks = register(engine, ALICE, BOB, CAROL)
        self.assertEqual([(ack["x"], ack["y"]) for ack in acks.values()][:2],
                         [(50, 60), (70, 80)])
        self.assertEqual(position(engine, acks[BOB]["id"]), (70.0, 80.0, 180))
        carol = acks[CAROL]
        self.assertTrue(16 <= carol["x"] <= 784 and 16 <= carol["y"] <= 384)
        self.assertEqual(position(engine, carol["id"])[2], 0)

    def test_random_spawns_never_overlap(self) -> None:
        """Random spawns are integral, inside the margin, and never within 10 of another
        player, even in a crowded arena."""
        engine = make_engine(seed=7, width=200, height=200, max_players=40)
        acks = register(engine, *range(40))
        spots = [(ack["x"], ack["y"]) for ack in acks.values()]
        for x, y in spots:
            self.assertIsInstance(x, int)
            self.assertTrue(16 <= x <= 184 and 16 <= y <= 184, (x, y))
        for (x1, y1), (x2, y2) in itertools.combinations(spots, 2):
            self.assertGreater(math.hypot(x2 - x1, y2 - y1), 10)

    def test_random_spawns_avoid_spawn_points(self) -> None:
        """A random spawn also keeps clear of players placed on spawn points."""
        for seed in range(20):
            engine = make_engine(seed=seed, width=100, height=100, spawn_margin=40,
                                 spawn_points=[[50, 50, 0]])
            acks = register(engine, ALICE, BOB)
            self.assertGreater(math.hypot(acks[BOB]["x"] - 50, acks[BOB]["y"] - 50), 10)

    def test_reproducible(self) -> None:
        """The same seed gives the same spawns."""
        first = register(make_engine(seed=3), ALICE, BOB)
        second = register(make_engine(seed=3), ALICE, BOB)
        self.assertEqual(first, second)

    def test_no_room(self) -> None:
        """When no spot is free the registration is refused."""
        engine = make_engine(width=100, height=100, player_radius=50, spawn_margin=0)
        register(engine, ALICE)
        error = reply(engine, BOB, REGISTER)
        self.assertEqual(error["type"], "InvalidCommandError")
        self.assertIn("no free spot", error["data"]["reason"])

    def test_random_spawn_keeps_player_inside(self) -> None:
        """A spawn margin smaller than the player's radius still keeps the player inside."""
        engine = make_engine(width=100, height=100, player_radius=50, spawn_margin=0)
        ack = register(engine, ALICE)[ALICE]
        self.assertEqual((ack["x"], ack["y"]), (50, 50))

    def test_parked_player_keeps_spawn_point(self) -> None:
        """A parked player's reserved spawn point is not handed out again in the next round:
        the next registrants take the free points in order, then random spots."""
        points = [[100, 100, 0], [200, 100, 0], [300, 100, 0]]
        engine, ids = playing(points, ALICE, BOB)
        carol = messages(send(engine, CAROL, REGISTER), CAROL)[0]["data"]
        self.assertEqual((carol["x"], carol["y"]), (300, 100))
        engine.leave(BOB)
        acks = register(engine, DAVE, ERIN, FRANK)
        self.assertEqual((acks[DAVE]["x"], acks[DAVE]["y"]), (100, 100))
        self.assertEqual((acks[ERIN]["x"], acks[ERIN]["y"]), (200, 100))
        self.assertNotEqual((acks[FRANK]["x"], acks[FRANK]["y"]), (300, 100))
        self.assertEqual(position(engine, carol["id"]), (300.0, 100.0, 0))


class SnapshotTests(SynchronousTestCase):
    def test_every_tick_before_start(self) -> None:
        """The controller gets a snapshot every tick, even of an empty, unstarted arena."""
        engine = make_engine()
        self.assertEqual(engine.tick(), [Outgoing(CONTROLLER, {
            "type": "GameSnapshotNotification",
            "data": {"arena_snapshot": {"players_snapshots": [], "shots_snapshots": []}},
        })])

    def test_shape(self) -> None:
        """A snapshot lists each player's id, coordinates, rotation, life, tokens, radar and
        user, and each shot's id, coordinates and rotation."""
        engine, ids = playing([[100, 100, 90]], ALICE)
        out = send(engine, ALICE, SHOOT)
        # The shots go as encoded JSON: read the snapshot as its controller does.
        snapshot = orjson.loads(orjson.dumps(messages(out, CONTROLLER)[-1]))
        shot_id = snapshot["data"]["arena_snapshot"]["shots_snapshots"][0]["id"]
        self.assertIsInstance(shot_id, str)
        self.assertEqual(snapshot, {"type": "GameSnapshotNotification", "data": {
            "arena_snapshot": {
                "players_snapshots": [{
                    "id": ids[ALICE], "coordinates": {"x": 100.0, "y": 100.0}, "rotation": 90,
                    "life": 100, "tokens": 34,
                    "radar": {"type": "circular_scan", "radius": 40}, "user": None,
                }],
                "shots_snapshots": [{
                    "id": shot_id, "coordinates": {"x": 100.0, "y": 105.0}, "rotation": 90,
                }],
            },
        }})

    def test_user_attribution(self) -> None:
        """
        A player belongs to the user its connection is attributed to (null when it is
        anonymous); the attribution goes with the connection.
        """
        engine = make_engine(spawn_points=[[100, 100, 0], [130, 100, 0]])
        engine.attribute(ALICE, "ann")
        engine.attribute(BOB, None)
        engine.submit(ALICE, RegisterPlayerCommand())
        engine.submit(BOB, RegisterPlayerCommand())
        engine.tick()
        users = {p["id"]: p["user"] for p in engine.snapshot()["players_snapshots"]}
        self.assertEqual(users, {"1": "ann", "2": None})
        engine.leave(ALICE)
        engine.submit(ALICE, RegisterPlayerCommand())
        engine.tick()
        users = {p["id"]: p["user"] for p in engine.snapshot()["players_snapshots"]}
        self.assertEqual(users, {"2": None, "3": None})

    def test_encoded_shots_as_the_snapshot(self) -> None:
        """
        The snapshot a tick sends carries its shots as encoded JSON: byte for byte the
        encoding of L{ArenaEngine.snapshot}'s dicts, tick after tick of a busy arena (shots
        born, into walls, hitting players, at any heading; rounds ending).
        """
        rng = random.Random(7)
        engine = make_engine(
            width=120, height=100, shot_speed=3.7, shot_damage=1, shot_cost=1,
            tokens_per_tick=5, initial_tokens=40, max_tokens=40, players_can_join_started_game=True,
            spawn_points=[[20, 20, 0], [100, 80, 180], [60, 50, 33], [20, 80, 270]],
        )
        clients = [ALICE, BOB, CAROL, DAVE]
        register(engine, *clients)
        start(engine)
        encoded = most = hits = 0
        for _ in range(600):
            for client in clients:
                roll = rng.random()
                if roll < 0.05:
                    engine.submit(client, RegisterPlayerCommand())
                elif roll < 0.6:
                    engine.submit(client, parse_command(SHOOT))
                else:
                    engine.submit(client, parse_command(move_command(
                        {"rotate": rng.choice([0, 90, 123.456789, 359.99, 0.001, 45])},
                        {"move": rng.choice(["forward", "backward"])})))
            if not engine.started:
                start(engine)
            out = engine.tick()
            hits += sum(m["type"] == "PlayerHitByShotNotification" for _, m in out)
            [sent] = messages(out, CONTROLLER, "GameSnapshotNotification")
            shots = sent["data"]["arena_snapshot"]["shots_snapshots"]
            if isinstance(shots, orjson.Fragment):
                encoded += 1
            expected = message("GameSnapshotNotification", arena_snapshot=engine.snapshot())
            most = max(most, len(expected["data"]["arena_snapshot"]["shots_snapshots"]))
            self.assertEqual(orjson.dumps(sent), orjson.dumps(expected))
        self.assertGreater(encoded, 300)
        self.assertGreater(most, 30)
        self.assertGreater(hits, 10)

    def test_tick_without_snapshot(self) -> None:
        """
        C{tick(snapshot=False)} (no controller to read it) plays the tick as C{tick()} does,
        messages and state alike, without the controller's snapshot.
        """
        engines = []
        for _ in range(2):
            engine, ids = playing([[100, 100, 0], [160, 100, 180]], ALICE, BOB, shot_damage=20)
            engines.append(engine)
        watched, unwatched = engines
        for step in range(40):
            command = SHOOT if step % 3 else move_command({"rotate": step * 7})
            for engine in engines:
                engine.submit(ALICE, parse_command(command))
                engine.submit(BOB, parse_command(SHOOT))
            out = watched.tick()
            self.assertEqual((out[-1].recipient, out[-1].message["type"]),
                             (CONTROLLER, "GameSnapshotNotification"))
            self.assertEqual(unwatched.tick(snapshot=False), out[:-1])
            self.assertEqual(orjson.dumps(unwatched.snapshot()), orjson.dumps(watched.snapshot()))

    def test_snapshot_last(self) -> None:
        """Within a tick, the snapshot comes last and reflects the tick's commands."""
        engine, ids = playing([[100, 100, 0]], ALICE)
        out = send(engine, ALICE, move_command({"move": "forward"}))
        self.assertEqual(out[-1].recipient, CONTROLLER)
        players = out[-1].message["data"]["arena_snapshot"]["players_snapshots"]
        self.assertEqual(players[0]["coordinates"], {"x": 102.0, "y": 100.0})

    def test_every_message_has_data(self) -> None:
        """Every message the engine sends carries a data object."""
        engine, ids = playing([[100, 100, 0], [120, 100, 180]], ALICE, BOB, shot_damage=100)
        out = start(engine) + send(engine, ALICE, SHOOT) + ticks(engine, 6)
        out += engine.submit(ALICE, StartGameCommand())
        for _, message in out:
            self.assertIsInstance(message.get("data"), dict, message)
