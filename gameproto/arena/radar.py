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
    elements = [
        {"type": "unknown", "coordinates": coordinates(other.pose)}
        for other in players
        if other is not scanner and sees(config, scanner, other)
    ]
    walls: list[Any] = []
    if scanner.radar is RadarType.CIRCULAR_SCAN:
        walls = scan_walls(
            scanner.pose.x, scanner.pose.y, config.circular_scan_radius,
            config.width, config.height,
        )
    return elements, walls


def sees(config: ArenaConfig, scanner: Player, other: Player) -> bool:
    distance = scanner.pose.distance_to(other.pose)
    if distance > radar_radius(config, scanner.radar):
        return False
    if scanner.radar is RadarType.CIRCULAR_SCAN or distance == 0:
        # A player on top of the scanner has no bearing; it is certainly close enough.
        return True
    bearing = math.degrees(
        math.atan2(other.pose.y - scanner.pose.y, other.pose.x - scanner.pose.x)
    )
    return angle_between(scanner.pose.rotation, bearing) <= config.long_range_scan_half_angle
