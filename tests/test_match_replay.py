"""
Replays of completed matches without a network: the encoding and the recorder on a
Clock (timing, chunks, the size cap), the player (speed, seek), the replay
service's retention and stream limits, and, over a whole server in memory on a
Clock, a match played to its end whose replay (REST and the WebSocket stream)
holds exactly the frames a spectator got.
"""

from __future__ import annotations

import struct
from datetime import datetime, timezone
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameproto import wire
from gameproto.match.pong import PaddleCommand, PongGame, PongRules, Side
from gameproto.match.replay import (
    MAGIC,
    Replay,
    ReplayCorrupt,
    ReplayLimits,
    ReplayRecorder,
    parse_speed,
)
from gameproto.match.replay_service import ReplayService
from gameproto.match.replay_stream import ReplayPlayer, replay_query
from gameproto.server import ServerConfig
from gameproto.store.memory import MemoryStore
from gameproto.testing import CLOSE, TEXT, WebSocketClient
from tests.matchsupport import MatchTestCase, read

TICK = 0.01


def game_frames(count: int) -> list[bytes]:
    """The encoded init and C{count - 1} statuses of a real game (the right paddle climbing)."""
    game = PongGame(PongRules(winning_score=1000, time_limit=1e9))
    texts = [wire.encode(game.init_frame())]
    for _ in range(count - 1):
        game.queue_command(Side.RIGHT, PaddleCommand.FAST_UP)
        texts.append(wire.encode(game.step()))
    return texts


def record(texts: list[bytes], clock: Clock | None = None, every: float = TICK,
           **options: Any) -> tuple[ReplayRecorder, Any]:
    """Record C{texts}, one every C{every} seconds of C{clock}; the recorder and its recording."""
    clock = clock or Clock()
    recorder = ReplayRecorder(clock, **options)
    for i, text in enumerate(texts[:-1]):
        if i:
            clock.advance(every)
        recorder.frame(text)
    clock.advance(every)
    return recorder, recorder.finish(texts[-1])


