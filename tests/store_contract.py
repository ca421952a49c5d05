"""
The contract every L{gameproto.store.IStore} implementation passes.  A test module
per store mixes L{StoreContract} into a C{TestCase} and implements C{make_store}.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from zope.interface.verify import verifyObject

import attrs

from gameproto.match.elo import rate
from gameproto.store import (
    ArenaRecord,
    ArenaTaken,
    IStore,
    MatchOutcome,
    NoSuchMatch,
    OngoingMatch,
    TokenRecord,
    TooManyArenas,
    User,
    UsernameTaken,
)

JOINED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def user(name: str, elo: int = 1000, joined: datetime = JOINED) -> User:
    return User(username=name, password_hash=f"hash-of-{name}", date_joined=joined, elo=elo)


class StoreContract:
    """Mixed into a trial C{TestCase}; C{self.store} is a started store."""

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> Deferred[None]:
        self.store = self.make_store()
        d = self.store.start()
        self.addCleanup(lambda: self.store.close())
        return d

    def run_async(self, coroutine: Any) -> Deferred[Any]:
        return ensureDeferred(coroutine)

    def test_provides_interface(self) -> None:
        """The store provides IStore and describes itself."""
        self.assertTrue(verifyObject(IStore, self.store))
        self.assertIsInstance(self.store.description, str)

    def test_user_round_trip(self) -> Deferred[None]:
        """A created user is read back field for field, timestamps to the microsecond."""

        async def check() -> None:
            created = await self.store.create_user(user("Ann", elo=1234))
            self.assertEqual(created, user("Ann", elo=1234))
            self.assertEqual(await self.store.get_user("Ann"), user("Ann", elo=1234))

        return self.run_async(check())

    def test_username_lookup_ignores_case(self) -> Deferred[None]:
        """get_user finds a user whatever the case and keeps the sign-up spelling."""

        async def check() -> None:
            await self.store.create_user(user("MixedCase"))
            found = await self.store.get_user("mixedcase")
            self.assertEqual(found.username, "MixedCase")

        return self.run_async(check())

    def test_missing_user(self) -> Deferred[None]:
        """get_user answers None for an unknown name."""

        async def check() -> None:
            self.assertIsNone(await self.store.get_user("nobody"))

        return self.run_async(check())

    def test_duplicate_username_ignoring_case(self) -> Deferred[None]:
        """A second user with the same name in another case fails with UsernameTaken."""

        async def check() -> None:
            await self.store.create_user(user("bob"))
            with self.assertRaises(UsernameTaken):
                await self.store.create_user(user("BOB"))
            self.assertEqual((await self.store.get_user("bob")).username, "bob")

        return self.run_async(check())

    def test_list_users_orderings(self) -> Deferred[None]:
        """Each ordering sorts as named, ties broken by username ascending."""

        async def check() -> None:
            for name, elo in [("carol", 1100), ("alice", 1000), ("Bob", 1100), ("dave", 900)]:
                await self.store.create_user(user(name, elo=elo))

            async def names(ordering: str) -> list[str]:
                return [u.username for u in await self.store.list_users(ordering, 100, 0)]

            self.assertEqual(await names("username"), ["alice", "Bob", "carol", "dave"])
            self.assertEqual(await names("-username"), ["dave", "carol", "Bob", "alice"])
            self.assertEqual(await names("elo"), ["dave", "alice", "Bob", "carol"])
            self.assertEqual(await names("-elo"), ["Bob", "carol", "alice", "dave"])

        return self.run_async(check())

    def test_list_users_pages(self) -> Deferred[None]:
        """limit and offset select a window of the ordered list."""

        async def check() -> None:
            for i in range(5):
                await self.store.create_user(user(f"user{i}"))
            page = await self.store.list_users("username", 2, 1)
            self.assertEqual([u.username for u in page], ["user1", "user2"])
            self.assertEqual(await self.store.list_users("username", 10, 5), [])

        return self.run_async(check())

    def test_token_round_trip(self) -> Deferred[None]:
        """A stored token is found by digest with its owner and creation time."""

        async def check() -> None:
            await self.store.create_user(user("erin"))
            token = TokenRecord("d" * 64, "erin", JOINED + timedelta(seconds=1))
            await self.store.add_token(token)
            found = await self.store.get_token("d" * 64)
            self.assertEqual(found, (token, user("erin")))
            self.assertIsNone(await self.store.get_token("e" * 64))

        return self.run_async(check())

    def test_token_owner_case(self) -> Deferred[None]:
        """A token recorded with another case of the username still finds its owner."""

        async def check() -> None:
            await self.store.create_user(user("Frank"))
            await self.store.add_token(TokenRecord("a" * 64, "frank", JOINED))
            token, owner = await self.store.get_token("a" * 64)
            self.assertEqual(owner.username, "Frank")

        return self.run_async(check())

    def test_several_tokens_and_revocation(self) -> Deferred[None]:
        """A user holds several tokens; deleting one leaves the others valid."""

        async def check() -> None:
            await self.store.create_user(user("gina"))
            await self.store.add_token(TokenRecord("1" * 64, "gina", JOINED))
            await self.store.add_token(TokenRecord("2" * 64, "gina", JOINED))
            self.assertTrue(await self.store.delete_token("1" * 64))
            self.assertFalse(await self.store.delete_token("1" * 64))
            self.assertIsNone(await self.store.get_token("1" * 64))
            self.assertIsNotNone(await self.store.get_token("2" * 64))

        return self.run_async(check())

    # -- ongoing matches ---------------------------------------------------------

    def test_ongoing_match_round_trip(self) -> Deferred[None]:
        """A created match has a fresh integer id and reads back field for field."""

        async def check() -> None:
            first = await self.store.create_ongoing_match("Ann", JOINED)
            second = await self.store.create_ongoing_match("bob", JOINED)
            self.assertIsInstance(first.id, int)
            self.assertGreater(second.id, first.id)
            self.assertEqual(first, OngoingMatch(id=first.id, host="Ann", creation_timestamp=JOINED))
            self.assertEqual(await self.store.get_ongoing_match(first.id), first)
            self.assertIsNone(await self.store.get_ongoing_match(second.id + 100))

        return self.run_async(check())

    def test_ongoing_match_update(self) -> Deferred[None]:
        """Every field of an updated match is stored; updating a deleted match fails."""

        async def check() -> None:
            match = await self.store.create_ongoing_match("ann", JOINED)
            changed = attrs.evolve(
                match,
                challenger="Bob",
                challenger_ready=True,
                spectators=("carol", "Dave"),
                start_timestamp=JOINED + timedelta(seconds=3),
            )
            await self.store.update_ongoing_match(changed)
            self.assertEqual(await self.store.get_ongoing_match(match.id), changed)
            self.assertTrue(await self.store.delete_ongoing_match(match.id))
            self.assertFalse(await self.store.delete_ongoing_match(match.id))
            with self.assertRaises(NoSuchMatch):
                await self.store.update_ongoing_match(changed)

        return self.run_async(check())

    def test_ongoing_match_filters_and_pages(self) -> Deferred[None]:
        """is_full and is_started filter; matches come by increasing id in pages."""

        async def check() -> None:
            a = await self.store.create_ongoing_match("a", JOINED)
            b = await self.store.create_ongoing_match("b", JOINED)
            c = await self.store.create_ongoing_match("c", JOINED)
            await self.store.update_ongoing_match(attrs.evolve(b, challenger="x"))
            await self.store.update_ongoing_match(
                attrs.evolve(c, challenger="y", start_timestamp=JOINED)
            )

            async def ids(full: bool | None, started: bool | None, limit: int = 100,
                          offset: int = 0) -> list[int]:
                found = await self.store.list_ongoing_matches(full, started, limit, offset)
                return [m.id for m in found]

            self.assertEqual(await ids(None, None), [a.id, b.id, c.id])
            self.assertEqual(await ids(True, None), [b.id, c.id])
            self.assertEqual(await ids(False, None), [a.id])
            self.assertEqual(await ids(None, True), [c.id])
            self.assertEqual(await ids(True, False), [b.id])
            self.assertEqual(await ids(None, None, 1, 1), [b.id])

        return self.run_async(check())

    def test_ids_never_reused(self) -> Deferred[None]:
        """A match created after the newest one was deleted gets a new id."""

        async def check() -> None:
            old = await self.store.create_ongoing_match("a", JOINED)
            await self.store.delete_ongoing_match(old.id)
            new = await self.store.create_ongoing_match("a", JOINED)
            self.assertGreater(new.id, old.id)

        return self.run_async(check())

    # -- completed matches -------------------------------------------------------

    async def play(self, winner: str, loser: str, seconds: int = 0,
                   scores: tuple[int, int] = (5, 3)) -> Any:
        match = await self.store.create_ongoing_match(winner, JOINED)
        outcome = MatchOutcome(
            id=match.id,
            winner=winner,
            loser=loser,
            start_timestamp=JOINED,
            completion_timestamp=JOINED + timedelta(seconds=60 + seconds),
            winner_score=scores[0],
            loser_score=scores[1],
        )
        return await self.store.complete_match(outcome, rate)

    def test_complete_match(self) -> Deferred[None]:
        """
        Completing a match stores it with Elo before and after, updates both users'
        Elo and removes the ongoing match, in one operation.
        """

        async def check() -> None:
            await self.store.create_user(user("Winner", elo=1000))
            await self.store.create_user(user("loser", elo=1100))
            completed = await self.play("winner", "LOSER")
            self.assertEqual(completed.winner, "Winner")
            self.assertEqual(completed.loser, "loser")
            self.assertEqual(
                (completed.winner_elo_before_match, completed.loser_elo_before_match),
                (1000, 1100),
            )
            self.assertEqual(
                (completed.winner_elo_after_match, completed.loser_elo_after_match),
                rate(1000, 1100),
            )
            self.assertEqual(completed.winner_elo_after_match, 1020)
            self.assertEqual((await self.store.get_user("winner")).elo, 1020)
            self.assertEqual((await self.store.get_user("loser")).elo, 1080)
            self.assertIsNone(await self.store.get_ongoing_match(completed.id))
            self.assertEqual(await self.store.get_completed_match(completed.id), completed)
            self.assertIsNone(await self.store.get_completed_match(completed.id + 1))

        return self.run_async(check())

    def test_complete_match_only_once(self) -> Deferred[None]:
        """A match already completed (or never created) is not rated again."""

        async def check() -> None:
            await self.store.create_user(user("w"))
            await self.store.create_user(user("l"))
            completed = await self.play("w", "l")
            outcome = MatchOutcome(
                completed.id, "w", "l", JOINED, JOINED, 5, 0
            )
            with self.assertRaises(NoSuchMatch):
                await self.store.complete_match(outcome, rate)
            self.assertEqual((await self.store.get_user("w")).elo, 1016)
            self.assertEqual((await self.store.get_user("l")).elo, 984)

        return self.run_async(check())

    def test_complete_match_unknown_player_writes_nothing(self) -> Deferred[None]:
        """A missing player fails the whole operation: the ongoing match stays."""

        async def check() -> None:
            await self.store.create_user(user("w"))
            match = await self.store.create_ongoing_match("w", JOINED)
            outcome = MatchOutcome(match.id, "w", "ghost", JOINED, JOINED, 5, 0)
            with self.assertRaises(NoSuchMatch):
                await self.store.complete_match(outcome, rate)
            self.assertEqual(await self.store.get_ongoing_match(match.id), match)
            self.assertEqual((await self.store.get_user("w")).elo, 1000)
            self.assertIsNone(await self.store.get_completed_match(match.id))

        return self.run_async(check())

    def test_completed_match_filters(self) -> Deferred[None]:
        """user, winner and loser filter (ignoring case); newest first; pages."""

        async def check() -> None:
            for name in ("ann", "bob", "cat"):
                await self.store.create_user(user(name))
            m1 = await self.play("ann", "bob", seconds=1)
            m2 = await self.play("bob", "cat", seconds=2)
            m3 = await self.play("cat", "ann", seconds=3)

            async def ids(user: str | None = None, winner: str | None = None,
                          loser: str | None = None, limit: int = 100, offset: int = 0) -> list[int]:
                found = await self.store.list_completed_matches(user, winner, loser, limit, offset)
                return [m.id for m in found]

            self.assertEqual(await ids(), [m3.id, m2.id, m1.id])
            self.assertEqual(await ids(user="ANN"), [m3.id, m1.id])
            self.assertEqual(await ids(winner="bob"), [m2.id])
            self.assertEqual(await ids(loser="ann"), [m3.id])
            self.assertEqual(await ids(user="bob", winner="ann"), [m1.id])
            self.assertEqual(await ids(user="nobody"), [])
            self.assertEqual(await ids(limit=1, offset=1), [m2.id])

        return self.run_async(check())

    # -- arenas ------------------------------------------------------------------

    def test_arena_round_trip(self) -> Deferred[None]:
        """A created arena reads back field for field (config JSON, owner's spelling)."""

        async def check() -> None:
            config = {"width": 500, "spawn_points": [[10, 10, 90]],
                      "players_can_join_started_game": True}
            record = ArenaRecord("pit-1", "Ann", config, JOINED)
            self.assertEqual(await self.store.create_arena(record, 10, 200), record)
            self.assertEqual(await self.store.get_arena("pit-1"), record)
            self.assertIsNone(await self.store.get_arena("pit-2"))

        return self.run_async(check())

    def test_arena_duplicate_and_delete(self) -> Deferred[None]:
        """A taken id is ArenaTaken (the first stays); a deleted id is free again."""

        async def check() -> None:
            await self.store.create_arena(ArenaRecord("a", "ann", {}, JOINED), 10, 200)
            with self.assertRaises(ArenaTaken):
                await self.store.create_arena(ArenaRecord("a", "bob", {}, JOINED), 10, 200)
            self.assertEqual((await self.store.get_arena("a")).owner, "ann")
            self.assertTrue(await self.store.delete_arena("a"))
            self.assertFalse(await self.store.delete_arena("a"))
            self.assertIsNone(await self.store.get_arena("a"))
            again = ArenaRecord("a", "bob", {}, JOINED)
            self.assertEqual(await self.store.create_arena(again, 10, 200), again)

        return self.run_async(check())

    def test_arena_limits(self) -> Deferred[None]:
        """
        Per owner (ignoring case) and in all, checked with the insert; deleting an arena
        frees its place in both counts.
        """

        async def check() -> None:
            await self.store.create_arena(ArenaRecord("a1", "ann", {}, JOINED), 2, 3)
            await self.store.create_arena(ArenaRecord("a2", "ANN", {}, JOINED), 2, 3)
            with self.assertRaises(TooManyArenas) as caught:
                await self.store.create_arena(ArenaRecord("a3", "Ann", {}, JOINED), 2, 3)
            self.assertEqual(caught.exception.scope, "owner")
            await self.store.create_arena(ArenaRecord("b1", "bob", {}, JOINED), 2, 3)
            with self.assertRaises(TooManyArenas) as caught:
                await self.store.create_arena(ArenaRecord("c1", "cat", {}, JOINED), 2, 3)
            self.assertEqual(caught.exception.scope, "all")
            self.assertTrue(await self.store.delete_arena("a1"))
            await self.store.create_arena(ArenaRecord("a3", "ann", {}, JOINED), 2, 3)
            self.assertIsNone(await self.store.get_arena("c1"))

        return self.run_async(check())

    def test_arena_list_in_creation_order(self) -> Deferred[None]:
        """Arenas are listed in creation order (not by id), in pages."""

        async def check() -> None:
            for arena_id in ("zed", "alpha", "mid"):
                await self.store.create_arena(ArenaRecord(arena_id, "ann", {}, JOINED), 10, 200)

            async def ids(limit: int = 100, offset: int = 0) -> list[str]:
                return [a.id for a in await self.store.list_arenas(limit, offset)]

            self.assertEqual(await ids(), ["zed", "alpha", "mid"])
            self.assertEqual(await ids(1, 1), ["alpha"])
            await self.store.delete_arena("alpha")
            await self.store.create_arena(ArenaRecord("alpha", "ann", {}, JOINED), 10, 200)
            self.assertEqual(await ids(), ["zed", "mid", "alpha"])
            self.assertEqual(await ids(10, 3), [])

        return self.run_async(check())
