"""
What a player's radar sees, for step 4 of L{gameproto.arena.engine}'s tick: the other
players within its radius (and, for the long range scan, within its cone), and for the
circular scan the walls it crosses.  Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from typing import Any

from gameproto.arena.commands import RadarType
from gameproto.arena.config import ArenaConfig
from gameproto.arena.world import Player, angle_between, coordinates, scan_walls


def radar_radius(config: ArenaConfig, radar: RadarType) -> float:
    if radar is RadarType.LONG_RANGE_SCAN:
        return config.long_range_scan_radius
    return config.circular_scan_radius


def radar_scan(
    config: ArenaConfig, scanner: Player, players: list[Player]
) -> tuple[list[Any], list[Any]]:
    """@return: the elements and walls C{scanner}'s radar sees among C{players}."""
    # Every player scans every tick: what the test of each other player needs is in locals.
    radius = radar_radius(config, scanner.radar)
    circular = scanner.radar is RadarType.CIRCULAR_SCAN
    pose = scanner.pose
    x, y = pose.x, pose.y
    elements = []
    for other in players:
        if other is scanner:
            continue
        # Pose.distance_to, float for float.
        distance = math.hypot(other.pose.x - x, other.pose.y - y)
        if distance > radius:
            continue
        # A player on top of the scanner has no bearing; it is certainly close enough.
        if circular or distance == 0 or _in_cone(config, scanner, other):
            elements.append({"type": "unknown", "coordinates": coordinates(other.pose)})
    walls: list[Any] = []
    if circular:
        walls = scan_walls(x, y, config.circular_scan_radius, config.width, config.height)
    return elements, walls


def _in_cone(config: ArenaConfig, scanner: Player, other: Player) -> bool:
    """Whether C{other} is within the half angle of C{scanner}'s long range scan."""
    bearing = math.degrees(
        math.atan2(other.pose.y - scanner.pose.y, other.pose.x - scanner.pose.x)
    )
    return angle_between(scanner.pose.rotation, bearing) <= config.long_range_scan_half_angle
