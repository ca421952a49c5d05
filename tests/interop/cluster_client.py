"""
Two python-socketio clients on two gameproto nodes sharing one Redis, in one room.

Usage: python cluster_client.py NODE_A_URL NODE_B_URL ROOM MODE DEADLINE

Prints one JSON line with what the clients saw, then the line READY.  Then, by MODE:
- death: the caller kills node A; this prints a last JSON line saying whether bob
  (on node B) received the leave message of alice (who was on node A) within
  DEADLINE seconds;
- outage: the caller restarts Redis and writes a line to stdin; alice then sends a
  message every 0.2 s until bob receives one, and this prints whether one arrived
  within DEADLINE seconds.
"""

import json
import sys
import threading

import socketio

node_a, node_b, room, mode = sys.argv[1:5]
WAIT = 10.0
# How long the last step may take: the test's documented limit with its slack.
DEADLINE = float(sys.argv[5])


class Member:
    def __init__(self, url: str) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.received: list = []
        self.changed = threading.Condition()
        self.sio.on("message", self._on_message)
        self.sio.connect(url, auth={"room": room}, wait_timeout=WAIT)

    def _on_message(self, message: dict) -> None:
        with self.changed:
            self.received.append(message)
            self.changed.notify_all()

    def wait_for(self, expected: dict, timeout: float = WAIT) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: expected in self.received, timeout)

    def call(self, event: str, data: object) -> object:
        return self.sio.call(event, data, timeout=WAIT)


result: dict = {}
alice = Member(node_a)
bob = Member(node_b)
result["alice"] = alice.call("register", "alice")
result["aliceOnB"] = bob.call("register", "ALICE")
result["bob"] = bob.call("register", "bob")
result["aliceSawBobJoin"] = alice.wait_for({"from": "Server", "message": "bob has joined the chat"})
result["ackAtoB"] = alice.call("message", {"message": "hi from A"})
result["bobGotA"] = bob.wait_for({"from": "alice", "message": "hi from A"})
result["ackBtoA"] = bob.call("message", {"message": "hi from B", "from": "mallory"})
result["aliceGotB"] = alice.wait_for({"from": "bob", "message": "hi from B"})
print(json.dumps(result), flush=True)
print("READY", flush=True)

if mode == "death":
    left = bob.wait_for({"from": "Server", "message": "alice left the chat"}, DEADLINE)
    print(json.dumps({"leftSeen": left}), flush=True)
else:
    sys.stdin.readline()
    arrived = False
    for n in range(int(DEADLINE / 0.2)):
        alice.sio.emit("message", {"message": f"after {n}"})
        with bob.changed:
            arrived = bob.changed.wait_for(
                lambda: any(m.get("message", "").startswith("after") for m in bob.received), 0.2)
        if arrived:
            break
    print(json.dumps({"arrived": arrived}), flush=True)
    alice.sio.disconnect()
bob.sio.disconnect()