class EncodingTests(SynchronousTestCase):
    def test_frames_back_exactly_with_their_times(self) -> None:
        """Every frame comes back byte for byte with its milliseconds since the first."""
        texts = game_frames(500) + [b'{"message_type":"end","id":1}']
        recorder, recording = record(texts)
        replay = Replay(recording.data)
        self.assertEqual(list(replay.frames()), [(10 * i, t) for i, t in enumerate(texts)])
        self.assertEqual((recording.frames, recording.duration_ms, recording.truncated),
                         (501, 5000, False))

    def test_times_follow_the_clock(self) -> None:
        """A late tick is recorded late: times are the clock's, rounded to the millisecond."""
        clock = Clock()
        recorder = ReplayRecorder(clock)
        for delay in (0, 0.0104, 0.0251, 0.0004):
            clock.advance(delay)
            recorder.frame(b"x")
        self.assertEqual([ms for ms, _ in Replay(recorder.finish().data).frames()],
                         [0, 10, 36, 36])

    def test_compact(self) -> None:
        """A game's statuses shrink at least fivefold."""
        texts = game_frames(3000)
        _, recording = record(texts)
        raw = sum(len(t) for t in texts)
        self.assertLess(len(recording.data) * 5, raw)

    def test_chunks_read_from_any_position(self) -> None:
        """
        With small chunks, reading from any millisecond (chunk boundaries and frames
        sharing a millisecond included) gives exactly the frames at or after it.
        """
        texts = [b"frame %d" % i for i in range(200)]
        clock = Clock()
        recorder = ReplayRecorder(clock, chunk_bytes=50)
        frames = []
        for i, text in enumerate(texts):
            clock.advance(0 if i % 3 else 0.007)  # three frames per millisecond value
            recorder.frame(text)
            frames.append((round((clock.seconds()) * 1000) - 7, text))
        replay = Replay(recorder.finish().data)
        self.assertGreater(len(replay.chunks), 20)
        self.assertEqual(list(replay.frames()), frames)
        for position in range(0, frames[-1][0] + 2):
            self.assertEqual(list(replay.frames(position)),
                             [f for f in frames if f[0] >= position], position)

    def test_size_cap_keeps_the_longest_beginning(self) -> None:
        """
        Past the cap the recording is truncated: at most max_size bytes, the frames a
        prefix of the game (the end frame lost), and one more frame would not have fit.
        """
        texts = game_frames(3000) + [b'{"message_type":"end"}']
        cap = 4000
        recorder, recording = record(texts, max_size=cap, chunk_bytes=8 * 1024)
        self.assertTrue(recording.truncated)
        self.assertLessEqual(len(recording.data), cap)
        kept = list(Replay(recording.data).frames())
        self.assertGreater(len(kept), 10)
        self.assertEqual(kept, [(10 * i, t) for i, t in enumerate(texts[:len(kept)])])
        self.assertEqual(recording.duration_ms, kept[-1][0])
        self.assertEqual(recording.frames, len(kept))
        # The longest prefix: the same frames and one more do not fit.
        _, longer = record(texts[:len(kept) + 1], chunk_bytes=8 * 1024)
        self.assertGreater(len(longer.data), cap)

    def test_nothing_fits(self) -> None:
        """A cap too small for one frame keeps an empty, truncated replay."""
        _, recording = record(game_frames(10), max_size=len(MAGIC) + 3)
        self.assertEqual((recording.data, recording.frames, recording.truncated),
                         (MAGIC, 0, True))
        self.assertEqual(list(Replay(recording.data).frames()), [])

    def test_corrupt_bytes(self) -> None:
        """Bytes that are not a replay, or a replay cut short, raise ReplayCorrupt."""
        _, recording = record(game_frames(50))
        for data in (b"", b"nope", recording.data[:-5], MAGIC + b"\xff\xff"):
            with self.assertRaises(ReplayCorrupt):
                list(Replay(data).frames())

    def test_speed_bounds(self) -> None:
        """?speed= is a finite number from 0.25 to 16."""
        self.assertEqual([parse_speed(s) for s in ("0.25", "1", "16", "2.5")],
                         [0.25, 1.0, 16.0, 2.5])
        for bad in ("0.2", "17", "0", "-1", "nan", "inf", "", "fast", "1e400"):
            self.assertIsNone(parse_speed(bad), bad)

    def test_replay_query(self) -> None:
        """A spectator's query (with a speed or not) is a replay's; anything else is not."""
        self.assertEqual(replay_query("/ws/game/1/?role=spectator"), 1.0)
        self.assertEqual(replay_query("/ws/game/1/?speed=4&role=spectator"), 4.0)
        self.assertEqual(replay_query("/ws/game/1/?role=spectator&speed=99").code, 7)
        for other in ("?role=host", "?role=host&speed=2", "?role=spectator&x=1",
                      "?role=spectator&role=spectator", "?role=spectator&speed=1&speed=2", ""):
            self.assertIsNone(replay_query("/ws/game/1/" + other), other)


class PlayerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.texts = [b"f%d" % i for i in range(100)]
        _, recording = record(self.texts, every=0.1)  # 0, 100, ..., 9900 ms
        self.replay = Replay(recording.data)
        self.sent: list[tuple[float, bytes]] = []
        self.done: list[float] = []

    def player(self, speed: float) -> ReplayPlayer:
        return ReplayPlayer(self.clock, self.replay, speed,
                            lambda text: self.sent.append((self.clock.seconds(), text)),
                            lambda: self.done.append(self.clock.seconds()))

    def run_out(self) -> None:
        while self.clock.getDelayedCalls():
            self.clock.advance(min(c.getTime() for c in self.clock.getDelayedCalls())
                               - self.clock.seconds())

    def test_real_speed(self) -> None:
        """At speed 1 each frame goes out at its recorded time; done after the last."""
        self.player(1).play(0)
        self.run_out()
        self.assertEqual([t for _, t in self.sent], self.texts)
        for (at, _), i in zip(self.sent, range(100)):
            self.assertAlmostEqual(at, i * 0.1, places=6)
        self.assertEqual(len(self.done), 1)
        self.assertAlmostEqual(self.done[0], 9.9, places=6)

    def test_speed(self) -> None:
        """At speed 2 the frames go out twice as fast; at 0.5, half as fast."""
        for speed in (2.0, 0.5):
            self.sent.clear()
            start = self.clock.seconds()
            self.player(speed).play(0)
            self.run_out()
            self.assertEqual(len(self.sent), 100)
            self.assertAlmostEqual(self.sent[-1][0] - start, 9.9 / speed, places=5)
            self.assertAlmostEqual(self.sent[10][0] - start, 1.0 / speed, places=5)

    def test_seek(self) -> None:
        """
        Seeking starts again at the first frame at or after the position, at once,
        timed from there; frames due before the seek are never sent.
        """
        player = self.player(1)
        player.play(0)
        self.clock.advance(0.35)  # f0..f3 sent
        self.assertEqual(len(self.sent), 4)
        player.play(5050)  # f51 (5100 ms) is due 50 ms later
        self.assertEqual(len(self.sent), 4)
        self.clock.advance(0.05)
        self.assertEqual(self.sent[-1], (self.clock.seconds(), b"f51"))
        self.clock.advance(0.1)
        self.assertEqual(self.sent[-1][1], b"f52")
        player.play(0)
        self.assertEqual(self.sent[-1][1], b"f0")
        self.run_out()
        self.assertEqual(len(self.sent), 4 + 2 + 100)
        self.assertEqual(len(self.done), 1)

    def test_stop(self) -> None:
        """A stopped player sends nothing more, leaves no timer and is never done."""
        player = self.player(1)
        player.play(0)
        self.clock.advance(1)
        player.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.done, [])


class ReplayServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore()
        self.service = ReplayService(self.store, self.clock, ReplayLimits(
            retention=3600 * 24, max_streams=3, max_streams_per_user=2))

    def completed(self) -> int:
        from gameproto.match.elo import rate
        from gameproto.store import MatchOutcome, User

        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        for name in ("w", "l"):
            if self.successResultOf(self.store.get_user(name)) is None:
                self.successResultOf(self.store.create_user(User(name, "x", now)))
        match = self.successResultOf(self.store.create_ongoing_match("w", now))
        self.successResultOf(self.store.complete_match(
            MatchOutcome(match.id, "w", "l", now, now, 5, 0), rate))
        return match.id

    def keep(self) -> int:
        match_id = self.completed()
        recorder = self.service.recorder()
        recorder.frame(b"{}")
        self.assertTrue(self.successResultOf(self.service.keep(match_id, recorder, b"[]")))
        return match_id

    def test_pruned_after_the_retention(self) -> None:
        """The hourly prune deletes a replay once it is older than the retention."""
        self.service.startService()
        self.addCleanup(self.service.stopService)
        match_id = self.keep()
        self.clock.advance(3600 * 23)
        self.assertIsNotNone(self.successResultOf(self.store.get_replay(match_id)))
        self.clock.advance(3600 * 2)
        self.assertIsNone(self.successResultOf(self.store.get_replay(match_id)))
        self.assertIsNotNone(self.successResultOf(self.store.get_completed_match(match_id)))

    def test_a_replay_that_cannot_be_kept(self) -> None:
        """keep never fails: without a completed match it logs and answers False."""
        recorder = self.service.recorder()
        self.assertFalse(self.successResultOf(self.service.keep(999, recorder, b"[]")))
        self.assertEqual(len(self.flushLoggedErrors()), 1)

    def test_stream_limits(self) -> None:
        """Streams are counted per node and per user (any case); a released slot frees one."""
        match_id = self.keep()
        raw = str(match_id)
        a = self.successResultOf(self.service.open_stream(raw, "ann"))
        self.successResultOf(self.service.open_stream(raw, "ANN"))
        self.assertEqual(self.successResultOf(self.service.open_stream(raw, "ann")).code, 11)
        self.successResultOf(self.service.open_stream(raw, "bob"))
        self.assertEqual(self.successResultOf(self.service.open_stream(raw, "cat")).code, 11)
        a.slot.release()
        a.slot.release()  # once only
        self.assertEqual(self.service.streams, 2)
        self.successResultOf(self.service.open_stream(raw, "cat"))
        self.assertEqual(self.service.streams_of, {"ann": 1, "bob": 1, "cat": 1})


