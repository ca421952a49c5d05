"""
A match's replay: the frames its players saw (C{init}, every C{status}, the
C{end}), byte for byte, each with the milliseconds since the first, in a compact
encoding that can be read from any position.

The encoding is a magic number, then chunks of consecutive frames, each chunk
compressed with zlib on its own::

    replay = b"GPR1" chunk*
    chunk  = varint(first_ms) varint(frames) varint(len(body)) body
    body   = zlib(frame*)
    frame  = varint(ms - previous ms) varint(len(text)) text

A status frame repeats most of the one before, so zlib shrinks a chunk about
tenfold; a chunk holds C{CHUNK_BYTES} of frames (a few seconds of a game), so
seeking decompresses one chunk, not the whole match, and a player holds one
chunk in memory at a time.  The store keeps the bytes as they are (it knows
nothing of the encoding).

L{ReplayRecorder} records a game as it runs, on the node that runs it, within a
size cap: once the next chunk would not fit, it keeps the longest run of frames
that does and marks the replay truncated.  L{Replay} reads one back.
"""

from __future__ import annotations

import bisect
import math
import zlib
from typing import Iterator

import attrs
from twisted.internet.interfaces import IReactorTime

from gameproto.limits import KiB, MiB

MAGIC = b"GPR1"
# Frames (their text) per chunk before it is compressed: about 2.5 s of a game.
CHUNK_BYTES = 64 * KiB
DEFAULT_MAX_SIZE = 1 * MiB
DEFAULT_RETENTION = 30 * 24 * 3600.0
DEFAULT_MAX_STREAMS = 100
DEFAULT_MAX_STREAMS_PER_USER = 2
# Bounds of a replay stream's ?speed= (a multiple of real time).
MIN_SPEED = 0.25
MAX_SPEED = 16.0


@attrs.frozen
class ReplayLimits:
    """
    The limits of replays (C{--replay-*} options): the largest encoded replay of a
    match, how long replays are kept (seconds from their match's end), and how many
    replay streams one node serves at once, in all and per user.
    """

    max_size: int = DEFAULT_MAX_SIZE
    retention: float = DEFAULT_RETENTION
    max_streams: int = DEFAULT_MAX_STREAMS
    max_streams_per_user: int = DEFAULT_MAX_STREAMS_PER_USER


class ReplayCorrupt(ValueError):
    """Bytes that are not a replay of this encoding."""


# -- varints (LEB128) -------------------------------------------------------------


