"""
The match directory's contract (gameproto.match.directory), held by both
directories: a single node's (in memory, written through to a memory store) and
the nodes' (Lua scripts on a real redis-server, the records in a Redis store).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from gameproto.match.directory import (
    Changed,
    Conflict,
    IMatchDirectory,
    Place,
    RoleChange,
    RoleOp,
    SeatRef,
    Step,
)
from gameproto.match.elo import rate
from gameproto.match.frames import Role
from gameproto.match.local_directory import LocalMatchDirectory
from gameproto.store import IStore, MatchOutcome, OngoingMatch, User
from gameproto.store.memory import MemoryStore

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
A1, A2, B1 = SeatRef("node-a", 1), SeatRef("node-a", 2), SeatRef("node-b", 1)


def take(user: str, match_id: int, role: Role, seat: SeatRef) -> RoleChange:
    return RoleChange(RoleOp.TAKE, user, Place(match_id, role, seat))


class MatchDirectoryContract:
    """Each test class provides C{directory} and C{store} in setUp."""

    directory: IMatchDirectory
    store: IStore

    def play(self, scenario: Any) -> Deferred[None]:
        async def run() -> None:
            for name in ("hana", "cole", "carl", "sam"):
                await self.store.create_user(User(name, "x", NOW))
            await self.directory.open()
            await scenario()

        return ensureDeferred(run())

    async def challenged(self, **changes: Any) -> tuple[OngoingMatch, OngoingMatch]:
        """
        hana's new match, and its record once cole took the challenger slot (on A1)
        with C{changes} (C{challenger_ready}, C{spectators}) made in the same step.
        """
        match = await self.directory.create("hana", NOW)
        assert match is not None
        joined = attrs.evolve(match, challenger="cole", **changes)
        changed = await self.directory.change(
            match, Step(joined, take("cole", match.id, Role.CHALLENGER, A1)))
        assert isinstance(changed, Changed)
        return match, joined

    def test_one_hosted_match_per_user(self) -> Deferred[None]:
        """A host holds the host role of the match created; a second creation is refused."""
        async def scenario() -> None:
            d = self.directory
            match = await d.create("Hana", NOW)
            assert match is not None
            self.assertEqual((match.host, match.challenger, match.is_started), ("Hana", None, False))
            self.assertIsNone(await d.create("hana", NOW))
            self.assertEqual(await d.place("HANA"), Place(match.id, Role.HOST))
            self.assertEqual(await d.get(match.id), match)
            self.assertEqual(await d.matches(None), [match])
            self.assertEqual(await d.matches(True), [])
            self.assertIsNone(await d.place("cole"))
        return self.play(scenario)  # type: ignore[attr-defined]

    def test_challenger_slot_goes_to_one(self) -> Deferred[None]:
        """
        Two changes computed from one record: the first applies, the second finds the
        record changed (read again, it would find the slot taken).
        """
        async def scenario() -> None:
            d = self.directory
            match = await d.create("hana", NOW)
            assert match is not None
            cole = attrs.evolve(match, challenger="cole")
            carl = attrs.evolve(match, challenger="carl")
            first = await d.change(match, Step(cole, take("cole", match.id, Role.CHALLENGER, A1)))
            second = await d.change(match, Step(carl, take("carl", match.id, Role.CHALLENGER, B1)))
            assert isinstance(first, Changed)
            self.assertEqual((first.before, first.after), (match, cole))
            self.assertGreater(first.seq, 0)
            self.assertIs(second, Conflict.STALE)
            self.assertEqual(await d.get(match.id), cole)
            self.assertEqual(await d.place("Cole"), Place(match.id, Role.CHALLENGER, A1))
            self.assertIsNone(await d.place("carl"))
        return self.play(scenario)  # type: ignore[attr-defined]

    def test_one_role_per_user(self) -> Deferred[None]:
        """
        A user with a role in one match can take no role in another, nor another role
        in the same one; a newer connection takes the same role over; once the match
        is dropped the role is free.
        """
        async def scenario() -> None:
            d = self.directory
            one, two = await d.create("hana", NOW), await d.create("cole", NOW)
            assert one is not None and two is not None
            watched = attrs.evolve(one, spectators=("sam",))
            changed = await d.change(one, Step(watched, take("sam", one.id, Role.SPECTATOR, A1)))
            self.assertIsInstance(changed, Changed)
            self.assertIs(await d.change(two, Step(two, take("sam", two.id, Role.SPECTATOR, B1))),
                          Conflict.ELSEWHERE)
            self.assertIs(await d.change(
                watched, Step(watched, take("sam", one.id, Role.CHALLENGER, B1))),
                Conflict.ELSEWHERE)
            again = await d.change(watched, Step(watched, take("sam", one.id, Role.SPECTATOR, B1)))
            assert isinstance(again, Changed) and isinstance(changed, Changed)
            self.assertGreater(again.seq, changed.seq)
            self.assertEqual(await d.place("sam"), Place(one.id, Role.SPECTATOR, B1))
            self.assertTrue(await d.drop(one.id))
            self.assertFalse(await d.drop(one.id))
            self.assertIsNone(await d.place("sam"))
            self.assertIsInstance(
                await d.change(two, Step(two, take("sam", two.id, Role.SPECTATOR, B1))), Changed)
            self.assertIsNotNone(await d.create("hana", NOW))
            self.assertIs(await d.change(one, Step(one)), Conflict.GONE)
        return self.play(scenario)  # type: ignore[attr-defined]

    def test_replaced_connection_frees_nothing(self) -> Deferred[None]:
        """
        The challenger reconnected elsewhere: the older connection's leave finds its
        role held by the newer one and changes nothing.  A host's role vacated stays
        theirs, with no connection.
        """
        async def scenario() -> None:
            d = self.directory
            match, joined = await self.challenged()
            await d.change(joined, Step(joined, take("cole", match.id, Role.CHALLENGER, B1)))
            left = attrs.evolve(joined, challenger=None)
            old = Place(match.id, Role.CHALLENGER, A1)
            for op in (RoleOp.RELEASE, RoleOp.VACATE, RoleOp.CHECK):
                self.assertIs(await d.change(joined, Step(left, RoleChange(op, "cole", old))),
                              Conflict.NOT_MINE)
            self.assertEqual(await d.get(match.id), joined)
            newer = Place(match.id, Role.CHALLENGER, B1)
            released = await d.change(joined, Step(left, RoleChange(RoleOp.RELEASE, "cole", newer)))
            self.assertIsInstance(released, Changed)
            self.assertIsNone(await d.place("cole"))
            host = Place(match.id, Role.HOST, A2)
            await d.change(left, Step(left, RoleChange(RoleOp.TAKE, "hana", host)))
            self.assertEqual(await d.place("hana"), host)
            await d.change(left, Step(left, RoleChange(RoleOp.VACATE, "hana", host)))
            self.assertEqual(await d.place("hana"), Place(match.id, Role.HOST))
        return self.play(scenario)  # type: ignore[attr-defined]

    def test_delete_frees_every_role(self) -> Deferred[None]:
        """A deleted match is gone, with every role in it; its users may go elsewhere."""
        async def scenario() -> None:
            d = self.directory
            match, full = await self.challenged(spectators=("sam",))
            await d.change(full, Step(full, take("sam", match.id, Role.SPECTATOR, A2)))
            deleted = await d.change(full, Step(None))
            assert isinstance(deleted, Changed)
            self.assertEqual((deleted.before, deleted.after), (full, None))
            self.assertIsNone(await d.get(match.id))
            self.assertEqual(await d.matches(None), [])
            for name in ("hana", "cole", "sam"):
                self.assertIsNone(await d.place(name))
            self.assertIsNotNone(await d.create("cole", NOW))
        return self.play(scenario)  # type: ignore[attr-defined]

    def test_complete_records_the_result_and_frees_the_roles(self) -> Deferred[None]:
        """A completed match is stored with the Elo change; its record and roles are gone."""
        async def scenario() -> None:
            d = self.directory
            match, ready = await self.challenged(challenger_ready=True)
            started = attrs.evolve(ready, start_timestamp=NOW)
            await d.change(ready, Step(started))
            self.assertEqual(await d.matches(True), [started])
            completed = await d.complete(
                MatchOutcome(match.id, "cole", "hana", NOW, NOW, 5, 3), rate)
            self.assertEqual((completed.id, completed.winner_elo_after_match), (match.id, 1016))
            self.assertIsNone(await d.get(match.id))
            self.assertIsNone(await d.place("cole"))
            self.assertIsNone(await d.place("hana"))
            self.assertEqual(await self.store.get_completed_match(match.id), completed)
        return self.play(scenario)  # type: ignore[attr-defined]

    def test_the_store_reads_what_the_directory_changed(self) -> Deferred[None]:
        """The REST API reads the store: every change of the directory shows there."""
        async def scenario() -> None:
            d = self.directory
            match, joined = await self.challenged()
            await d.close()
            self.assertEqual(await self.store.get_ongoing_match(match.id), joined)
            await d.change(joined, Step(None))
            await d.close()
            self.assertIsNone(await self.store.get_ongoing_match(match.id))
        return self.play(scenario)  # type: ignore[attr-defined]


class LocalMatchDirectoryTests(MatchDirectoryContract, TestCase):
    """A single node's directory, over a memory store."""

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.directory = LocalMatchDirectory(self.store)

    def test_restart_drops_started_and_resets_waiting(self) -> Deferred[None]:
        """
        Opened on a store a previous process left: started matches are dropped (their
        game died with it), unstarted ones keep their host and nobody else.
        """
        async def scenario() -> None:
            store = self.store
            started = await store.create_ongoing_match("hana", NOW)
            await store.update_ongoing_match(
                attrs.evolve(started, challenger="cole", start_timestamp=NOW))
            waiting = await store.create_ongoing_match("carl", NOW)
            await store.update_ongoing_match(
                attrs.evolve(waiting, challenger="sam", challenger_ready=True))
            directory = LocalMatchDirectory(store)
            await directory.open()
            self.assertIsNone(await store.get_ongoing_match(started.id))
            self.assertEqual(await directory.matches(None), [waiting])
            self.assertEqual(await store.get_ongoing_match(waiting.id), waiting)
            self.assertEqual(await directory.place("carl"), Place(waiting.id, Role.HOST))
            self.assertIsNone(await directory.place("sam"))
        return self.play(scenario)


class RedisMatchDirectoryTests(MatchDirectoryContract, TestCase):
    """The nodes' directory on a real redis-server."""

    timeout = 30

    def setUp(self) -> Deferred[None]:
        from gameproto.match.redis_directory import RedisMatchDirectory
        from gameproto.node import Node
        from gameproto.redis import RedisURL
        from gameproto.store.redis import RedisStore
        from tests.redisserver import started_redis

        async def start() -> None:
            server = await started_redis(self)
            url = RedisURL.parse(server.url)
            store = RedisStore(reactor, url)
            await store.start()
            self.addCleanup(store.close)
            self.node = Node(reactor, url, node_id="node-a")
            self.node.startService()
            self.addCleanup(self.node.stopService)
            await self.node.beat()
            self.store = store
            self.directory = RedisMatchDirectory(self.node, store)

        return ensureDeferred(start())

    def test_seats_of_dead_nodes(self) -> Deferred[None]:
        """A seat is alive while its node's heartbeat key is."""
        async def scenario() -> None:
            self.assertTrue(await self.directory.seat_alive(A1))
            self.assertFalse(await self.directory.seat_alive(B1))
        return self.play(scenario)
