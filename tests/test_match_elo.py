"""
Tests for L{gameproto.match.elo}: K = 32, delta = floor(K·(1 − E_winner) + 0.5), where
E_winner = 1 / (1 + 10^((loser − winner) / 400)) (docs/match.md).

Every expected rating below was worked out by hand, the arithmetic in a comment beside it;
no test recomputes the formula it checks.
"""

from twisted.trial.unittest import SynchronousTestCase

from gameproto.match.elo import rate


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

    def test_worked_examples(self) -> None:
        """
        Unequal ratings, either player winning, give the deltas worked out by hand below;
        the winner gains the delta and the loser loses it.
        """
        # winner, loser -> winner after, loser after
        #
        # 200 points apart: 10^(200/400) = 10^0.5 = 3.16228
        #   1200 beats 1000: E = 1 / (1 + 1/3.16228) = 1 / 1.31623 = 0.75975
        #     32 · (1 − 0.75975) = 32 · 0.24025 = 7.688; + 0.5 = 8.188 -> 8
        #   1000 beats 1200: E = 1 / (1 + 3.16228) = 0.24025
        #     32 · 0.75975 = 24.312; + 0.5 = 24.812 -> 24       (8 + 24 = 32 = K)
        #
        # 100 points apart: 10^(100/400) = 10^0.25 = 1.77828
        #   1100 beats 1000: E = 1 / (1 + 1/1.77828) = 1 / 1.56234 = 0.64006
        #     32 · 0.35994 = 11.518; + 0.5 = 12.018 -> 12 (just above a half: up)
        #   1000 beats 1100: E = 1 / (1 + 1.77828) = 0.35994
        #     32 · 0.64006 = 20.482; + 0.5 = 20.982 -> 20 (just below a half: down)
        #
        # 800 points apart: 10^(800/400) = 100
        #   1800 beats 1000: E = 100/101; 32 · 1/101 = 0.317; + 0.5 = 0.817 -> 0
        #   1000 beats 1800: E = 1/101; 32 · 100/101 = 31.683; + 0.5 = 32.183 -> 32 = K
        #
        # 247 points apart (1234 and 987): 10^(247/400) = 10^0.6175 = 4.14477
        #   1234 beats 987: E = 1 / (1 + 1/4.14477) = 1 / 1.24127 = 0.80563
        #     32 · 0.19437 = 6.220; + 0.5 = 6.720 -> 6
        #   987 beats 1234: 32 · 0.80563 = 25.780; + 0.5 = 26.280 -> 26
        worked = [
            ((1200, 1000), (1208, 992)),
            ((1000, 1200), (1024, 1176)),
            ((1100, 1000), (1112, 988)),
            ((1000, 1100), (1020, 1080)),
            ((1800, 1000), (1800, 1000)),
            ((1000, 1800), (1032, 1768)),
            ((1234, 987), (1240, 981)),
            ((987, 1234), (1013, 1208)),
        ]
        for (winner, loser), after in worked:
            self.assertEqual(rate(winner, loser), after, (winner, loser))

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
        rounds to 0.  (2000 points apart: E = 1 / (1 + 10^-5); 32 · 0.00001 = 0.0003;
        + 0.5 = 0.5003 -> 0.)
        """
        self.assertEqual(rate(3000, 1000), (3000, 1000))

    def test_halves_round_up(self) -> None:
        """
        A delta of exactly n + 1/2 rounds up to n + 1, whether n is even or odd:
        round-half-to-even would give 0, 16 and 2.
        """
        # Equal ratings: E = 1/2, so the delta is floor(K/2 + 0.5).
        self.assertEqual(rate(1000, 1000, k=1), (1001, 999))  # 0.5 + 0.5 = 1.0 -> 1
        self.assertEqual(rate(1000, 1000, k=33), (1017, 983))  # 16.5 + 0.5 = 17.0 -> 17
        self.assertEqual(rate(1000, 1000, k=5), (1003, 997))  # 2.5 + 0.5 = 3.0 -> 3

    def test_k_factor(self) -> None:
        """
        C{k} scales the delta before it is rounded: between equals the winner gains k/2,
        and 200 points apart (1 − E = 0.24025 for the favourite) K = 10 gives 2 and 8.
        """
        self.assertEqual(rate(1500, 1500, k=64), (1532, 1468))  # 64 · 1/2 = 32
        self.assertEqual(rate(1500, 1500, k=16), (1508, 1492))  # 16 · 1/2 = 8
        # 10 · 0.24025 = 2.403; + 0.5 = 2.903 -> 2
        self.assertEqual(rate(1200, 1000, k=10), (1202, 998))
        # 10 · 0.75975 = 7.597; + 0.5 = 8.097 -> 8
        self.assertEqual(rate(1000, 1200, k=10), (1008, 1192))
