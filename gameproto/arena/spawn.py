"""
Where a player with no spawn point of its own starts: pure, the randomness injected.
"""

from __future__ import annotations

import math
import random

from gameproto.arena.config import ArenaConfig
from gameproto.arena.world import Pose, Rejected

# A random spawn that keeps landing on other players gives up after this many draws: the arena
# is full in practice, whatever max_players allows.
SPAWN_ATTEMPTS = 1000


def random_spawn(config: ArenaConfig, rng: random.Random, others: list[Pose]) -> Pose:
    """
    A random integral spot, C{spawn_margin} from the walls, that overlaps none of
    C{others}.  It faces 0: C{RegisterPlayerAck} carries no heading, so this is the one a
    bot can assume.  Raises L{Rejected} after L{SPAWN_ATTEMPTS} draws.
    """
    radius = config.player_radius
    # The whole player stays inside even when spawn_margin is smaller than its radius.
    margin = max(config.spawn_margin, math.ceil(radius))
    for _ in range(SPAWN_ATTEMPTS):
        pose = Pose(
            rng.randint(margin, config.width - margin),
            rng.randint(margin, config.height - margin),
            0,
        )
        if all(pose.distance_to(other) > 2 * radius for other in others):
            return pose
    raise Rejected("no free spot to spawn in the arena")
