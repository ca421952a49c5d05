"""
The listening endpoint's queue of connections not yet accepted.

Twisted listens with a backlog of 50 unless a strports description says otherwise.
Clients that open connections in bursts overflow a queue that short: Socket.IO's
long-polling clients in Node open a connection for every GET and POST (their HTTP agent
does not keep connections alive), and 200 of them fanning out a chat room made the kernel
drop about 100 connection attempts a second.  A dropped SYN is retried after a second,
then after two more: round trips of 1 to 3 s where the server was idle.  Node listens
with a backlog of 511, as nginx does; gameproto does the same unless told otherwise.
The kernel caps any backlog at C{net.core.somaxconn}.
"""

from __future__ import annotations

import re

DEFAULT_BACKLOG = 511
"""Node's and nginx's default: deep enough for a burst of hundreds of connections."""

# The strports endpoint types whose listen() takes a backlog.
_WITH_BACKLOG = frozenset({"tcp", "tcp6", "ssl", "unix"})

# A "backlog=" argument: at the start of an argument, after an unescaped colon.
_BACKLOG_ARGUMENT = re.compile(r"(?<!\\):backlog=")


def with_backlog(description: str, backlog: int = DEFAULT_BACKLOG) -> str:
    """
    @return: the strports C{description} with C{backlog=}C{backlog} added when its endpoint
        type takes one and it does not say one already; any other description as it is
        (an endpoint plugin's, or one that chose its own backlog).
    """
    kind = description.split(":", 1)[0].strip().lower()
    if kind not in _WITH_BACKLOG or _BACKLOG_ARGUMENT.search(description):
        return description
    return f"{description}:backlog={backlog}"