def raw_texts(ws: WebSocketClient) -> tuple[list[bytes], list[int]]:
    """The text frames a client got since the last read, as bytes, and its close codes."""
    texts, closes = [], []
    for opcode, payload in ws.frames():
        if opcode == TEXT:
            texts.append(payload)
        elif opcode == CLOSE:
            closes.append(struct.unpack("!H", payload[:2])[0])
    ws.forget_read()
    return texts, closes


GAME_TYPES = (b'{"message_type":"init"', b'{"message_type":"status"', b'{"message_type":"end"')


class PlayedMatchTestCase(MatchTestCase):
    """A whole match played on the in-memory server, watched by a spectator."""

    config = ServerConfig(store="memory:", port=None,
                          replays=ReplayLimits(max_streams_per_user=1))

    def play(self) -> tuple[int, list[bytes]]:
        """A match to its end (the host steering into the wall); the spectator's game frames."""
        # First to 2 (a shorter match, the same frames).
        self.patch(self.service.games, "rules", attrs.evolve(self.service.rules, winning_score=2))
        match_id = self.create_match("hana")
        host = self.joined(match_id, "host", "hana")
        challenger = self.joined(match_id, "challenger", "cole")
        spectator = self.joined(match_id, "spectator", "sam")
        challenger.send_json({"command": "ready"})
        host.send_json({"command": "start_match"})
        live: list[bytes] = []
        closes: list[int] = []
        for _ in range(5000):
            host.send_json({"command": "fup"})
            self.tick()
            read(host), read(challenger)
            texts, closed = raw_texts(spectator)
            live += texts
            closes += closed
            if closes:
                break
        self.assertEqual(closes, [1000])
        return match_id, [t for t in live if t.startswith(GAME_TYPES)]


