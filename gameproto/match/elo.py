"""
Elo ratings after a match (DESIGN.md §4 "match"): K = 32, integer ratings, and what the winner
gains the loser loses.
"""

import math

K_FACTOR = 32


def rate(winner_elo: int, loser_elo: int, k: int = K_FACTOR) -> tuple[int, int]:
    """
    @return: the winner's and the loser's ratings after the match.
    """
    expected_win = 1 / (1 + 10 ** ((loser_elo - winner_elo) / 400))
    # floor(x + 0.5) rounds halves up, as DESIGN.md says; round() would round them to even.
    delta = math.floor(k * (1 - expected_win) + 0.5)
    return winner_elo + delta, loser_elo - delta
