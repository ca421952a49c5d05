"""
Two python-socketio clients through a reverse proxy in front of gameproto nodes: alice
on the polling transport only, bob on WebSocket only, in one room.  Both reconnect by
themselves when their node dies.

Usage: python proxied_chat.py PROXY_URL ROOM

Prints one JSON line with what the clients saw, then READY; waits for a line on stdin
(the caller has killed the node serving them); then, once both clients are connected
again, they register new names (the old ones stay claimed until the dead node is
reaped) and talk again, and it prints a last JSON line.
"""

import json
import sys
import threading

import socketio

proxy, room = sys.argv[1:3]
WAIT = 10.0
RECONNECT_WAIT = 60.0


class Member:
    def __init__(self, transport: str) -> None:
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                   reconnection_delay_max=1.0)
        self.received: list = []
        self.connects = 0
        self.changed = threading.Condition()
        self.sio.on("message", self._on_message)
        self.sio.on("connect", self._on_connect)
        self.sio.connect(proxy, auth={"room": room}, transports=[transport],
                         wait_timeout=WAIT)
        self.transport = self.sio.transport()

    def _on_connect(self) -> None:
        with self.changed:
            self.connects += 1
            self.changed.notify_all()

    def _on_message(self, message: dict) -> None:
        with self.changed:
            self.received.append(message)
            self.changed.notify_all()

    def wait_for(self, expected: dict) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: expected in self.received, WAIT)

    def reconnected(self) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.connects >= 2 and self.sio.connected,
                                         RECONNECT_WAIT)

    def call(self, event: str, data: object) -> object:
        return self.sio.call(event, data, timeout=WAIT)


def talk(alice: Member, bob: Member, a: str, b: str) -> dict:
    seen = {"alice": alice.call("register", a), "bob": bob.call("register", b)}
    seen["ackAtoB"] = alice.call("message", {"message": f"hi from {a}"})
    seen["bobGotA"] = bob.wait_for({"from": a, "message": f"hi from {a}"})
    seen["ackBtoA"] = bob.call("message", {"message": f"hi from {b}"})
    seen["aliceGotB"] = alice.wait_for({"from": b, "message": f"hi from {b}"})
    seen["transports"] = [alice.sio.transport(), bob.sio.transport()]
    return seen


alice = Member("polling")
bob = Member("websocket")
print(json.dumps(talk(alice, bob, "alice", "bob")), flush=True)
print("READY", flush=True)
sys.stdin.readline()
after = {"reconnected": [alice.reconnected(), bob.reconnected()]}
after.update(talk(alice, bob, "alice2", "bob2"))
print(json.dumps(after), flush=True)
alice.sio.disconnect()
bob.sio.disconnect()