def put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varints here are never negative")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def get_varint(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    """The varint at C{offset} and the offset after it; L{ReplayCorrupt} if cut short."""
    value = shift = 0
    while True:
        if offset >= len(data) or shift > 63:
            raise ReplayCorrupt("a number is cut short")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


# -- chunks -----------------------------------------------------------------------


Frame = tuple[int, bytes]  # (ms since the first frame, the frame's text as sent)


def encode_chunk(frames: list[Frame]) -> bytes:
    """One chunk of C{frames} (at least one, in time order), header included."""
    body = bytearray()
    previous = frames[0][0]
    for ms, text in frames:
        put_varint(body, ms - previous)
        put_varint(body, len(text))
        body += text
        previous = ms
    compressed = zlib.compress(bytes(body), 9)
    header = bytearray()
    for number in (frames[0][0], len(frames), len(compressed)):
        put_varint(header, number)
    return bytes(header) + compressed


@attrs.frozen
class Chunk:
    first_ms: int
    count: int
    start: int  # of the compressed body in the replay's bytes
    end: int


def decode_chunk(data: bytes, chunk: Chunk) -> Iterator[Frame]:
    try:
        body = zlib.decompress(data[chunk.start : chunk.end])
    except zlib.error as e:
        raise ReplayCorrupt(f"a chunk does not decompress: {e}") from None
    offset, ms = 0, chunk.first_ms
    for _ in range(chunk.count):
        delta, offset = get_varint(body, offset)
        length, offset = get_varint(body, offset)
        if offset + length > len(body):
            raise ReplayCorrupt("a frame is cut short")
        ms += delta
        yield ms, body[offset : offset + length]
        offset += length


class Replay:
    """
    A replay read back from its bytes: C{frames(from_ms)} yields the frames at or
    after C{from_ms}, one chunk decompressed at a time.  L{ReplayCorrupt} if the
    bytes are not a replay.
    """

    def __init__(self, data: bytes) -> None:
        if data[: len(MAGIC)] != MAGIC:
            raise ReplayCorrupt("not a replay")
        self.data = data
        self.chunks: list[Chunk] = []
        offset = len(MAGIC)
        while offset < len(data):
            first_ms, offset = get_varint(data, offset)
            count, offset = get_varint(data, offset)
            length, offset = get_varint(data, offset)
            if offset + length > len(data):
                raise ReplayCorrupt("a chunk is cut short")
            self.chunks.append(Chunk(first_ms, count, offset, offset + length))
            offset += length
        self._firsts = [chunk.first_ms for chunk in self.chunks]

    @property
    def frame_count(self) -> int:
        return sum(chunk.count for chunk in self.chunks)

    def frames(self, from_ms: int = 0) -> Iterator[Frame]:
        # The frames at from_ms may start in the chunk before the first chunk that
        # starts at or after it.
        first = max(0, bisect.bisect_left(self._firsts, from_ms) - 1)
        for chunk in self.chunks[first:]:
            for ms, text in decode_chunk(self.data, chunk):
                if ms >= from_ms:
                    yield ms, text


# -- recording --------------------------------------------------------------------


@attrs.frozen
class Recording:
    """A finished recording: the encoded replay and what is shown without decoding it."""

    data: bytes
    duration_ms: int  # the time of its last frame
    frames: int
    truncated: bool


class ReplayRecorder:
    """
    Records the frames of one game as they are sent, timed on C{clock} from the
    first one, into at most C{max_size} bytes of encoding.  Frames are gathered
    into a chunk of C{chunk_bytes}, which is compressed when full; the memory it
    holds is the encoded replay so far plus one chunk of frames.
    """

    def __init__(self, clock: IReactorTime, max_size: int = DEFAULT_MAX_SIZE,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.clock = clock
        self.max_size = max_size
        self.chunk_bytes = chunk_bytes
        self.truncated = False
        self._start: float | None = None
        self._chunks: list[bytes] = []
        self._size = len(MAGIC)
        self._pending: list[Frame] = []
        self._pending_bytes = 0
        self._last_ms = 0
        self._kept_frames = 0
        self._kept_ms = 0

    def frame(self, text: bytes) -> None:
        """A frame sent now."""
        if self.truncated:
            return
        now = self.clock.seconds()
        if self._start is None:
            self._start = now
        # Never backwards, whatever the clock does.
        ms = max(self._last_ms, math.floor((now - self._start) * 1000 + 0.5))
        self._last_ms = ms
        self._pending.append((ms, text))
        self._pending_bytes += len(text)
        if self._pending_bytes >= self.chunk_bytes:
            self._seal()

    def finish(self, last: bytes | None = None) -> Recording:
        """The recording, with C{last} (the end frame) sent now as its last frame."""
        if last is not None:
            self.frame(last)
        self._seal()
        return Recording(MAGIC + b"".join(self._chunks), self._kept_ms, self._kept_frames,
                         self.truncated)

    def _seal(self) -> None:
        frames, self._pending, self._pending_bytes = self._pending, [], 0
        if not frames:
            return
        chunk = encode_chunk(frames)
        if self._size + len(chunk) > self.max_size:
            # The longest prefix of the chunk that still fits, then nothing more.
            self.truncated = True
            low, high, chunk = 0, len(frames) - 1, b""
            while low < high:
                middle = (low + high + 1) // 2
                candidate = encode_chunk(frames[:middle])
                if self._size + len(candidate) <= self.max_size:
                    low, chunk = middle, candidate
                else:
                    high = middle - 1
            frames = frames[:low]
            if not frames:
                return
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._kept_frames += len(frames)
        self._kept_ms = frames[-1][0]


def parse_speed(raw: str) -> float | None:
    """A replay stream's C{?speed=}: a finite number from 0.25 to 16, else C{None}."""
    try:
        speed = float(raw)
    except ValueError:
        return None
    if not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        return None
    return speed


def number(value: float) -> float | int:
    """C{10.0} → C{10}: a whole number (of milliseconds, of times real time) reads as one."""
    return int(value) if float(value).is_integer() else value
