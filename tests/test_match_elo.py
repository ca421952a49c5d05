"""
Tests for L{gameproto.match.elo}: K = 32, delta = floor(K·(1 − E_winner) + 0.5).
"""

from twisted.trial.unittest import SynchronousTestCase

from gameproto.match.elo import rate


def expected_score(rating: int, opponent: int) -> float:
    """The Elo expectation of the player rated C{rating}, from the textbook formula."""
    return 1 / (1 + 10 ** ((opponent - rating) / 400))


class RateTests(SynchronousTestCase):
    def test_equal_ratings(self) -> None:
        """
        Between two players rated 1000 the expectation is 1/2, so the winner gains
        floor(32 · 1/2 + 0.5) = 16 and the loser loses 16.
        """
        self.assertEqual(rate(1000, 1000), (1016, 984))

    def test_favourite_wins(self) -> None:
        """
        A 400-point favourite expects 10/11 of a win: 32 · 1/11 = 2.9 rounds to 3.
        """
        self.assertEqual(rate(1400, 1000), (1403, 997))

    def test_underdog_wins(self) -> None:
        """
        A 400-point underdog expects 1/11 of a win: 32 · 10/11 = 29.1 rounds to 29.
        """
        self.assertEqual(rate(1000, 1400), (1029, 1371))

    def test_asymmetric_ratings_follow_the_formula(self) -> None:
        """
        For unequal ratings on either side of the favourite, the delta is the formula's, the
        winner gains it and the loser loses it.
        """
        for winner, loser in [(1000, 1100), (1100, 1000), (1234, 987), (850, 1620), (2000, 1990)]:
            delta = int(32 * (1 - expected_score(winner, loser)) + 0.5)
            self.assertEqual(rate(winner, loser), (winner + delta, loser - delta), (winner, loser))

    def test_points_are_conserved(self) -> None:
        """
        What the winner gains the loser loses, and the delta lies between 0 and K.
        """
        for winner in range(600, 2400, 137):
            for loser in range(600, 2400, 151):
                new_winner, new_loser = rate(winner, loser)
                self.assertEqual(new_winner + new_loser, winner + loser)
                self.assertTrue(0 <= new_winner - winner <= 32, (winner, loser))

    def test_underdog_gains_more(self) -> None:
        """
        Beating a stronger player earns more than beating a weaker one by the same margin.
        """
        upset_gain = rate(1200, 1500)[0] - 1200
        expected_gain = rate(1500, 1200)[0] - 1500
        self.assertGreater(upset_gain, expected_gain)

    def test_overwhelming_favourite_gains_nothing(self) -> None:
        """
        A win expected with certainty to within 1/64 of a point changes no rating: the delta
        rounds to 0.
        """
        self.assertEqual(rate(3000, 1000), (3000, 1000))

    def test_halves_round_up(self) -> None:
        """
        A delta of exactly n + 1/2 rounds up to n + 1 (round-half-to-even would give 0 and 16).
        """
        self.assertEqual(rate(1000, 1000, k=1), (1001, 999))
        self.assertEqual(rate(1000, 1000, k=33), (1017, 983))

    def test_k_factor(self) -> None:
        """
        C{k} scales the delta: between equals the winner gains k/2.
        """
        self.assertEqual(rate(1500, 1500, k=64), (1532, 1468))
        self.assertEqual(rate(1500, 1500, k=16), (1508, 1492))
