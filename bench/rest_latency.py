"""
REST latency: R clients call a real C{twistd -n gameproto} node's REST API back to back,
with the node idle and then under the load of the other benchmarks, phase by phase, in
one run; with --compare, the same against a node run from another checkout, alternated.

The node runs with C{--store memory:} and no sign-up, login or creation limits.  Each
REST client has its own user and one persistent HTTP connection, and repeats one cycle:
C{GET /healthz}, C{GET /api/ongoing_matches/}, C{GET /api/users/}, C{GET /api/arenas/},
C{GET /api/users/{name}/}, C{POST /api/ongoing_matches/} then C{DELETE} of that match,
and every --login-every cycles C{POST /api/token/} then C{DELETE /api/token/} of the
new token.  It prints requests/s and latency p50/p90/p99/max per route and for all of
them but the login (a scrypt hash, tens of ms on a thread: its own row), for each phase:

- C{idle}: nothing else;
- C{arena}: K arenas × 4 bots as bench/arena_load.py drives them;
- C{chat}: Socket.IO members in one room as bench/chat_fanout.py drives them, its
  senders at --chat-rate messages/s each (well under saturation by default);
- C{match}: M matches × (2 players + S spectators) as bench/match_load.py drives them.

The background load starts, runs --warmup seconds, then the REST clients run for
--duration seconds; the load's own rate over that window is printed beside, so that a
before/after comparison shows the load was the same.  The lists grow with the phases'
users and games, so compare a phase with the same phase of another server, not with
another phase.

    .venv/bin/python bench/rest_latency.py --duration 10
    git worktree add /tmp/before COMMIT
    .venv/bin/python bench/rest_latency.py --duration 10 --compare /tmp/before --rounds 2

--pythonpath DIR runs the node from another checkout (PYTHONPATH=DIR; the default is
this one), --compare DIR adds a second node from DIR ("before"); the last lines are then
after/before ratios of p50 and p99 per phase.  The REST clients run in their own process
(this script with --rest-clients), so the background clients, which share this one,
do not delay them; all three processes share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from twisted.internet import defer, task
from twisted.web.client import Agent, HTTPConnectionPool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import arena_load, chat_fanout, match_load  # noqa: E402
from bench.common import UNTHROTTLED, percentile  # noqa: E402
from gameproto.client.rest import RestClient  # noqa: E402
from tests.nodes import Lines, Node, http_json  # noqa: E402

PASSWORD = "restbench1"
PHASES = ("idle", "arena", "chat", "match")
# A login hashes the password with scrypt (tens of ms of CPU, on a thread): it is shown
# on its own row, and left out of "all" lest the p99 of everything be the login's.
LOGIN = "POST /api/token/"

# -- the REST clients (run in their own process with --rest-clients) -------------


class Recorder:
    """Latencies (ms) and failures per route, and one failure to show."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.sample: str | None = None

    async def call(self, api: RestClient, route: str, method: str, path: str,
                   expected: int, body: Any = None) -> Any:
        """One request, timed; its answer if it was C{expected}, else C{None}."""
        started = time.perf_counter()
        status, answer = await api.call(method, path, body)
        self.latencies.setdefault(route, []).append(1000 * (time.perf_counter() - started))
        if status == expected:
            return answer if answer is not None else {}
        self.errors[route] = self.errors.get(route, 0) + 1
        self.sample = self.sample or f"{method} {path}: {status} {answer!r}"
        return None


