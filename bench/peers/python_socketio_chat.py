"""
The chat of docs/chat.md on python-socketio's server with aiohttp: the peer that
bench/chat_fanout.py measures gameproto against.  Same path (/socket.io/), same
events, same acks and the same order: a `register` ack before the join
announcement, a `message` ack after the room has been sent the message.

It needs the python-socketio server and aiohttp, which gameproto itself does not
use; install them into the venv for the benchmark only:

    .venv/bin/pip install python-socketio aiohttp

    .venv/bin/python bench/peers/python_socketio_chat.py --port 0

prints `listening on 127.0.0.1:PORT` once it serves (the line the benchmark waits
for), and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import unicodedata
from typing import Any

try:
    import socketio
    from aiohttp import web
except ImportError as e:  # the benchmark reports this line and skips the peer
    print(
        f"python_socketio_chat.py needs python-socketio and aiohttp ({e}): "
        ".venv/bin/pip install python-socketio aiohttp",
        file=sys.stderr,
    )
    sys.exit(3)

DEFAULT_ROOM = "lobby"
ROOM_PATTERN = re.compile(r"[A-Za-z0-9:_.-]{1,64}")
MAX_MESSAGE_LENGTH = 4000
MAX_NAME_LENGTH = 32
SERVER_NAME = "Server"
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def normalise_name(raw: object) -> str | None:
    """The name rules of docs/chat.md: NFKC, stripped, 1-32 code points, ..."""
    if not isinstance(raw, str):
        return None
    name = unicodedata.normalize("NFKC", raw).strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        return None
    if any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in name):
        return None
    if name.casefold() == SERVER_NAME.casefold():
        return None
    return name


class Chat:
    """The chat's state and handlers on one python-socketio AsyncServer."""

    def __init__(self, sio: Any) -> None:
        self.sio = sio
        # sid -> {"room": str, "name": str (once registered)}
        self.members: dict[str, dict[str, str]] = {}
        # room -> casefolded names taken there
        self.names: dict[str, set[str]] = {}
        sio.on("connect", self.connect)
        sio.on("register", self.register)
        sio.on("message", self.message)
        sio.on("disconnect", self.disconnect)

    async def connect(self, sid: str, environ: Any, auth: Any = None) -> None:
        # No auth payload means the lobby; one that is not an object names no room.
        auth = {} if auth is None else auth
        room = auth.get("room", DEFAULT_ROOM) if isinstance(auth, dict) else None
        if not isinstance(room, str) or not ROOM_PATTERN.fullmatch(room):
            # Sent as CONNECT_ERROR {"message": "invalid room"}, as gameproto does.
            raise socketio.exceptions.ConnectionRefusedError("invalid room")
        self.members[sid] = {"room": room}
        await self.sio.enter_room(sid, room)

    async def register(self, sid: str, raw: Any = None, *ignored: Any) -> bool:
        member = self.members.get(sid)
        if member is None or "name" in member:
            return False
        name = normalise_name(raw)
        if name is None:
            return False
        taken = self.names.setdefault(member["room"], set())
        if name.casefold() in taken:
            return False
        taken.add(name.casefold())
        member["name"] = name
        # The ack goes out when this handler returns; the announcement after it, so a
        # client that starts listening in its ack callback still sees its own arrival.
        asyncio.get_running_loop().create_task(
            self.announce(member["room"], f"{name} has joined the chat")
        )
        return True

    async def message(self, sid: str, body: Any = None, *ignored: Any) -> bool:
        member = self.members.get(sid)
        if member is None or "name" not in member or not isinstance(body, dict):
            return False
        text = body.get("message")
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_MESSAGE_LENGTH:
            return False
        await self.sio.emit("message", {"from": member["name"], "message": text}, room=member["room"])
        return True  # acked after the room has been sent the message

    async def disconnect(self, sid: str, *reason: Any) -> None:
        member = self.members.pop(sid, None)
        if member is None or "name" not in member:
            return
        self.names.get(member["room"], set()).discard(member["name"].casefold())
        await self.announce(member["room"], f"{member['name']} left the chat")

    async def announce(self, room: str, text: str) -> None:
        await self.sio.emit("message", {"from": SERVER_NAME, "message": text}, room=room)


async def serve(host: str, port: int) -> None:
    # The official server's defaults, as gameproto's: pings 25 s / 20 s, 1 MB payloads.
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*", max_http_buffer_size=1_000_000)
    Chat(sio)
    app = web.Application()
    sio.attach(app, socketio_path="/socket.io/")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()
    asyncio.run(serve(options.host, options.port))


if __name__ == "__main__":
    main()
