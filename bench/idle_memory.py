"""
Where gameproto's memory per idle connection goes: a gameproto server run in this very
process (C{--store memory:}, otherwise its defaults), N idle clients from
bench/idle_clients.js (socket.io-client members of the chat, as bench/idle_connections.py
connects them), and what those N added, per connection:

- the process's RSS growth (with tracing on, tracemalloc's own bookkeeping is in it too);
- Python's allocations still alive, by the module and by the line that made them
  (tracemalloc, started once the warm-up clients are in, read once every client has had
  a heartbeat ping);
- the live objects the garbage collector tracks, by type: how many per connection and
  their sys.getsizeof (strings, bytes and numbers are not tracked: the tracemalloc lines
  show them).

    .venv/bin/python bench/idle_memory.py -N 2000 --transport websocket

It profiles; bench/idle_connections.py measures (out of process, untraced).
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import time
import tracemalloc
from typing import Any

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.idle_connections import (  # noqa: E402
    IdleClients, raise_open_files, settled_rss, socketio_command)
from gameproto.tap import Options, makeService  # noqa: E402


def objects_by_type() -> dict[str, tuple[int, int]]:
    """Live gc-tracked objects: type name → (count, bytes by sys.getsizeof)."""
    gc.collect()
    counts: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    return {name: (counts[name], sizes[name]) for name in counts}


async def run(reactor: Any, options: argparse.Namespace) -> None:
    raise_open_files()
    server_options = Options()
    server_options.parseOptions(["--port", "tcp:0:interface=127.0.0.1", "--store", "memory:",
                                 *options.server_options])
    server = makeService(server_options, reactor)
    server.startService()
    await server.whenStarted()
    port = server.port.getHost().port
    pid = os.getpid()
    n = options.connections
    clients = IdleClients(reactor)
    try:
        await clients.connect(socketio_command(port, options.transport, 0, options.warmup,
                                               options.room_size))
        base = await settled_rss(reactor, pid)
        before = objects_by_type()
        if options.tracemalloc:
            tracemalloc.start(options.frames)
        began = time.monotonic()
        await clients.connect(socketio_command(port, options.transport, options.warmup, n,
                                               options.room_size))
        connected = time.monotonic() - began
        status = await clients.until_pinged(120)
        rss = await settled_rss(reactor, pid)
        gc.collect()
        snapshot = tracemalloc.take_snapshot() if options.tracemalloc else None
        after = objects_by_type()
        status = await clients.status()
        freed = what_if() if options.tracemalloc else []
        tracemalloc.stop()
    finally:
        await clients.close()
        await server.stopService()
    print(f"# {n} idle socket.io-client members ({options.transport}) after {options.warmup} "
          f"warm-up ones, gameproto in this process ({'tracemalloc on' if snapshot else 'untraced'})"
          f"; connected in {connected:.1f} s; open {status['open']}, closed {status['closed']}")
    print(f"RSS growth: {(rss - base) / n:.2f} KB per connection ({base / 1024:.1f} -> "
          f"{rss / 1024:.1f} MB)")
    if snapshot is not None:
        snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        traced = sum(stat.size for stat in snapshot.statistics("filename"))
        print(f"Python allocations alive (tracemalloc): {traced / n / 1024:.2f} KB per "
              f"connection")
        print("by module (bytes per connection):")
        for stat in snapshot.statistics("filename")[:options.top]:
            name = stat.traceback[0].filename
            print(f"  {stat.size / n:>8.0f}  {stat.count / n:>6.1f} blocks  {short(name)}")
        print("by line (bytes per connection):")
        for stat in snapshot.statistics("lineno")[:options.top]:
            frame = stat.traceback[0]
            print(f"  {stat.size / n:>8.0f}  {stat.count / n:>6.1f} blocks  "
                  f"{short(frame.filename)}:{frame.lineno}")
    for what, size in freed:
        print(f"what if {what}: {size / n / 1024:.2f} KB per connection freed (tracemalloc)")
    print("gc-tracked objects by type (per connection: count, sys.getsizeof bytes):")
    grown = []
    for name, (count, size) in after.items():
        count0, size0 = before.get(name, (0, 0))
        if size - size0 > 0:
            grown.append(((size - size0) / n, (count - count0) / n, name))
    for size, count, name in sorted(grown, reverse=True)[:options.top]:
        print(f"  {size:>8.0f}  {count:>6.2f}  {name}")


def what_if() -> list[tuple[str, int]]:
    """
    What two leftovers of the WebSocket upgrade hold, measured by dropping them (the
    clients are idle, and this is the end of the run): the Twisted Web channel of the
    upgrade request, which stays the TCP transport's producer (and with it the request,
    its headers and buffers), and the handshake Autobahn keeps on its protocol.
    """
    from twisted.web.http import HTTPChannel

    from gameproto.socketio.engineio.websocket import EngineIOWebSocket

    sockets = [o for o in gc.get_objects() if isinstance(o, EngineIOWebSocket)]
    freed = []
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0]
    for proto in sockets:
        if isinstance(getattr(proto.transport, "producer", None), HTTPChannel):
            proto.transport.producer = None
    gc.collect()
    freed.append(("the upgrade's HTTP channel were not the transport's producer",
                  traced - tracemalloc.get_traced_memory()[0]))
    traced = tracemalloc.get_traced_memory()[0]
    for proto in sockets:
        for name in ("http_request_data", "http_response_data", "http_headers",
                     "http_headers_cnt", "http_status_line", "http_request_uri",
                     "http_request_path", "http_request_params", "http_request_host",
                     "flashSocketPolicy"):
            if hasattr(proto, name):
                setattr(proto, name, None)
    gc.collect()
    freed.append(("Autobahn dropped its handshake once open",
                  traced - tracemalloc.get_traced_memory()[0]))
    return freed


def short(path: str) -> str:
    """A path below site-packages or the checkout, without its prefix."""
    for marker in ("site-packages/", os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-N", "--connections", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--transport", choices=("websocket", "polling"), default="websocket")
    parser.add_argument("--room-size", type=int, default=10)
    parser.add_argument("--tracemalloc", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames per trace")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("server_options", nargs="*", help="more gameproto options, after --")
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
