"""
The contract every L{gameproto.store.IStore} implementation passes.  A test module
per store mixes L{StoreContract} into a C{TestCase} and implements C{make_store}.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from zope.interface.verify import verifyObject

from gameproto.store import IStore, TokenRecord, User, UsernameTaken

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
