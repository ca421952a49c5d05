"""
Where each state of the arena connections' machines sends a command (gameproto.arena.machines):
the handler the transitions set, which the adapter calls without a transition, and the
machine's own C{command} input, which must do the same.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from gameproto.arena.commands import (
    Command,
    Direction,
    Move,
    MovePlayerCommand,
    PlayerShootCommand,
    RegisterPlayerCommand,
    StartGameCommand,
)
from gameproto.arena.machines import (
    ControllerCore,
    ControllerMachine,
    PlayerCore,
    PlayerMachine,
)
from gameproto.wire import CloseCode
from tests.arenasupport import ArenaServerTestCase, types
from tests.test_arena_protocol import FakeConnection

SHOOT = PlayerShootCommand()
FORWARD = MovePlayerCommand((Move(Direction.FORWARD),))


class RecordingArena:
    """An L{ArenaHandle} that records what the connections call."""

    id = "recorded"
    owner = None

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def add_player(self, socket: Any) -> None:
        self.calls.append(("add_player", socket))

    def remove_player(self, socket: Any) -> None:
        self.calls.append(("remove_player", socket))

    def set_controller(self, socket: Any) -> None:
        self.calls.append(("set_controller", socket))

    def remove_controller(self, socket: Any) -> None:
        self.calls.append(("remove_controller", socket))

    def submit(self, socket: Any, command: Command) -> None:
        self.calls.append(("submit", socket, command))

    def control(self, socket: Any, command: Command) -> None:
        self.calls.append(("control", socket, command))

    def taken(self) -> list[tuple[Any, ...]]:
        """The calls since the last look."""
        calls, self.calls = self.calls, []
        return calls


class PlayerCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.arena = RecordingArena()
        self.connection = FakeConnection()
        self.core = PlayerCore(self.connection, self.connection)
        self.machine = PlayerMachine(self.core)

    def assertSubmitted(self) -> None:
        """Both ways in, a command reaches the arena's submit, the state unchanged."""
        socket = self.connection
        self.core.command_handler(FORWARD)
        self.machine.command(SHOOT)
        self.assertEqual(self.arena.taken(),
                         [("submit", socket, FORWARD), ("submit", socket, SHOOT)])

    def assertDropped(self) -> None:
        """
        Both ways in, a command goes nowhere (nor waits) and nothing is said; nothing
        waits for the arena any more.
        """
        self.core.command_handler(FORWARD)
        self.machine.command(SHOOT)
        self.assertEqual((self.arena.taken(), self.connection.sent, self.core.waiting),
                         ([], [], []))

    def test_joining_waits_then_applies_in_order(self) -> None:
        """While joining, commands (either way in) and invalid frames wait, in order."""
        socket = self.connection
        self.core.command_handler(RegisterPlayerCommand())
        self.machine.invalid("bad")
        self.machine.command(FORWARD)
        self.assertEqual((self.arena.taken(), self.connection.sent), ([], []))
        self.machine.joined(self.arena)
        self.assertEqual(self.arena.taken(), [("add_player", socket),
                                              ("submit", socket, RegisterPlayerCommand()),
                                              ("submit", socket, FORWARD)])
        self.assertEqual(self.connection.sent,
                         [{"type": "InvalidCommandError", "data": {"reason": "bad"}}])
        self.connection.sent.clear()
        self.assertSubmitted()

    def test_every_live_state_submits(self) -> None:
        """Connected, Registered, Playing and Destroyed all hand commands to the arena."""
        self.machine.joined(self.arena)
        self.arena.taken()
        moves: list[Callable[[], None]] = [
            lambda: self.machine.acknowledged("1"),  # Registered
            self.machine.startOrdered,  # Playing
            self.machine.destroyed,  # Destroyed
            self.machine.gameOver,  # Connected again
        ]
        self.assertSubmitted()  # Connected
        for move in moves:
            move()
            self.assertSubmitted()

    def test_dropped_once_lost(self) -> None:
        self.machine.joined(self.arena)
        self.machine.lost()
        self.assertEqual(self.arena.taken(),
                         [("add_player", self.connection), ("remove_player", self.connection)])
        self.assertDropped()

    def test_dropped_once_the_arena_closed(self) -> None:
        self.machine.joined(self.arena)
        self.machine.acknowledged("1")
        self.machine.startOrdered()
        self.arena.taken()
        self.machine.arenaClosed("the arena was deleted")
        self.assertEqual(self.connection.closes, [(1000, "the arena was deleted")])
        self.assertDropped()

    def test_dropped_once_refused(self) -> None:
        self.core.command_handler(FORWARD)
        self.machine.refused("no such arena", CloseCode.NOT_FOUND)
        self.connection.sent.clear()
        self.assertDropped()
        self.machine.joined(self.arena)  # located too late: nothing is applied
        self.assertDropped()

    def test_dropped_once_lost_while_joining(self) -> None:
        """What waited for the arena is dropped with the connection."""
        self.machine.command(FORWARD)
        self.machine.lost()
        self.machine.joined(self.arena)
        self.assertEqual(self.arena.taken(), [])
        self.assertDropped()


class ControllerCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.arena = RecordingArena()
        self.connection = FakeConnection()
        self.core = ControllerCore(self.connection, self.connection)
        self.machine = ControllerMachine(self.core)
        self.connection.machine = self.machine

    def assertDropped(self) -> None:
        """
        Both ways in, a command goes nowhere (nor waits) and nothing is said; nothing
        waits for the arena any more.
        """
        self.core.command_handler(StartGameCommand())
        self.machine.command(StartGameCommand())
        self.assertEqual((self.arena.taken(), self.connection.sent, self.core.waiting),
                         ([], [], []))

    def test_joining_waits_then_controlling_controls(self) -> None:
        socket = self.connection
        self.core.command_handler(StartGameCommand())
        self.assertEqual(self.arena.taken(), [])
        self.machine.authorized(self.arena)
        self.assertEqual(self.arena.taken(), [("set_controller", socket),
                                              ("control", socket, StartGameCommand())])
        self.core.command_handler(SHOOT)
        self.machine.command(StartGameCommand())
        self.assertEqual(self.arena.taken(), [("control", socket, SHOOT),
                                              ("control", socket, StartGameCommand())])

    def test_dropped_once_the_arena_went_away(self) -> None:
        self.machine.authorized(self.arena)
        self.arena.taken()
        self.machine.arenaClosed("the arena was deleted")
        self.assertDropped()

    def test_dropped_once_replaced(self) -> None:
        self.machine.authorized(self.arena)
        self.arena.taken()
        self.machine.replaced()
        self.assertEqual(self.connection.closes, [(4009, "replaced by a newer controller")])
        self.assertDropped()

    def test_dropped_once_lost(self) -> None:
        self.machine.authorized(self.arena)
        self.machine.lost()
        self.arena.taken()
        self.assertDropped()

    def test_dropped_once_refused_or_lost_while_joining(self) -> None:
        self.machine.command(StartGameCommand())
        self.machine.refused("not the owner", CloseCode.FORBIDDEN)
        self.connection.sent.clear()
        self.assertDropped()
        other = ControllerCore(self.connection, self.connection)
        machine = ControllerMachine(other)
        machine.command(StartGameCommand())
        machine.lost()
        machine.authorized(self.arena)
        other.command_handler(StartGameCommand())
        self.assertEqual((self.arena.taken(), other.waiting), ([], []))


class ProtocolCommandTests(ArenaServerTestCase):
    """The adapters hand parsed commands to their state's handler."""

    def test_commands_after_the_arena_was_deleted(self) -> None:
        """A player's and a controller's commands, once their arena is gone, go nowhere."""
        self.create_arena("doomed", {})
        control = self.controller("doomed")
        ws = self.player("doomed")
        self.server.arenas.here("doomed").close("the arena was deleted")
        self.assertEqual(ws.closes(), [(1000, "the arena was deleted")])
        self.assertEqual(control.closes(), [(1000, "the arena was deleted")])
        ws.protocol.objectReceived({"type": "RegisterPlayerCommand"})
        control.protocol.objectReceived({"type": "StartGameCommand"})
        self.tick()
        self.assertEqual((ws.json_messages(), control.json_messages()), ([], []))

    def test_a_playing_bot_commands_reach_the_engine(self) -> None:
        """In a started game a bot's moves and shots are applied, one per tick."""
        control = self.controller()
        ws = self.player()
        self.register(ws)
        control.send_json({"type": "StartGameCommand"})
        self.assertIn("StartGameOrder", types(ws.json_messages()))
        ws.send_json({"type": "PlayerShootCommand"})
        ws.send_json({"type": "MovePlayerCommand", "data": [{"move": "forward"}]})
        [error] = ws.json_messages()
        self.assertIn("one command per player per tick", error["data"]["reason"])
        self.tick()
        self.assertIn("PlayerShotAck", types(ws.json_messages()))
