"""
Chat fan-out: C Socket.IO clients in one room, spread over N real gameproto nodes that
share one Redis; S of them send messages as fast as acks come back; every message is
delivered to every member of the room, whichever node it is on.

Prints, for one node and for --nodes nodes (each run on a fresh redis-server and fresh
nodes): messages sent per second, deliveries per second (messages × members received),
and the delivery latency p50/p99 (send → receipt, same clock: clients share this process).

    .venv/bin/python bench/chat_fanout.py --nodes 2 --clients 40 --senders 4 --duration 10

The clients speak Engine.IO/Socket.IO over raw WebSocket (Autobahn), the same packets
the official clients send after their upgrade.  They all run in this one process, which
on a small machine can be the limit; the nodes and redis-server share the machine too.

Peer comparison (--peer, on by default when what it needs is there): the same room
and load driven by the official socket.io-client (npm, WebSocket transport, all
clients in one node process: bench/chat_fanout_clients.js) against one gameproto node
and then, in the same run, against the same chat on Node's official Socket.IO server
(bench/peers/node_socketio_chat.js, socket.io pinned by bench/peers/node's lock file)
and on python-socketio's server with aiohttp (bench/peers/python_socketio_chat.py).
The last lines are gameproto's ratios to each peer.  It needs node, `npm ci` in
tests/interop and in bench/peers/node, and the Python peer's packages, which
gameproto itself does not use (`make bench-deps` does all three):

    .venv/bin/pip install python-socketio aiohttp
    (cd bench/peers/node && npm ci)

    .venv/bin/python bench/chat_fanout.py --peer-only --clients 200 --senders 4 --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import time
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, protocol, task
from twisted.python.failure import Failure

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import percentile  # noqa: E402
from gameproto import wire  # noqa: E402
from gameproto.socketio.engineio import EngineIOConfig  # noqa: E402
from tests.nodes import Node, ServerProcess  # noqa: E402
from tests.redisserver import RedisServer  # noqa: E402

ROOM = "bench"
# Under the chat's default packet budget (1000 packets/s per client: per address for
# these members, which have no token): a benchmark measures delivery, not the rate
# limiter.  Each member connects from its own loopback address (member_address).
SENDER_RATE = 0.9 * EngineIOConfig().messages_per_second
ACK_TIMEOUT = 2.0
HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS_JS = os.path.join(HERE, "chat_fanout_clients.js")
PEER = os.path.join(HERE, "peers", "python_socketio_chat.py")
NODE_PEER = os.path.join(HERE, "peers", "node_socketio_chat.js")
NODE_PEER_MODULES = os.path.join(HERE, "peers", "node", "node_modules", "socket.io")
SOCKETIO_CLIENT = os.path.join(HERE, "..", "tests", "interop", "node_modules", "socket.io-client")


class Member(WebSocketClientProtocol):
    """One chat member over Engine.IO's WebSocket transport."""

    def onOpen(self) -> None:
        self.acks: dict[int, defer.Deferred[Any]] = {}
        self.next_ack = 0
        self.received = 0
        self.factory.bench.members.append(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        text = payload.decode()
        if text == "2":  # Engine.IO ping
            self.sendMessage(b"3")
        elif text.startswith("0"):  # Engine.IO open: join the room
            self.sendMessage(b"40" + wire.encode({"room": ROOM}))
        elif text.startswith("40"):
            self.factory.connected.callback(self)
        elif text.startswith("42"):
            event, body = wire.decode(text[2:])
            if event == "message" and body["from"] != "Server":
                self.received += 1
                sent = float(body["message"])
                self.factory.bench.latencies.append(time.perf_counter() - sent)
        elif text.startswith("43"):
            ack_id = int(text[2 : text.index("[")])
            self.acks.pop(ack_id).callback(wire.decode(text[text.index("[") :]))

    def call(self, event: str, *args: Any) -> defer.Deferred[Any]:
        self.next_ack += 1
        d: defer.Deferred[Any] = defer.Deferred()
        self.acks[self.next_ack] = d
        self.sendMessage(b"42" + str(self.next_ack).encode() + wire.encode([event, *args]))
        return d


def member_address(i: int) -> str:
    """Member C{i}'s own loopback address (all of 127.0.0.0/8 is the loopback)."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


class Bench:
    def __init__(self) -> None:
        self.members: list[Member] = []
        self.latencies: list[float] = []

    async def join(self, reactor: Any, port: int, name: str, address: str) -> Member:
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
        factory.protocol = Member
        factory.bench = self
        factory.connected = defer.Deferred()
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(address, 0))
        await endpoint.connect(factory)
        member: Member = await factory.connected
        assert (await member.call("register", name)) == [True]
        return member


async def send_until(reactor: Any, member: Member, done: Callable[[], bool],
                     rate: float = SENDER_RATE) -> tuple[int, int]:
    """
    Send messages from C{member} at C{rate} a second, each waiting for its ack, until
    C{done()} says to stop; C{(acknowledged, lost)}.

    The sender stays under its packet budget (past it the server drops packets, whose
    acks then never come), and gives up on an ack that does not come within
    ACK_TIMEOUT rather than waiting forever.
    """
    sent = lost = 0
    began = time.perf_counter()
    mine = 0
    while not done():
        ahead = mine / rate - (time.perf_counter() - began)
        if ahead > 0:
            await task.deferLater(reactor, ahead, lambda: None)
        ack = member.call("message", {"message": repr(time.perf_counter())})
        try:
            await ack.addTimeout(ACK_TIMEOUT, reactor)
            sent += 1
        except defer.TimeoutError:
            lost += 1
        mine += 1
    return sent, lost


async def run(reactor: Any, nodes: int, clients: int, senders: int, duration: float) -> dict[str, float]:
    redis = RedisServer()
    await redis.start()
    servers = [Node("--redis", redis.url) for _ in range(nodes)]
    try:
        ports = [await server.start() for server in servers]
        bench = Bench()
        members = [
            await bench.join(reactor, ports[i % nodes], f"user{i}", member_address(i))
            for i in range(clients)
        ]
        await task.deferLater(reactor, 1.0, lambda: None)  # joins settle everywhere
        for member in members:
            member.received = 0
        bench.latencies.clear()
        stop_at = time.perf_counter() + duration
        started = time.perf_counter()

        def done() -> bool:
            return time.perf_counter() >= stop_at

        counts = await defer.gatherResults(
            [defer.ensureDeferred(send_until(reactor, m, done)) for m in members[:senders]])
        sent = sum(mine for mine, _ in counts)
        lost = sum(missed for _, missed in counts)
        # Let the last messages reach every node before counting.
        await task.deferLater(reactor, 1.0, lambda: None)
        elapsed = time.perf_counter() - started
        delivered = sum(m.received for m in members)
        for member in members:
            member.sendClose()
        return {
            "sent": sent / elapsed,
            "delivered": delivered / elapsed,
            "expected": sent * clients / elapsed,
            "p50": percentile(bench.latencies, 0.5) * 1000,
            "p99": percentile(bench.latencies, 0.99) * 1000,
            "lost": lost,
        }
    finally:
        for server in servers:
            await server.stop()
        await redis.stop()


def peer_missing() -> str | None:
    """Why the peer comparison cannot run here, or C{None} if it can."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not os.path.isdir(SOCKETIO_CLIENT):
        return "socket.io-client is not installed: run `npm ci` in tests/interop"
    if not os.path.isdir(NODE_PEER_MODULES):
        return "socket.io is not installed for the Node peer: run `npm ci` in bench/peers/node"
    missing = [name for name in ("socketio", "aiohttp") if importlib.util.find_spec(name) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed for the python-socketio peer: "
                ".venv/bin/pip install python-socketio aiohttp")
    return None


class _Output(protocol.ProcessProtocol):
    """Collects a child's output until it exits."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


@dataclasses.dataclass(frozen=True)
class Load:
    """What the node clients do: how many, in how many rooms, over which transport."""

    clients: int
    senders: int
    duration: float
    transport: str = "websocket"
    rooms: int = 1


async def drive(reactor: Any, port: int, load: Load) -> dict[str, Any]:
    """Run bench/chat_fanout_clients.js against the chat on C{port}; its JSON figures."""
    node = shutil.which("node")
    assert node is not None
    output = _Output()
    argv = [node, CLIENTS_JS, f"http://127.0.0.1:{port}", str(load.clients), str(load.senders),
            str(load.duration), ROOM, load.transport, str(load.rooms)]
    reactor.spawnProcess(output, node, argv, env=os.environ)
    await output.ended
    try:
        figures: dict[str, Any] = json.loads(output.out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"the node clients failed:\n{output.out.decode()}{output.err.decode()}")
    if "error" in figures:
        raise RuntimeError(f"the node clients failed: {figures['error']}\n{output.err.decode()}")
    return figures


async def run_peer(reactor: Any, server: str, load: Load) -> dict[str, Any]:
    """One server (a fresh process) under the node clients' load."""
    if server == "gameproto":
        process: ServerProcess = Node("--store", "memory:")
    elif server == "node socket.io":
        node = shutil.which("node")
        assert node is not None
        process = ServerProcess([node, NODE_PEER, "--port", "0"])
    else:
        process = ServerProcess([sys.executable, PEER, "--port", "0"])
    port = await process.start()
    try:
        return await drive(reactor, port, load)
    finally:
        await process.stop()


# Each round runs the three servers in this order, one after the other.
SERVERS = ("gameproto", "node socket.io", "python-socketio")


def main(reactor: Any) -> defer.Deferred[None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=None,
                        help="compare with Node's socket.io and python-socketio under "
                             "socket.io-client load (default: when node and the peers' packages "
                             "are installed)")
    parser.add_argument("--peer-only", action="store_true",
                        help="only the peer comparison, not the --nodes one")
    parser.add_argument("--rounds", type=int, default=1,
                        help="peer comparison: alternate the three servers this many times")
    parser.add_argument("--transport", choices=("websocket", "polling"), default="websocket",
                        help="peer comparison: the clients' one transport")
    parser.add_argument("--rooms", type=int, default=1,
                        help="peer comparison: spread the members over this many rooms")
    options = parser.parse_args()
    missing = peer_missing()
    if (options.peer or options.peer_only) and missing:
        print(f"cannot compare with the peers: {missing}", file=sys.stderr)
        sys.exit(2)
    peer = missing is None if options.peer is None else options.peer
    if options.peer_only:
        peer = True

    async def nodes_comparison() -> None:
        print(f"# {options.clients} members in one room, {options.senders} senders, "
              f"{options.duration:g} s; every node on one redis-server")
        print(f"{'nodes':>5} {'sent/s':>9} {'delivered/s':>12} {'of expected':>12} "
              f"{'latency p50':>12} {'p99':>9}")
        for nodes in sorted({1, options.nodes}):
            r = await run(reactor, nodes, options.clients, options.senders, options.duration)
            print(f"{nodes:>5} {r['sent']:>9,.0f} {r['delivered']:>12,.0f} "
                  f"{r['delivered'] / r['expected']:>11.1%} {r['p50']:>9.2f} ms {r['p99']:>6.2f} ms")
            if r["lost"]:
                print(f"      {r['lost']} message(s) not acknowledged within {ACK_TIMEOUT:g} s")

    async def peer_comparison() -> None:
        load = Load(options.clients, options.senders, options.duration, options.transport,
                    options.rooms)
        where = "one room" if load.rooms == 1 else f"{load.rooms} rooms"
        print(f"# {load.clients} socket.io-client members ({load.transport}) in {where}, "
              f"{load.senders} senders, {load.duration:g} s; one server process; load average "
              + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        print(f"{'server':<16} {'sent/s':>9} {'delivered/s':>12} {'of expected':>12} "
              f"{'latency p50':>12} {'p99':>9}")
        rates: dict[str, list[float]] = {server: [] for server in SERVERS}
        for _ in range(options.rounds):
            for server in SERVERS:
                r = await run_peer(reactor, server, load)
                rates[server].append(r["delivered_per_s"])
                print(f"{server:<16} {r['sent_per_s']:>9,.0f} {r['delivered_per_s']:>12,.0f} "
                      f"{r['delivered'] / max(r['expected'], 1):>11.1%} {r['p50_ms']:>9.2f} ms "
                      f"{r['p99_ms']:>6.2f} ms", flush=True)
        ours = rates["gameproto"]
        for peer_name in SERVERS[1:]:
            theirs = rates[peer_name]
            each = ", ".join(f"{a / b:.2f}" for a, b in zip(ours, theirs) if b)
            print(f"gameproto / {peer_name}: deliveries/s {sum(ours) / sum(theirs):.2f}x "
                  f"(rounds: {each})")

    async def everything() -> None:
        if not options.peer_only:
            await nodes_comparison()
        if peer:
            await peer_comparison()
        elif missing:
            print(f"# no comparison with the peers: {missing}")

    return defer.ensureDeferred(everything())


if __name__ == "__main__":
    task.react(main)