async def rest_client(reactor: Any, base: str, name: str, token: str, login_every: int,
                      done: Any, recorder: Recorder) -> None:
    """One user's cycle of calls, back to back on one persistent connection, until done()."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 1
    api = RestClient(reactor, base, token)
    api.agent = Agent(reactor, pool=pool)
    anonymous = RestClient(reactor, base)
    anonymous.agent = api.agent
    cycle = 0
    while not done():
        await recorder.call(anonymous, "GET /healthz", "GET", "/healthz", 200)
        await recorder.call(api, "GET /api/ongoing_matches/", "GET", "/api/ongoing_matches/", 200)
        await recorder.call(api, "GET /api/users/", "GET", "/api/users/", 200)
        await recorder.call(api, "GET /api/arenas/", "GET", "/api/arenas/", 200)
        await recorder.call(api, "GET /api/users/{name}/", "GET", f"/api/users/{name}/", 200)
        match = await recorder.call(api, "POST /api/ongoing_matches/", "POST",
                                    "/api/ongoing_matches/", 201)
        if match is not None:
            await recorder.call(api, "DELETE /api/ongoing_matches/{id}/", "DELETE",
                                f"/api/ongoing_matches/{match['id']}/", 204)
        cycle += 1
        if cycle % login_every == 0:
            login = await recorder.call(anonymous, LOGIN, "POST", "/api/token/",
                                        200, {"username": name, "password": PASSWORD})
            if login is not None:
                fresh = RestClient(reactor, base, login["token"])
                fresh.agent = api.agent
                await recorder.call(fresh, "DELETE /api/token/", "DELETE", "/api/token/", 204)
    await pool.closeCachedConnections()


async def rest_clients(reactor: Any, options: argparse.Namespace) -> None:
    """Run every client for --duration seconds; print their figures as one JSON line."""
    users = [pair.split(":", 1) for pair in options.users.split(",")]
    recorder = Recorder()
    stop_at = time.perf_counter() + options.duration
    started = time.perf_counter()
    await defer.gatherResults([
        defer.ensureDeferred(rest_client(reactor, options.rest_clients, name, token,
                                         options.login_every,
                                         lambda: time.perf_counter() >= stop_at, recorder))
        for name, token in users])
    print(json.dumps({"elapsed": time.perf_counter() - started, "latencies": recorder.latencies,
                      "errors": recorder.errors, "sample": recorder.sample}), flush=True)


# -- the background loads (in this process) --------------------------------------


class Idle:
    """No load: the REST clients alone."""

    unit = ""

    async def start(self, reactor: Any, node: Node, options: argparse.Namespace) -> None:
        pass

    def count(self) -> int:
        return 0

    async def stop(self, reactor: Any, node: Node, token: str) -> None:
        pass


class Arenas(Idle):
    """bench/arena_load.py's arenas: K × 4 bots, one command a tick each."""

    unit = "arena replies/s"

    async def start(self, reactor: Any, node: Node, options: argparse.Namespace) -> None:
        self.controllers, self.bots = await arena_load.gameproto_arenas(
            reactor, node, options.arenas, options.tick_ms)
        for bot in self.bots:
            bot.measuring = True

    def count(self) -> int:
        return sum(bot.replies for bot in self.bots)

    async def stop(self, reactor: Any, node: Node, token: str) -> None:
        for socket in [bot.socket for bot in self.bots] + self.controllers:
            socket.dropConnection(abort=True)
        # An arena outlives its sockets and would tick through the later phases.
        _, arenas = await http_json("GET", node.url("/api/arenas/?limit=1000"), token=token)
        for arena in arenas:
            if arena["id"].startswith("bench-"):
                owner = await arena_load.user(node, arena["owner"])
                status, body = await http_json("DELETE", node.url(f"/api/arenas/{arena['id']}/"),
                                               token=owner)
                assert status == 204, (status, body)


class Chat(Idle):
    """bench/chat_fanout.py's members in one room, a few of them sending."""

    unit = "chat deliveries/s"

    async def start(self, reactor: Any, node: Node, options: argparse.Namespace) -> None:
        self.bench = chat_fanout.Bench()
        self.members = [
            await self.bench.join(reactor, node.port, f"member{i}", chat_fanout.member_address(i))
            for i in range(options.chat_members)]
        self.stopping = False
        self.senders = [
            defer.ensureDeferred(chat_fanout.send_until(
                reactor, member, lambda: self.stopping, options.chat_rate))
            for member in self.members[:options.chat_senders]]

    def count(self) -> int:
        return sum(member.received for member in self.members)

    async def stop(self, reactor: Any, node: Node, token: str) -> None:
        self.stopping = True
        await defer.gatherResults(self.senders)
        for member in self.members:
            member.dropConnection(abort=True)


class Matches(Idle):
    """bench/match_load.py's matches: M × (2 players + S spectators), started."""

    unit = "match statuses/s"

    async def start(self, reactor: Any, node: Node, options: argparse.Namespace) -> None:
        self.sockets = await match_load.gameproto_load(reactor, node, options.matches,
                                                       options.spectators)
        self.meter = match_load.Meter()
        for index, socket in enumerate(self.sockets):
            self.meter.attach(socket, index % (2 + options.spectators) < 2)
        self.meter.counting = True

    def count(self) -> int:
        return self.meter.statuses

    async def stop(self, reactor: Any, node: Node, token: str) -> None:
        for socket in self.sockets:
            socket.dropConnection(abort=True)


