"""
What the benchmark scripts share: percentiles, a process's CPU time, serving a bare
comparison server, and the options of a gameproto node that lets one address sign up and
create without limits.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Site


# A benchmark makes its users and games from one address, faster than anyone may.
UNTHROTTLED = (
    "--sign-ups-per-address", "off", "--logins-per-address", "off",
    "--creations-per-account", "off", "--creations-per-address", "off",
)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float, empty: float = 0.0) -> float:
    """The value below which C{fraction} of C{values} lie (index int(fraction·n)); C{empty} if none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else empty


def serve_bare(reactor: Any, path: bytes, resource: Any, lateness: list[float],
               report_line: str) -> None:
    """
    Serve C{resource} at C{/ws/PATH} on a free port of 127.0.0.1, print the port in the
    form tests.nodes.ServerProcess reads, run the reactor, and at shutdown print the
    tick lateness with C{report_line} (fields C{count}, C{p50}, C{p99} in ms) in the
    format the script parses out of gameproto's own log.
    """
    root = Resource()
    ws = Resource()
    root.putChild(b"ws", ws)
    ws.putChild(path, resource)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    print(f"bare server listening on 127.0.0.1:{port.getHost().port}", flush=True)

    def report() -> None:
        if lateness:
            print(report_line.format(count=len(lateness),
                                     p50=1000 * percentile(lateness, 0.5),
                                     p99=1000 * percentile(lateness, 0.99)), flush=True)

    reactor.addSystemEventTrigger("before", "shutdown", report)
    reactor.run()
