"""
Drives the gameproto chat and the conformance server with the python-socketio
client and prints what it saw as one JSON object.

Usage: python python_client.py CHAT_URL CONFORMANCE_URL MODE ROOM
MODE: default (polling, then upgrade) | websocket | polling.
"""

import json
import sys
import threading

import socketio

chat_url, conformance_url, mode, room = sys.argv[1:5]
transports = None if mode == "default" else [mode]
WAIT = 10.0
result: dict = {}


class Client:
    def __init__(self, url: str, auth: dict, namespaces: list[str] | None = None) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.received: list = []
        self.events: dict[str, list] = {}
        self.changed = threading.Condition()
        self.sio.on("message", self._on_message)
        for event in ("auth", "message-back", "connect_error"):
            self.sio.on(event, self._recorder(event))
        self.sio.connect(url, auth=auth, transports=transports, namespaces=namespaces, wait_timeout=WAIT)

    def _on_message(self, message: dict) -> None:
        with self.changed:
            self.received.append(message)
            self.changed.notify_all()

    def _recorder(self, event: str):
        def record(*args):
            with self.changed:
                self.events.setdefault(event, []).append(args)
                self.changed.notify_all()

        return record

    def wait_for(self, test) -> dict:
        with self.changed:
            if not self.changed.wait_for(lambda: any(test(m) for m in self.received), WAIT):
                raise TimeoutError("message not received")
            return next(m for m in self.received if test(m))

    def wait_event(self, event: str) -> tuple:
        with self.changed:
            if not self.changed.wait_for(lambda: event in self.events, WAIT):
                raise TimeoutError(f"{event} not received")
            return self.events[event][0]


def says(text: str):
    return lambda m: m == {"from": "Server", "message": text}


def chat() -> None:
    alice = Client(chat_url, {"room": room})
    bob = Client(chat_url, {"room": room})
    result["registerAlice"] = alice.sio.call("register", "alice", timeout=WAIT)
    result["aliceSawOwnJoin"] = alice.wait_for(says("alice has joined the chat"))["message"]
    result["registerDuplicate"] = bob.sio.call("register", "ALICE", timeout=WAIT)
    result["registerBob"] = bob.sio.call("register", "bob", timeout=WAIT)
    alice.wait_for(says("bob has joined the chat"))
    result["sendAck"] = alice.sio.call(
        "message", {"from": "mallory", "message": "hello"}, timeout=WAIT
    )
    result["bobReceived"] = bob.wait_for(lambda m: m.get("message") == "hello")
    result["aliceReceived"] = alice.wait_for(lambda m: m.get("message") == "hello")
    result["emptyAck"] = alice.sio.call("message", {"message": ""}, timeout=WAIT)
    lurker = Client(chat_url, {"room": room})
    result["unregisteredAck"] = lurker.sio.call("message", {"message": "x"}, timeout=WAIT)
    lurker.sio.disconnect()
    result["transport"] = alice.sio.transport()
    alice.sio.disconnect()
    result["leave"] = bob.wait_for(says("alice left the chat"))
    refused = Client.__new__(Client)
    try:
        refused.__init__(chat_url, {"room": "not a room"})
    except socketio.exceptions.ConnectionError:
        # The refusal's data reaches the connect_error handler, not the exception.
        result["invalidRoom"] = refused.wait_event("connect_error")[0]["message"]
    bob.sio.disconnect()


def conformance() -> None:
    client = Client(conformance_url, {"token": "t"}, namespaces=["/", "/custom"])
    result["auth"] = client.wait_event("auth")[0]
    client.sio.emit("message", ("text", b"\x01\x02\x03"))
    text, data = client.wait_event("message-back")
    result["binaryBack"] = {"text": text, "isBuffer": isinstance(data, bytes), "bytes": list(data)}
    first, second = client.sio.call("message-with-ack", (1, {"b": b"\x09"}), timeout=WAIT)
    result["ackArgs"] = [first, isinstance(second["b"], bytes), list(second["b"])]
    result["conformanceTransport"] = client.sio.transport()
    client.sio.disconnect()


try:
    chat()
    conformance()
except Exception as e:  # reported to the test, which shows it
    result["error"] = repr(e)
print(json.dumps(result), flush=True)
sys.exit(1 if "error" in result else 0)