LOADS = {"idle": Idle, "arena": Arenas, "chat": Chat, "match": Matches}

# -- one node, every phase -----------------------------------------------------------


def node_env(pythonpath: str) -> dict[str, str]:
    """This environment without GAMEPROTO_* (as tests.nodes does), the node's code from C{pythonpath}."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEPROTO_")}
    env["PYTHONPATH"] = pythonpath
    return env


async def rest_phase(reactor: Any, node: Node, users: list[tuple[str, str]],
                     options: argparse.Namespace) -> dict[str, Any]:
    """The REST clients' process against C{node}; its figures."""
    lines = Lines()
    argv = [sys.executable, os.path.abspath(__file__), "--rest-clients", node.http,
            "--users", ",".join(f"{name}:{token}" for name, token in users),
            "--duration", str(options.duration), "--login-every", str(options.login_every)]
    reactor.spawnProcess(lines, sys.executable, argv, env=os.environ)
    await lines.ended
    try:
        figures: dict[str, Any] = json.loads(lines.lines[-1])
    except (IndexError, ValueError):
        raise RuntimeError("the REST clients failed:\n" + "\n".join(lines.lines)
                           + lines.err.decode())
    return figures


async def run_node(reactor: Any, label: str, pythonpath: str,
                   options: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """One node from C{pythonpath} through every phase; the REST figures of each."""
    node = Node("--store", "memory:", "--connections-per-address", "100000", *UNTHROTTLED,
                env=node_env(pythonpath))
    await node.start()
    results: dict[str, dict[str, Any]] = {}
    try:
        api = RestClient(reactor, node.http)
        users = []
        for i in range(options.clients):
            await api.sign_up(f"rest{i}", PASSWORD)
            users.append((f"rest{i}", await api.token(f"rest{i}", PASSWORD)))
        for phase in options.phases:
            load = LOADS[phase]()
            await load.start(reactor, node, options)
            await task.deferLater(reactor, options.warmup, lambda: None)
            before, started = load.count(), time.perf_counter()
            figures = await rest_phase(reactor, node, users, options)
            figures["load"] = (load.count() - before) / (time.perf_counter() - started)
            await load.stop(reactor, node, users[0][1])
            results[phase] = figures
            report(label, phase, figures, load.unit)
    finally:
        await node.stop()
    return results


def summary(latencies: list[float], elapsed: float) -> str:
    return (f"{len(latencies) / elapsed:>8,.0f} "
            + " ".join(f"{percentile(latencies, f, float('nan')):>8.2f}"
                       for f in (0.5, 0.9, 0.99, 1.0)))


def report(label: str, phase: str, figures: dict[str, Any], unit: str) -> None:
    load = f"  ({figures['load']:,.0f} {unit})" if unit else ""
    print(f"{label} {phase}{load}")
    print(f"  {'route':<34} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'errors':>6}")
    latencies, errors, elapsed = figures["latencies"], figures["errors"], figures["elapsed"]
    for route in sorted(latencies):
        print(f"  {route:<34} {summary(latencies[route], elapsed)} {errors.get(route, 0):>6}")
    print(f"  {'all but the login':<34} {summary(overall(figures), elapsed)} "
          f"{sum(errors.values()):>6}")
    if figures["sample"]:
        print(f"  first error: {figures['sample']}")
    sys.stdout.flush()


def overall(figures: dict[str, Any]) -> list[float]:
    """Every latency of a phase but the logins'."""
    return [value for route, values in figures["latencies"].items() if route != LOGIN
            for value in values]


def logins(figures: dict[str, Any]) -> list[float]:
    return list(figures["latencies"].get(LOGIN, []))


def revision(directory: str) -> str:
    """C{directory}'s git commit, for the header."""
    found = subprocess.run(["git", "-C", directory, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True)
    changed = subprocess.run(["git", "-C", directory, "status", "--porcelain", "--",
                              "gameproto", "twisted"], capture_output=True, text=True)
    return (found.stdout.strip() or "?") + (" with changes" if changed.stdout.strip() else "")


async def run(reactor: Any, options: argparse.Namespace) -> None:
    servers = [("after" if options.compare else "gameproto", options.pythonpath)]
    if options.compare:
        servers.append(("before", options.compare))
    print(f"# rest_latency: {options.clients} REST clients, {options.duration:g} s a phase "
          f"after {options.warmup:g} s of warm-up, phases {','.join(options.phases)}, "
          f"login every {options.login_every} cycles; arena K={options.arenas} "
          f"(tick {options.tick_ms} ms), chat {options.chat_members} members with "
          f"{options.chat_senders} senders at {options.chat_rate:g}/s, match "
          f"M={options.matches} S={options.spectators}; {options.rounds} round(s) of "
          + ", ".join(f"{label} {path} ({revision(path)})" for label, path in servers)
          + "; load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    results: dict[str, list[dict[str, dict[str, Any]]]] = {label: [] for label, _ in servers}
    for round_ in range(options.rounds):
        for label, path in servers:
            results[label].append(await run_node(reactor, f"{label:<9} round {round_ + 1}",
                                                 path, options))
    print("# every round pooled: all routes but the login, then the login")
    print(f"{'server':<9} {'phase':<6} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'login p50':>10} {'p99':>8}")
    pooled: dict[tuple[str, str], list[float]] = {}
    for label, _ in servers:
        for phase in options.phases:
            rounds = results[label]
            pooled[label, phase] = [v for r in rounds for v in overall(r[phase])]
            login = [v for r in rounds for v in logins(r[phase])]
            elapsed = sum(r[phase]["elapsed"] for r in rounds)
            print(f"{label:<9} {phase:<6} {summary(pooled[label, phase], elapsed)} "
                  f"{percentile(login, 0.5, float('nan')):>10.2f} "
                  f"{percentile(login, 0.99, float('nan')):>8.2f}")
    if options.compare:
        for phase in options.phases:
            ratios = []
            for fraction in (0.5, 0.99):
                each = ", ".join(
                    f"{percentile(overall(a[phase]), fraction) / percentile(overall(b[phase]), fraction):.2f}"
                    for a, b in zip(results["after"], results["before"]))
                whole = (percentile(pooled["after", phase], fraction)
                         / percentile(pooled["before", phase], fraction))
                ratios.append(f"p{round(fraction * 100)} {whole:.2f} (rounds: {each})")
            print(f"after / before {phase:<6} all but the login: " + "  ".join(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-R", "--clients", type=int, default=4, help="REST clients")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds a phase")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of background load before the REST clients start")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated, among {','.join(PHASES)}")
    parser.add_argument("--login-every", type=int, default=50,
                        help="a client logs in (and out) once every this many cycles")
    parser.add_argument("-K", "--arenas", type=int, default=10,
                        help="arena phase: arenas of 4 bots (K=20 saturates 2 cores, "
                             "see bench/RESULTS.md)")
    parser.add_argument("--tick-ms", type=int, default=20, help="arena phase: the arenas' tick")
    parser.add_argument("--chat-members", type=int, default=40, help="chat phase: members")
    parser.add_argument("--chat-senders", type=int, default=4, help="chat phase: senders")
    parser.add_argument("--chat-rate", type=float, default=50.0,
                        help="chat phase: messages/s of each sender")
    parser.add_argument("-M", "--matches", type=int, default=20, help="match phase: matches")
    parser.add_argument("-S", "--spectators", type=int, default=5,
                        help="match phase: spectators per match")
    parser.add_argument("--pythonpath", default=ROOT, metavar="DIR",
                        help="run the node from this checkout (default: this one)")
    parser.add_argument("--compare", metavar="DIR",
                        help="also run a node from this checkout ('before'), alternated")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --compare, alternate the two nodes this many times")
    parser.add_argument("--rest-clients", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--users", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.rest_clients:
        task.react(lambda reactor: defer.ensureDeferred(rest_clients(reactor, options)))
        return
    options.phases = [p for p in options.phases.split(",") if p]
    unknown = set(options.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    options.pythonpath = os.path.abspath(options.pythonpath)
    if options.compare:
        options.compare = os.path.abspath(options.compare)
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
