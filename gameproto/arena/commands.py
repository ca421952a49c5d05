"""
The commands of specs/arena.md, parsed from decoded JSON into frozen records.

L{parse_command} is the one entry point: the protocol decodes a frame (C{gameproto.wire}), hands
the object here, and either submits the record to the engine or answers the L{InvalidCommand}
with an C{InvalidCommandError} carrying its reason.  Only the shape of a command is checked here;
whether it is legal now (registered? started?) is the engine's business.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TypeAlias

import attrs

# A client's unknown type name is echoed back in the reason: cut it so a huge one stays small.
_ECHO_LIMIT = 50


class InvalidCommand(ValueError):
    """
    A command whose shape is wrong.  The protocol answers it with C{InvalidCommandError}
    and C{"data": {"reason": reason}}.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Direction(enum.Enum):
    """A C{move} of C{MovePlayerCommand}, valued by its wire name."""

    FORWARD = "forward"
    BACKWARD = "backward"

    @property
    def sign(self) -> int:
        """+1 along the heading, -1 against it."""
        return 1 if self is Direction.FORWARD else -1


class RadarType(enum.Enum):
    """A radar a player can switch to with C{ConfigurePlayerCommand}, valued by its wire name."""

    CIRCULAR_SCAN = "circular_scan"
    LONG_RANGE_SCAN = "long_range_scan"


@attrs.frozen
class Move:
    """One C{{"move": ...}} step: C{move_speed} along or against the heading."""

    direction: Direction


@attrs.frozen
class Rotate:
    """One C{{"rotate": ...}} step: an absolute heading in degrees, 0 being +x."""

    degrees: float


@attrs.frozen
class RegisterPlayerCommand:
    """Make the sending connection a player."""


@attrs.frozen
class MovePlayerCommand:
    """Move and/or rotate, the steps applied in order; at most one of each kind."""

    steps: tuple[Move | Rotate, ...]


@attrs.frozen
class PlayerShootCommand:
    """Fire one shot along the heading (the spec's payload spells it C{PlayerShootComman})."""


@attrs.frozen
class StartGameCommand:
    """Start the game; the controller's only command."""


@attrs.frozen
class ConfigurePlayerCommand:
    """Switch radars, the settings applied in order (the last one wins)."""

    radars: tuple[RadarType, ...]


PlayerCommand: TypeAlias = (
    RegisterPlayerCommand | MovePlayerCommand | PlayerShootCommand | ConfigurePlayerCommand
)
Command: TypeAlias = PlayerCommand | StartGameCommand


def parse_command(message: object) -> Command:
    """
    Parse one decoded JSON frame.  A C{data} member is ignored by the commands that take none,
    since bots commonly send C{"data": {}} or C{null} with every command.

    @raise InvalidCommand: with a reason saying what is wrong.
    """
    # A decoded frame is a dict: checking for one first spares every bot's command the
    # slower isinstance of the Mapping ABC, kept for the other mappings a caller may pass.
    if not isinstance(message, dict) and not isinstance(message, Mapping):
        raise InvalidCommand("a command must be a JSON object")
    if "type" not in message:
        raise InvalidCommand("the command has no type")
    name = message["type"]
    if not isinstance(name, str):
        raise InvalidCommand("the command type must be a string")
    parser = _PARSERS.get(name)
    if parser is None:
        raise InvalidCommand(f"unknown command type {name[:_ECHO_LIMIT]!r}")
    return parser(message)


def command_json(command: Command) -> dict[str, object]:
    """
    The JSON form of a parsed command, as a node sends it to the node running the arena:
    C{parse_command(command_json(c)) == c}.
    """
    if isinstance(command, MovePlayerCommand):
        steps = [{"move": step.direction.value} if isinstance(step, Move)
                 else {"rotate": step.degrees} for step in command.steps]
        return {"type": "MovePlayerCommand", "data": steps}
    if isinstance(command, ConfigurePlayerCommand):
        return {"type": "ConfigurePlayerCommand",
                "data": [{"op": "radarType", "args": [radar.value]} for radar in command.radars]}
    return {"type": type(command).__name__}


