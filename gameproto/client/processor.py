"""
A processor WebSocket client (C{/ws/processor/}) on Autobahn's Twisted client, for tools
and tests.

L{connect} opens the endpoint with a token (or none, against a server started with
C{--processor-anonymous}) and returns a L{ProcessorClient} once the WebSocket is open.
L{ProcessorClient.run} does the whole lifecycle — wait for C{ready}, send the context, wait
for C{ready}, send the code, collect everything until the server closes — and returns a
L{RunOutcome}.  With the client engine, C{on_command} answers each C{command} message: it
gets the command's C{message} and returns the reply (or a Deferred of it), sent back as a
C{result} with the command's id::

    from twisted.internet import defer, task
    from gameproto.client import processor

    async def main(reactor):
        client = await processor.connect(reactor, "ws://127.0.0.1:8000", token=KEY,
                                         on_command=lambda command: {"echo": command})
        outcome = await client.run("python", "from gameproto_sdk import send\\n"
                                             "print(send({'hello': 1}))\\n")
        print(outcome.stdout)        # ["{'echo': {'hello': 1}}"]
        print(outcome.end)           # {"type": "end", "message": "exited with code 0", ...}

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))

Every message is also queued: L{ProcessorClient.next_message} and
L{ProcessorClient.wait_for_type} take them in order (C{command} messages answered by
C{on_command} are not queued), and C{on_output} sees each output line as it arrives.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from gameproto.client.base import ConnectionClosed, JSONClient, Message, open_client

PATH = "/ws/processor/"

__all__ = ["ConnectionClosed", "ProcessorClient", "RunOutcome", "connect"]


@attrs.frozen
class RunOutcome:
    """
    Everything the server sent during one run, and how the connection ended.

    @ivar messages: every message, in order (commands included).
    @ivar close_code: the close code (1000 after an C{end}).
    """

    messages: tuple[Message, ...]
    close_code: int | None
    close_reason: str | None

    @property
    def output(self) -> list[tuple[str, str]]:
        """C{(stream, line)} of every C{output} message."""
        return [(m["stream"], m["message"]) for m in self.messages if m.get("type") == "output"]

    @property
    def stdout(self) -> list[str]:
        return [text for stream, text in self.output if stream == "stdout"]

    @property
    def stderr(self) -> list[str]:
        return [text for stream, text in self.output if stream == "stderr"]

    def errors(self, code: str | None = None) -> list[Message]:
        """The C{error} messages, of one C{code} (C{"SERVER_ERROR"}, ...) if given."""
        return [
            m for m in self.messages
            if m.get("type") == "error" and (code is None or m.get("code") == code)
        ]

    @property
    def end(self) -> Message | None:
        return next((m for m in self.messages if m.get("type") == "end"), None)

    @property
    def commands(self) -> list[Message]:
        return [m for m in self.messages if m.get("type") == "command"]


class ProcessorClient(JSONClient):
    """One processor connection; built by L{connect}."""

    _log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []
        self.on_command: Callable[[Any], Any] | None = None
        self.on_output: Callable[[str, str], Any] | None = None

    # -- sending ----------------------------------------------------------------

    def send_context(self, language: str, engine: str = "client", arena: str | None = None,
                     match: int | None = None, role: str | None = None) -> None:
        context: Message = {"type": "context", "language": language, "engine": engine}
        if arena is not None:
            context["arena"] = arena
        if match is not None:
            context["match"] = match
        if role is not None:
            context["role"] = role
        self.send(context)

    def send_code(self, code: str) -> None:
        """The program, as one raw text frame."""
        self.sendMessage(code.encode("utf-8"), isBinary=False)

    def send_result(self, call_id: int, reply: Any) -> None:
        self.send({"type": "result", "id": call_id, "message": reply})

    def stop(self) -> None:
        """Ask the server to stop the run."""
        self.send({"type": "stop"})

    # -- the lifecycle ------------------------------------------------------------

    async def run(
        self,
        language: str,
        code: str,
        engine: str = "client",
        arena: str | None = None,
        timeout: float | None = 60.0,
        match: int | None = None,
        role: str | None = None,
    ) -> RunOutcome:
        """
        Send the context and the code once the server asks for each, then wait for the
        connection to close (after C{end}, or an error that closes it).  If the server
        refuses the context or the code without closing, the connection is closed here and
        the outcome holds the error.
        """
        reply = await self.wait_for_type("ready", "error", timeout=timeout)
        if reply["type"] == "ready":
            self.send_context(language, engine, arena, match, role)
            reply = await self.wait_for_type("ready", "error", timeout=timeout)
        if reply["type"] == "ready":
            self.send_code(code)
            reply = await self.wait_for_type("started", "error", timeout=timeout)
        if reply["type"] == "error" and self.state == self.STATE_OPEN:
            # Refused (a bad context, code too large...).  If the refusal also closes
            # (busy, unauthenticated), the server's close frame answers this one and its
            # code is the one reported.
            self.close()
        return await self.outcome(timeout)

    async def outcome(self, timeout: float | None = 60.0) -> RunOutcome:
        """Wait for the connection to close; everything it received."""
        closed = self.closed
        if timeout is not None and not closed.called:
            closed = Deferred()
            self.closed.addBoth(lambda r: (closed.callback(r) if not closed.called else None, r)[1])
            closed.addTimeout(timeout, self.factory.reactor)
        await closed
        return RunOutcome(tuple(self.messages), self.close_code, self.close_reason)

    # -- receiving ----------------------------------------------------------------

    def accept(self, message: Message) -> bool:
        self.messages.append(message)
        kind = message.get("type")
        if kind == "command" and self.on_command is not None:
            self._answer(message)
            return False
        if kind == "output" and self.on_output is not None:
            self.on_output(message["stream"], message["message"])
        return self.keep_messages

    def _answer(self, command: Message) -> None:
        assert self.on_command is not None
        d = maybeDeferred(self.on_command, command["message"])

        def reply(value: Any) -> None:
            if self.state == self.STATE_OPEN:
                self.send_result(command["id"], value)

        d.addCallback(reply)
        d.addErrback(lambda f: self._log.failure("on_command failed", f))


async def connect(
    reactor: Any,
    base: str,
    token: str | None = None,
    on_command: Callable[[Any], Any] | None = None,
    on_output: Callable[[str, str], Any] | None = None,
    timeout: float = 10.0,
) -> ProcessorClient:
    """
    Open C{/ws/processor/} on C{base} (C{ws://HOST:PORT}).  Fails with L{ConnectionClosed}
    if the handshake is refused.
    """
    client = await open_client(reactor, base.rstrip("/") + PATH, ProcessorClient, token,
                               timeout, maxMessagePayloadSize=0)
    client.on_command = on_command
    client.on_output = on_output
    return client
