"""
The arena's per-tick work without sockets: bench/arena_load.py's arenas (four bots on its
spawn points, each sending its next command every tick, shots that do no harm) on
L{ArenaEngine}s in this process, ticked in turn as a node ticks them, and each tick's
messages encoded as L{Arena.deliver} encodes them (once per message object).  Prints the
CPU time per arena tick (so that other processes on a shared machine count less), the
engine's and the encoding's, after a warm-up that fills the arenas with shots.  With many
arenas (-K 80) their shots no longer fit the processor's caches, as on a loaded node.

    .venv/bin/python bench/arena_engine_tick.py -K 80 --ticks 300
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.arena_load import COMMANDS, SPAWNS  # noqa: E402
from gameproto import wire  # noqa: E402
from gameproto.arena.commands import RegisterPlayerCommand, StartGameCommand, parse_command  # noqa: E402
from gameproto.arena.config import ArenaConfig  # noqa: E402
from gameproto.arena.engine import ArenaEngine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-K", "--arenas", type=int, default=1)
    parser.add_argument("--ticks", type=int, default=2000, help="measured ticks per arena")
    parser.add_argument("--warmup", type=int, default=500, help="ticks per arena before")
    options = parser.parse_args()
    config = ArenaConfig.from_dict({"shot_damage": 0, "spawn_points": SPAWNS})
    bots = [f"bot{n}" for n in range(4)]
    engines = []
    for index in range(options.arenas):
        engine = ArenaEngine(config, random.Random(index))
        for bot in bots:
            engine.submit(bot, RegisterPlayerCommand())
        engine.tick()
        engine.control(StartGameCommand())
        engines.append(engine)
    commands = [parse_command(command) for command in COMMANDS]
    ticking = encoding = 0.0
    shots = 0
    for tick in range(options.warmup + options.ticks):
        for engine in engines:
            for seat, bot in enumerate(bots):
                engine.submit(bot, commands[(tick + seat) % len(commands)])
            began = time.process_time()
            out = engine.tick()
            ticked = time.process_time()
            encoded = {}
            for _, message in out:
                if id(message) not in encoded:
                    encoded[id(message)] = wire.encode(message)
            done = time.process_time()
            if tick >= options.warmup:
                ticking += ticked - began
                encoding += done - ticked
                shots += len(engine.snapshot()["shots_snapshots"])
    n = options.ticks * options.arenas
    print(f"{options.arenas} arena(s), {options.ticks} ticks each, {shots / n:.0f} shots in "
          f"flight on average: engine {1e6 * ticking / n:.1f} us/tick, encoding "
          f"{1e6 * encoding / n:.1f} us/tick, total {1e6 * (ticking + encoding) / n:.1f} us/tick")


if __name__ == "__main__":
    main()