def _parse_move_player(message: Mapping[str, object]) -> MovePlayerCommand:
    data = message.get("data")
    if not isinstance(data, list):
        raise InvalidCommand("MovePlayerCommand data must be a list of moves and rotations")
    if len(data) == 1:
        # What bots send every tick: one step, nothing to count.
        return MovePlayerCommand((_parse_step(data[0]),))
    if not data:
        raise InvalidCommand("MovePlayerCommand data must not be empty")
    steps = tuple([_parse_step(item) for item in data])
    for kind, word in ((Move, "move"), (Rotate, "rotate")):
        if sum(isinstance(step, kind) for step in steps) > 1:
            raise InvalidCommand(f"MovePlayerCommand allows at most one {word}")
    return MovePlayerCommand(steps)


def _parse_step(item: object) -> Move | Rotate:
    if not isinstance(item, dict) and not isinstance(item, Mapping):
        raise InvalidCommand('each movement must be an object, {"move": ...} or {"rotate": ...}')
    # One key, which is "move" or "rotate".
    if len(item) == 1:
        if "move" in item:
            return _parse_move(item["move"])
        if "rotate" in item:
            return _parse_rotate(item["rotate"])
    raise InvalidCommand('each movement must have exactly one key, "move" or "rotate"')


# Every command of every bot goes through these: look-ups, not loops over an enum, and the
# two moves are made once (they are frozen).
_MOVES = {direction.value: Move(direction) for direction in Direction}
_RADARS = {radar.value: radar for radar in RadarType}


def _parse_move(value: object) -> Move:
    move = _MOVES.get(value) if isinstance(value, str) else None
    if move is None:
        raise InvalidCommand('move must be "forward" or "backward"')
    return move


def _parse_rotate(value: object) -> Rotate:
    # bool is an int subclass: true is not 1 degree.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidCommand("rotate must be a number of degrees")
    # The comparison also refuses NaN, which orjson never decodes but a caller might pass.
    if not 0 <= value <= 360:
        raise InvalidCommand("rotate must be between 0 and 360")
    return Rotate(value)


def _parse_configure_player(message: Mapping[str, object]) -> ConfigurePlayerCommand:
    data = message.get("data")
    # The spec's form is a list of settings; a bare setting is accepted as a list of one.
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise InvalidCommand('ConfigurePlayerCommand data must be a list of {"op", "args"}')
    if not data:
        raise InvalidCommand("ConfigurePlayerCommand data must not be empty")
    return ConfigurePlayerCommand(tuple(_parse_setting(item) for item in data))


def _parse_setting(item: object) -> RadarType:
    if not isinstance(item, Mapping):
        raise InvalidCommand('each setting must be an object {"op", "args"}')
    op = item.get("op")
    if not isinstance(op, str):
        raise InvalidCommand('each setting must name its "op" with a string')
    if op != "radarType":
        raise InvalidCommand(
            f'unknown configuration op {op[:_ECHO_LIMIT]!r}; the only op is "radarType"'
        )
    args = item.get("args")
    # The spec's form is a list of one argument; a bare string is accepted too.
    if isinstance(args, list) and len(args) == 1:
        args = args[0]
    if not isinstance(args, str):
        raise InvalidCommand('radarType args must be one radar type, e.g. ["long_range_scan"]')
    radar = _RADARS.get(args)
    if radar is not None:
        return radar
    raise InvalidCommand(
        f"unknown radar type {args[:_ECHO_LIMIT]!r}; expected long_range_scan or circular_scan"
    )


_PARSERS: dict[str, Callable[[Mapping[str, object]], Command]] = {
    "RegisterPlayerCommand": lambda message: RegisterPlayerCommand(),
    "MovePlayerCommand": _parse_move_player,
    "PlayerShootCommand": lambda message: PlayerShootCommand(),
    # The spec's own payload example spells it so; bots written from it send this name.
    "PlayerShootComman": lambda message: PlayerShootCommand(),
    "StartGameCommand": lambda message: StartGameCommand(),
    "ConfigurePlayerCommand": _parse_configure_player,
}
