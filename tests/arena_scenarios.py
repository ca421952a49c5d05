"""
Seeded arena games for the engine's equivalence test (tests/test_arena_engine_stream.py):
each scenario drives an L{ArenaEngine} with commands drawn from a seeded random generator
(registrations, moves, rotations to any heading, shots, radar switches, double commands,
leaves, the controller's start and wrong commands) and records everything the engine
returns, call by call, as the bytes the clients would receive.

The recording kept in C{arena_engine_stream.json} was made with the engine as it was
before its per-tick work was restructured (commit 10197a5); the test replays the same
scenarios on today's engine and compares.  To record again (only after a deliberate,
documented change of the contract)::

    PYTHONPATH=$PWD .venv/bin/python -m tests.arena_scenarios > tests/arena_engine_stream.json
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Hashable, Iterator
from typing import Any

import orjson

from gameproto.arena.commands import parse_command
from gameproto.arena.config import ArenaConfig
from gameproto.arena.engine import CONTROLLER, ArenaEngine, Outgoing

# Each scenario: its seed, its number of ticks, its configuration and its connections.
SCENARIOS: dict[str, dict[str, Any]] = {
    # The defaults, random spawns, rounds decided by destruction.
    "defaults": {"seed": 1, "ticks": 1500, "clients": 6, "config": {"shot_damage": 25}},
    # A small arena: wall hits, collisions, spawn failures, late joiners playing at once.
    "small": {"seed": 2, "ticks": 1500, "clients": 8, "config": {
        "width": 100, "height": 100, "max_players": 6, "player_radius": 7.5,
        "shot_radius": 0.5, "shot_speed": 3.7, "move_speed": 2.25, "shot_damage": 10,
        "players_can_join_started_game": True, "spawn_margin": 3,
        "spawn_points": [[10, 10, 0], [90, 90, 180], [50, 50, 90]],
        "circular_scan_radius": 30, "long_range_scan_radius": 70,
        "long_range_scan_half_angle": 45.5}},
    # bench/arena_load.py's arena: four bots on spawn points, shots that do no harm, so
    # that shots pile up in flight.
    "bench": {"seed": 3, "ticks": 1500, "clients": 4, "config": {
        "shot_damage": 0, "spawn_points": [[100, 100, 0], [300, 100, 90], [100, 300, 180],
                                           [300, 300, 270]]}},
    # Fragile players, fast shots, many tokens: rounds end quickly and often.
    "deadly": {"seed": 4, "ticks": 1500, "clients": 5, "config": {
        "width": 300, "height": 200, "player_life": 30, "shot_damage": 15, "shot_speed": 9.5,
        "shot_cost": 1, "tokens_per_tick": 5, "max_tokens": 100, "initial_tokens": 100,
        "players_can_join_started_game": True}},
}

# Headings a bot may turn to: integral, fractional, and the ends of the range.
_HEADINGS = [0, 360, 45, 90, 135, 180, 270, 33.3, 12.5, 359.99, 0.001, 123.456789, 60]


def _command(rng: random.Random, newcomer: bool) -> dict[str, Any]:
    roll = rng.random()
    if roll < (0.5 if newcomer else 0.08):
        return {"type": "RegisterPlayerCommand"}
    if roll < 0.35:
        return {"type": "PlayerShootCommand"}
    if roll < 0.42:
        radars = [rng.choice(["circular_scan", "long_range_scan"])
                  for _ in range(rng.randint(1, 2))]
        return {"type": "ConfigurePlayerCommand",
                "data": [{"op": "radarType", "args": [radar]} for radar in radars]}
    steps: list[dict[str, Any]] = []
    if rng.random() < 0.5:
        steps.append({"rotate": rng.choice(_HEADINGS)})
    if not steps or rng.random() < 0.7:
        steps.append({"move": rng.choice(["forward", "forward", "backward"])})
    rng.shuffle(steps)
    return {"type": "MovePlayerCommand", "data": steps}


Call = tuple[str, list[tuple[str, bytes]]]


def run(name: str) -> Iterator[list[Call]]:
    """
    Play scenario C{name}: yield, tick by tick, every call made to the engine in that tick,
    what it was and what it returned (each message to its recipient's name, encoded).
    """
    spec = SCENARIOS[name]
    rng = random.Random(spec["seed"])
    engine = ArenaEngine(ArenaConfig.from_dict(spec["config"]), random.Random(spec["seed"]))
    serial = 0

    def fresh() -> str:
        nonlocal serial
        serial += 1
        return f"c{serial}"

    clients = [fresh() for _ in range(spec["clients"])]
    # Who has sent a registration at least once: a new connection mostly registers first.
    registered: set[str] = set()
    for client in clients[::2]:
        engine.attribute(client, f"user-{client}")

    def encoded(out: list[Outgoing]) -> list[tuple[str, bytes]]:
        return [("controller" if to is CONTROLLER else str(to), orjson.dumps(message))
                for to, message in out]

    def submit(client: Hashable, command: dict[str, Any]) -> list[tuple[str, bytes]]:
        return encoded(engine.submit(client, parse_command(command)))

    for tick in range(spec["ticks"]):
        calls: list[Call] = []
        for index, client in enumerate(clients):
            roll = rng.random()
            if roll < 0.003:
                # The connection closes; a new one takes its place.
                calls.append((f"leave {client}", encoded(engine.leave(client))))
                clients[index] = fresh()
                continue
            if roll < 0.75:
                newcomer = client not in registered
                command = _command(rng, newcomer)
                if command["type"] == "RegisterPlayerCommand":
                    registered.add(client)
                calls.append((f"submit {client}", submit(client, command)))
                if rng.random() < 0.02:
                    calls.append((f"again {client}", submit(client, _command(rng, newcomer))))
        roll = rng.random()
        if not engine.started and len(engine.player_ids()) >= 2 and roll < 0.2:
            start = parse_command({"type": "StartGameCommand"})
            calls.append(("start", encoded(engine.control(start))))
        elif roll < 0.005:
            calls.append(("control", encoded(engine.control(parse_command(_command(rng, False))))))
        calls.append(("tick", encoded(engine.tick())))
        calls.append(("view", [("", orjson.dumps([engine.player_ids(), engine.started]))]))
        yield calls


def digest(calls: list[Call]) -> str:
    """A digest of one tick's calls and of every byte they returned, to whom, in order."""
    h = hashlib.sha256()
    for call, out in calls:
        h.update(b"\1" + call.encode())
        for recipient, payload in out:
            h.update(b"\0" + recipient.encode() + b"\0" + payload)
    return h.hexdigest()[:16]


def record() -> dict[str, Any]:
    """
    Every scenario's digests, one per tick, and its count of messages by type (refusals by
    reason), which shows what a scenario exercises.
    """
    recording: dict[str, Any] = {}
    for name in SCENARIOS:
        digests: list[str] = []
        counts: dict[str, int] = {}
        for calls in run(name):
            digests.append(digest(calls))
            for call, out in calls:
                if call == "view":
                    continue
                for _, payload in out:
                    message = orjson.loads(payload)
                    kind = message["type"]
                    if kind == "InvalidCommandError":
                        kind += ": " + message["data"]["reason"]
                    counts[kind] = counts.get(kind, 0) + 1
        recording[name] = {"counts": dict(sorted(counts.items())), "digests": digests}
    return recording


if __name__ == "__main__":
    sys.stdout.write(orjson.dumps(record(), option=orjson.OPT_INDENT_2).decode() + "\n")
