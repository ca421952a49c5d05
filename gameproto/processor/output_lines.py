"""
The program's output, as the client sees it: lines of stdout and stderr (L{OutputLines}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from gameproto.processor.languages import relativize
from gameproto.processor.limits import RunLimits

#: The launcher's descriptors of the program's output, and their names.
STREAMS = {1: "stdout", 2: "stderr"}

#: How much of the end of stderr is kept to build the INTERPRETER_ERROR message.
STDERR_TAIL = 64 * 1024

OutputHandler = Callable[[str, str], None]


def _utf8_cut(data: bytes, limit: int) -> int:
    """Where to cut C{data} at most C{limit} bytes in without splitting a UTF-8 character."""
    cut = limit
    while cut > max(1, limit - 3) and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut


class OutputLines:
    """
    Cuts what the program writes on stdout and stderr into lines for C{on_line(stream,
    text)}: without their newline (CRLF is one too), decoded with U+FFFD for what is not
    UTF-8, in pieces of at most C{output_line} bytes; paths into the run directory on
    stderr are shown relative to it, like the error message's.

    At most C{limits.output} bytes of both streams together are delivered: the first byte
    over it ends the output for good and calls C{on_limit}.  The end of stderr is kept for
    the run's error message.
    """

    _log = Logger()

    def __init__(
        self,
        limits: RunLimits,
        run_dir: str,
        on_line: OutputHandler,
        on_limit: Callable[[], None],
        run: str,
    ) -> None:
        self._limit = limits.output
        self._longest = limits.output_line
        self._run_dir = run_dir
        self._on_line = on_line
        self._on_limit = on_limit
        self._run = run
        self._partial: dict[int, bytes] = {1: b"", 2: b""}
        self._received: dict[int, int] = {1: 0, 2: 0}
        self._stderr_tail = b""
        #: Bytes delivered so far, of both streams.
        self.delivered = 0
        #: The output went over its limit: nothing more is delivered.
        self.over_limit = False

    def stderr_tail(self) -> str:
        """The last L{STDERR_TAIL} bytes the program wrote on stderr (within the limit)."""
        return self._stderr_tail.decode("utf-8", errors="replace")

    def received(self, fd: int, data: bytes) -> None:
        """C{data} read from the program's C{fd} (1 or 2)."""
        self._received[fd] += len(data)
        if self.over_limit:
            return
        remaining = self._limit - self.delivered
        over = len(data) > remaining
        if over:
            data = data[:remaining]
        self.delivered += len(data)
        if fd == 2:
            self._stderr_tail = (self._stderr_tail + data)[-STDERR_TAIL:]
        lines = (self._partial[fd] + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            self._emit(fd, line[:-1] if line.endswith(b"\r") else line)
        # A line may not grow without bound in memory: an unfinished one is delivered in
        # pieces too once it is longer than a line may be.
        while len(self._partial[fd]) > self._longest:
            cut = _utf8_cut(self._partial[fd], self._longest)
            piece, self._partial[fd] = self._partial[fd][:cut], self._partial[fd][cut:]
            self._emit(fd, piece)
        if over:
            self.flush(fd)
            self.over_limit = True
            self._on_limit()

    def flush(self, fd: int) -> None:
        """The stream ended: its last line, if unfinished, is delivered as it is."""
        if self._partial[fd]:
            piece, self._partial[fd] = self._partial[fd], b""
            self._emit(fd, piece)

    def flush_all(self) -> None:
        for fd in STREAMS:
            self.flush(fd)

    def drain(self, transport: Any) -> None:
        """
        Read what the program wrote on stdout/stderr before an engine call, before the call
        is relayed: the SDK flushed it into the pipes first, but the reactor may service fd
        3 before fds 1 and 2 in the same iteration, and the user would see the command
        before the line printed ahead of it.  (Each read comes back through L{received}.)
        """
        pipes = getattr(transport, "pipes", None)
        if not isinstance(pipes, dict):
            return
        for fd in STREAMS:
            for _ in range(16):  # 16 x 8 KiB covers a full pipe buffer (64 KiB)
                reader = pipes.get(fd)
                if reader is None:
                    break
                before = self._received[fd]
                reader.doRead()
                if self._received[fd] == before:
                    break

    def _emit(self, fd: int, line: bytes) -> None:
        """Deliver one line, in pieces of at most C{output_line} bytes."""
        while True:
            cut = _utf8_cut(line, self._longest) if len(line) > self._longest else len(line)
            text = line[:cut].decode("utf-8", errors="replace")
            if fd == 2:
                # Tracebacks the program prints itself name main.py, like the error message.
                text = relativize(text, self._run_dir)
            try:
                self._on_line(STREAMS[fd], text)
            except Exception:
                self._log.failure("output handler failed", run=self._run)
            line = line[cut:]
            if not line:
                return
