"""
parse_command beyond the shapes of tests/test_arena_engine.py's ParseCommandTests: mappings that
are not dicts, and commands of more than one step (bots send one, which is parsed apart).
"""

from __future__ import annotations

from types import MappingProxyType

from twisted.trial.unittest import SynchronousTestCase

from gameproto.arena.commands import (
    Direction,
    InvalidCommand,
    Move,
    MovePlayerCommand,
    PlayerShootCommand,
    Rotate,
    command_json,
    parse_command,
)


class ParseMappingsTests(SynchronousTestCase):
    def test_any_mapping(self) -> None:
        """A command and its steps may be any mapping, not only the dicts frames decode to."""
        command = MappingProxyType({"type": "MovePlayerCommand",
                                    "data": [MappingProxyType({"move": "forward"})]})
        self.assertEqual(parse_command(command), MovePlayerCommand((Move(Direction.FORWARD),)))
        self.assertEqual(parse_command(MappingProxyType({"type": "PlayerShootCommand"})),
                         PlayerShootCommand())

    def test_one_step_and_more(self) -> None:
        """One step, two in either order, and the checks of three."""
        for steps in [(Rotate(45),), (Move(Direction.BACKWARD),),
                      (Rotate(45), Move(Direction.FORWARD)),
                      (Move(Direction.FORWARD), Rotate(45))]:
            command = MovePlayerCommand(steps)
            self.assertEqual(parse_command(command_json(command)), command)
        for data, reason in [
            ([{"move": "forward"}, {"rotate": 1}, {"move": "backward"}],
             "MovePlayerCommand allows at most one move"),
            ([{"rotate": 1}, {"move": "forward"}, {"rotate": 2}],
             "MovePlayerCommand allows at most one rotate"),
            ([{"rotate": 1}, {"move": "forward"}, {"jump": 2}],
             'each movement must have exactly one key, "move" or "rotate"'),
            ([{"jump": 2}], 'each movement must have exactly one key, "move" or "rotate"'),
        ]:
            with self.assertRaises(InvalidCommand) as caught:
                parse_command({"type": "MovePlayerCommand", "data": data})
            self.assertEqual(caught.exception.reason, reason)