class ReplayOfAMatchTests(PlayedMatchTestCase):
    """A whole match, then its replay."""
    def test_rest_replay_is_what_was_sent(self) -> None:
        """
        GET .../replay/ gives every game frame the spectator got, init to end, byte for
        byte, each at its tick's time.
        """
        match_id, live = self.play()
        self.assertTrue(live[0].startswith(GAME_TYPES[0]) and live[-1].startswith(GAME_TYPES[2]))
        response = self.call("GET", f"/api/completed_matches/{match_id}/replay/", "sam")
        self.assertEqual(response.status, 200, response.body)
        body = response.json()
        self.assertEqual([f["frame"].encode() for f in body["frames"]], live)
        # Status i goes out at tick i: i × 10 ms after the init, give or take the hair
        # over 10 ms that each tick advances the clock here (MatchTestCase.tick); the
        # end goes out in the last tick.
        times = [f["ms"] for f in body["frames"]]
        for i, ms in enumerate(times[:-1]):
            self.assertTrue(10 * i - 1 <= ms <= 10.001 * i + 1, (i, ms))
        self.assertEqual(times[-1], times[-2])
        self.assertEqual({k: v for k, v in body.items() if k != "frames"},
                         {"id": match_id, "tick_ms": 10, "duration_ms": body["frames"][-1]["ms"],
                          "truncated": False})

    def test_rest_errors(self) -> None:
        """404 with the documented texts; a token is needed."""
        match_id, _ = self.play()
        self.assertEqual(self.call("GET", f"/api/completed_matches/{match_id}/replay/").status, 401)
        for path, error in [(f"{match_id + 1}", "no such match"), ("x", "no such match")]:
            response = self.call("GET", f"/api/completed_matches/{path}/replay", "sam")
            self.assertEqual((response.status, response.json()), (404, {"error": error}))
        self.successResultOf(self.store.prune_replays(datetime(2100, 1, 1, tzinfo=timezone.utc)))
        response = self.call("GET", f"/api/completed_matches/{match_id}/replay/", "sam")
        self.assertEqual((response.status, response.json()),
                         (404, {"error": "no replay of this match"}))

    def watch(self, match_id: int, query: str = "?role=spectator",
              user: str = "sam") -> WebSocketClient:
        return self.connect(match_id, None, user, query=query)

    def test_stream_at_real_speed(self) -> None:
        """
        A spectator of the completed match gets success, the replay message, every
        frame at its time, the replay_end and a close 1000.
        """
        match_id, live = self.play()
        ws = self.watch(match_id)
        texts, closes = raw_texts(ws)
        self.assertEqual([wire.decode(t) for t in texts[:2]], [
            {"status": "success", "code": 0},
            {"message_type": "replay", "id": match_id, "position_ms": 0,
             "duration_ms": self.duration(match_id), "speed": 1,
             "truncated": False},
        ])
        self.assertEqual(texts[2:], live[:1])  # the init frame, at once
        got = texts[2:]
        self.clock.advance(0.0095)
        self.assertEqual(raw_texts(ws)[0], [])  # the first status is due at 10 ms
        self.clock.advance(0.001)
        got += raw_texts(ws)[0]
        self.assertEqual(got, live[:2])
        for _ in range(2 * len(live)):
            self.clock.advance(TICK)
            texts, closes = raw_texts(ws)
            got += texts
            if closes:
                break
        self.assertEqual(closes, [1000])
        self.assertEqual(got[:-1], live)
        self.assertEqual(wire.decode(got[-1]), {"message_type": "replay_end", "id": match_id})
        self.assertEqual(self.server.replays.streams, 0)

    def duration(self, match_id: int) -> int:
        return self.successResultOf(self.store.get_replay(match_id)).duration_ms

    def test_speed_and_seek(self) -> None:
        """
        ?speed=4 plays four times as fast; a seek answers with a replay message at the
        new position and goes on from the first frame at or after it.
        """
        match_id, live = self.play()
        ws = self.watch(match_id, "?role=spectator&speed=4")
        texts, _ = raw_texts(ws)
        self.assertEqual(wire.decode(texts[1])["speed"], 4)
        self.clock.advance(0.1 + 1e-4)  # 400 ms of the match
        self.assertEqual(raw_texts(ws)[0], live[1:41])
        ws.send_json({"command": "seek", "ms": 1005})
        texts, _ = raw_texts(ws)
        self.assertEqual(wire.decode(texts[0]), {
            "message_type": "replay", "id": match_id, "position_ms": 1005,
            "duration_ms": self.duration(match_id), "speed": 4, "truncated": False})
        self.assertEqual(texts[1:], [])
        # 1010 ms, the first frame at or after 1005, is due 5 ms / 4 later.
        self.clock.advance(0.00125 + 1e-4)
        self.assertEqual(raw_texts(ws)[0], [live[101]])
        self.clock.advance(0.0025)
        self.assertEqual(raw_texts(ws)[0], [live[102]])
        ws.send_json({"command": "seek", "ms": self.duration(match_id)})
        texts, closes = raw_texts(ws)
        # The last status and the end share the last millisecond.
        self.assertEqual(texts[1:], [live[-2], live[-1],
                                     b'{"message_type":"replay_end","id":%d}' % match_id])
        self.assertEqual(closes, [1000])

    def test_bad_commands_and_speeds(self) -> None:
        """
        A bad seek or another command gets code 2 and the stream goes on; a bad speed
        gets code 7 and a close 4000 before anything is streamed.
        """
        match_id, live = self.play()
        ws = self.watch(match_id)
        raw_texts(ws)
        duration = self.duration(match_id)
        for bad in ({"command": "seek", "ms": -1}, {"command": "seek", "ms": duration + 1},
                    {"command": "seek", "ms": 1.5}, {"command": "seek", "ms": True},
                    {"command": "seek"}, {"command": "up"}, {"command": 3}):
            ws.send_json(bad)
            self.assertEqual([wire.decode(t) for t in raw_texts(ws)[0]],
                             [{"error": "invalid command", "code": 2}], bad)
        ws.send_json({"ms": 5})
        self.assertEqual([wire.decode(t) for t in raw_texts(ws)[0]],
                         [{"error": "no command sent", "code": 2}])
        ws.send_binary(b"\x00")
        self.assertEqual([wire.decode(t) for t in raw_texts(ws)[0]],
                         [{"error": "invalid command", "code": 2}])
        self.clock.advance(0.0101)
        self.assertEqual(raw_texts(ws)[0], [live[1]])
        for speed in ("0.1", "17", "x", "nan"):
            bad = self.watch(match_id, f"?role=spectator&speed={speed}", user="zed")
            texts, closes = raw_texts(bad)
            self.assertEqual([wire.decode(t) for t in texts], [{
                "error": "bad value in query string. expected: speed from 0.25 to 16",
                "code": 7}])
            self.assertEqual(closes, [4000])

    def test_refusals(self) -> None:
        """
        One stream per user here (the option): a second gets code 11 and 4029; a
        pruned replay is code 5 "no replay of this match"; an ongoing match's
        spectator is the live protocol's, where speed is a bad key.
        """
        match_id, _ = self.play()
        first = self.watch(match_id)
        second = self.watch(match_id)
        self.assertEqual(raw_texts(second), ([
            b'{"error":"too many replay streams, try again later","code":11}'], [4029]))
        first.send_close()
        raw_texts(first)
        self.assertEqual(self.server.replays.streams, 0)
        self.successResultOf(self.store.prune_replays(datetime(2100, 1, 1, tzinfo=timezone.utc)))
        gone = self.watch(match_id)
        self.assertEqual(raw_texts(gone), ([b'{"error":"no replay of this match","code":5}'],
                                           [4004]))
        ongoing = self.create_match("zed")
        live = self.watch(ongoing, "?role=spectator&speed=2")
        self.assertEqual(raw_texts(live), ([
            b'{"error":"bad key in query string. expected: role","code":7}'], [4000]))
        watching = self.watch(ongoing)
        self.assertEqual([wire.decode(t) for t in raw_texts(watching)[0]], [
            {"status": "success", "code": 0},
            {"message_type": "lobby", "challenger": None, "challenger_ready": False,
             "spectators": 1}])
        nothing = self.watch(ongoing + 100)
        self.assertEqual(raw_texts(nothing), ([
            b'{"error":"non existent requested match","code":5}'], [4004]))



