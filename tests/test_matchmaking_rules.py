"""The pure rules of matchmaking (gameproto.matchmaking.rules): no I/O, no clock."""

from __future__ import annotations

import random

import attrs
from twisted.trial.unittest import SynchronousTestCase

from gameproto.matchmaking import rules
from gameproto.matchmaking.rules import MatchRole, Pair, Ticket, TicketState, Window

T0 = 1_800_000_000.0


def waiting(name: str, elo: int, since: float = T0, front: bool = False) -> Ticket:
    return Ticket(name, elo, since, front=front)


def names(pairs: list[Pair]) -> list[tuple[str, str]]:
    return [(p.host.username, p.challenger.username) for p in pairs]


class WindowTests(SynchronousTestCase):
    def test_widens_by_steps(self) -> None:
        """100 wide, 50 more after every full 10 s waited; never narrower than the base."""
        window = Window()
        self.assertEqual([window.width(w) for w in (0, 9.99, 10, 25, 60)],
                         [100, 100, 150, 200, 400])
        self.assertEqual(window.width(-5), 100)  # a clock stepping back

    def test_settings(self) -> None:
        """Base, step and interval are the window's settings."""
        self.assertEqual(Window(base=20, step=5, interval=0.5).width(1.2), 30)


class PairingTests(SynchronousTestCase):
    def test_within_the_window(self) -> None:
        """Two users 100 apart pair at once; 101 apart only once the window has widened."""
        window = Window()
        self.assertEqual(names(rules.pairs([waiting("a", 1000), waiting("b", 1100, T0 + 1)],
                                           T0 + 1, window)), [("a", "b")])
        far = [waiting("a", 1000), waiting("b", 1101, T0 + 1)]
        self.assertEqual(rules.pairs(far, T0 + 9.9, window), [])
        self.assertEqual(names(rules.pairs(far, T0 + 10, window)), [("a", "b")])

    def test_the_served_ticket_window_decides(self) -> None:
        """The oldest ticket's wider window pairs it with a newcomer outside the newcomer's."""
        tickets = [waiting("old", 1000), waiting("new", 1140, T0 + 30)]
        self.assertEqual(names(rules.pairs(tickets, T0 + 30, Window())), [("old", "new")])

    def test_oldest_first_closest_rating(self) -> None:
        """The oldest is served first and takes the closest rating, not the oldest one."""
        tickets = [waiting("a", 1000, T0), waiting("b", 1090, T0 + 1),
                   waiting("c", 1010, T0 + 2), waiting("d", 1080, T0 + 3)]
        self.assertEqual(names(rules.pairs(tickets, T0 + 3, Window())),
                         [("a", "c"), ("b", "d")])

    def test_tie_goes_to_the_first_in_queue(self) -> None:
        """Of two equally close ratings (above and below), the one queued first."""
        tickets = [waiting("a", 1000, T0), waiting("up", 1050, T0 + 2),
                   waiting("down", 950, T0 + 1)]
        self.assertEqual(names(rules.pairs(tickets, T0 + 2, Window())), [("a", "down")])
        same = [waiting("a", 1000, T0), waiting("x", 1000, T0 + 2), waiting("y", 1000, T0 + 1)]
        self.assertEqual(names(rules.pairs(same, T0 + 2, Window())), [("a", "y")])

    def test_front_first_and_the_longer_waiting_hosts(self) -> None:
        """A ticket sent back to the front is served first; the older of a pair hosts."""
        tickets = [waiting("old", 1000, T0), waiting("back", 1500, T0 + 5, front=True),
                   waiting("mid", 1480, T0 + 1), waiting("new", 1520, T0 + 6)]
        # back is served first: mid (20 away, first in queue of the two) and new tie
        # on distance; mid is first in the queue.  mid waited longer: mid hosts.
        self.assertEqual(names(rules.pairs(tickets, T0 + 6, Window())), [("mid", "back")])

    def test_only_waiting_tickets(self) -> None:
        """Tickets held or matched are not paired again."""
        tickets = [waiting("a", 1000), attrs.evolve(waiting("b", 1000), state=TicketState.PAIRING),
                   attrs.evolve(waiting("c", 1000), state=TicketState.MATCHED)]
        self.assertEqual(rules.pairs(tickets, T0, Window()), [])

    def test_random_queues(self) -> None:
        """
        Any queue: each ticket in at most one pair, every pair within the served
        ticket's window and hosted by the longer-waiting user, and no two tickets
        left unpaired that the first of them in queue order could have taken.
        """
        rng = random.Random(7)
        window = Window()
        for _ in range(200):
            tickets = [waiting(f"u{i}", rng.randrange(800, 1400), T0 + rng.randrange(0, 60),
                               front=rng.random() < 0.1)
                       for i in range(rng.randrange(0, 40))]
            now = T0 + 60
            made = rules.pairs(tickets, now, window)
            seen = [t.key for p in made for t in (p.host, p.challenger)]
            self.assertEqual(len(seen), len(set(seen)))
            for pair in made:
                self.assertLessEqual(pair.host.since, pair.challenger.since)
                widest = max(window.width(now - t.since) for t in (pair.host, pair.challenger))
                self.assertLessEqual(abs(pair.host.elo - pair.challenger.elo), widest)
            left = [t for t in rules.queue_order(tickets) if t.key not in seen]
            for i, a in enumerate(left):
                for b in left[i + 1:]:
                    self.assertGreater(abs(a.elo - b.elo), window.width(now - a.since))


class TransitionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.host, self.challenger = waiting("hana", 1000), waiting("cole", 1050, T0 + 1)

    def test_claim_commit_seat(self) -> None:
        """Waiting → pairing (partners, roles) → matched (match, deadline) → seated."""
        host, challenger = rules.claim(self.host, self.challenger)  # type: ignore[misc]
        self.assertEqual((host.state, host.partner, host.role),
                         (TicketState.PAIRING, "cole", MatchRole.HOST))
        self.assertEqual((challenger.partner, challenger.role), ("hana", MatchRole.CHALLENGER))
        self.assertIsNone(rules.claim(host, challenger))  # held already
        host, challenger = rules.commit(host, challenger, 7, T0 + 31)  # type: ignore[misc]
        self.assertEqual((host.state, host.match_id, host.deadline),
                         (TicketState.MATCHED, 7, T0 + 31))
        self.assertIsNone(rules.seat(host, 8))
        self.assertTrue(rules.seat(host, 7).seated)  # type: ignore[union-attr]

    def test_commit_needs_the_pair(self) -> None:
        """A pair that is not held together cannot be committed."""
        self.assertIsNone(rules.commit(self.host, self.challenger, 7, T0))

    def test_expire_and_leave_requeue_at_the_front(self) -> None:
        """The seated one goes back to the front with its time; the other loses the ticket."""
        host, challenger = rules.commit(*rules.claim(self.host, self.challenger),  # type: ignore[misc]
                                        7, T0 + 31)
        host = rules.seat(host, 7)
        assert host is not None
        self.assertEqual(rules.expire(host), Ticket("hana", 1000, T0, front=True))
        self.assertIsNone(rules.expire(challenger))
        self.assertEqual(rules.leave(host, challenger), Ticket("cole", 1050, T0 + 1, front=True))
        self.assertIsNone(rules.leave(self.host, None))