class ReplayStoreDown(MemoryStore):
    """A store that keeps everything but replays."""

    def save_replay(self, replay: Any) -> Any:
        from twisted.internet.defer import fail

        from gameproto.store import StoreError

        return fail(StoreError("replays are down"))


class ReplayNotKeptTests(PlayedMatchTestCase):
    def make_store(self) -> MemoryStore:
        return ReplayStoreDown()

    def test_the_match_ends_all_the_same(self) -> None:
        """
        A replay that cannot be stored is logged; the match ends as usual (end frame,
        close 1000, the result stored) and has no replay.
        """
        match_id, live = self.play()
        self.assertTrue(live[-1].startswith(GAME_TYPES[2]))
        self.assertEqual(self.call("GET", f"/api/completed_matches/{match_id}/", "sam").status,
                         200)
        response = self.call("GET", f"/api/completed_matches/{match_id}/replay/", "sam")
        self.assertEqual((response.status, response.json()),
                         (404, {"error": "no replay of this match"}))
        self.assertEqual(len(self.flushLoggedErrors()), 1)


class OptionsTests(SynchronousTestCase):
    def parse(self, *argv: str) -> Any:
        from gameproto.options import Options

        options = Options()
        options.parseOptions(list(argv))
        return options.config().replays

    def test_documented_defaults(self) -> None:
        """docs/operations.md's limits: 1 MiB, 30 days, 100 streams a node, 2 a user."""
        self.assertEqual(self.parse(), ReplayLimits(1024 * 1024, 30 * 24 * 3600, 100, 2))

    def test_flags_and_environment(self) -> None:
        """The --replay-* flags and their GAMEPROTO_REPLAY_* variables set the limits."""
        import os

        self.patch(os, "environ", {"GAMEPROTO_REPLAY_STREAMS": "7",
                                   "GAMEPROTO_REPLAY_MAX_SIZE": "64KiB"})
        self.assertEqual(
            self.parse("--replay-max-size", "2MiB", "--replay-retention", "3600",
                       "--replay-streams-per-user", "1"),
            ReplayLimits(2 * 1024 * 1024, 3600.0, 7, 1),
        )
        self.assertEqual(self.parse().max_size, 64 * 1024)

    def test_bad_values(self) -> None:
        """A size, duration or count that is not positive stops the start with a usage error."""
        from twisted.python.usage import UsageError

        for flag, value in [("--replay-max-size", "0"), ("--replay-retention", "-1"),
                            ("--replay-streams", "none")]:
            with self.assertRaises(UsageError):
                self.parse(flag, value)
