"""
The web page in a real Chromium against a real C{twistd -n gameproto} process: sign-up,
a whole match played with the keyboard and watched, a reload mid-game, a server restart,
the chat, the arena viewer with bots, programs run from the editor, a phone-sized
viewport.  Every test fails on any page error or console error (tests/browser.py), and
writes screenshots of the views it visits (docs/web.md shows them).

Processor runs use their own uid range (61000-61015) so that they never meet the runs
of another server on this machine.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from gameproto.client import match as match_client
from gameproto.client.rest import RestClient
from tests.browser import PHONE, Browser, in_browser, screenshot
from tests.nodes import Node, ServerProcess, http_json

PASSWORD = "password1"
PROCESSOR_UIDS = "61000-61015"
EXAMPLE_BOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "examples", "arena_bot.py")
# The browser's own report of a request that failed because the server was away.
NETWORK_FAILURE = r"ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|WebSocket connection to .* failed"


# An init script: every WebSocket of a match the page opens, recorded in
# window.gameSockets as {url, sent, replays (the replay and replay_end messages), closed
# (the close code)}.
RECORD_GAME_SOCKETS = """
window.gameSockets = [];
window.WebSocket = class extends window.WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    if (!String(url).includes("/ws/game/")) return;
    const seen = { url: String(url), sent: [], replays: [], closed: null };
    window.gameSockets.push(seen);
    this.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (/^replay/.test(message.message_type || "")) seen.replays.push(message);
    });
    this.addEventListener("close", (event) => { seen.closed = event.code; });
    const send = this.send.bind(this);
    this.send = (data) => { seen.sent.push(JSON.parse(data)); send(data); };
  }
};
"""


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def sign_up(page: Any, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.locator("#me")).to_have_text(f"{username} · Elo 1000")


def lobby_row(page: Any, match_id: int) -> Any:
    return page.locator(f'#ongoing li[data-match-id="{match_id}"]')


def match_id_of(page: Any) -> int:
    page.wait_for_url(re.compile(r"#/match/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def drawn(page: Any, canvas: str) -> Any:
    """What the page last drew on a canvas (its data-drawn attribute)."""
    raw = page.locator(canvas).get_attribute("data-drawn")
    return json.loads(raw) if raw else None


def record_score(page: Any) -> None:
    """Record every text the Score status takes, in order, from now on."""
    page.evaluate("""() => {
        const score = document.getElementById("score");
        window.scores = [score.textContent];
        new MutationObserver(() => {
            if (window.scores[window.scores.length - 1] !== score.textContent)
                window.scores.push(score.textContent);
        }).observe(score, {childList: true, characterData: true, subtree: true});
    }""")


def hold_key(page: Any, key: str, until: str, shift: bool = False) -> None:
    """Hold C{key} (with Shift) until the JavaScript predicate C{until} holds."""
    if shift:
        page.keyboard.down("Shift")
    page.keyboard.down(key)
    try:
        page.wait_for_function(until, timeout=10_000)
    finally:
        page.keyboard.up(key)
        if shift:
            page.keyboard.up("Shift")


def paddle(side: str, test: str) -> str:
    """A predicate on the last drawn paddle position of C{side} (left, right)."""
    return (f"() => {{ const d = document.getElementById('pong').dataset.drawn;"
            f" return d && JSON.parse(d).{side} {test}; }}")


class BrowserTestCase(TestCase):
    timeout = 240
    node_options: tuple[str, ...] = ()

    def setUp(self) -> Deferred[None]:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.node = self.new_node()
        self.addCleanup(self.stop_node)
        return self.node.start().addCallback(lambda _: None)

    def new_node(self, port: int = 0) -> Node:
        return Node(
            "--port", f"tcp:{port}:interface=127.0.0.1",
            "--store", "sqlite:" + os.path.join(self.directory, "gameproto.sqlite3"),
            "--processor-uids", PROCESSOR_UIDS,
            *self.node_options,
            cwd=self.directory,
        )

    def stop_node(self) -> Deferred[Any]:
        return self.node.stop()

    @property
    def url(self) -> str:
        return self.node.http + "/"

    async def token(self, username: str) -> str:
        return await RestClient(reactor, self.node.http).token(username, PASSWORD)

    async def bots_in_lobby(self) -> int:
        """hana hosts a match, cole (ready) is its challenger, both Python clients: its id."""
        api = RestClient(reactor, self.node.http)
        tokens = {}
        for name in ("hana", "cole"):
            await api.sign_up(name, PASSWORD)
            tokens[name] = await api.token(name, PASSWORD)
        created = await api.as_user(tokens["hana"]).create_match()
        self.host = await match_client.connect(reactor, self.node.ws, tokens["hana"],
                                               created["id"], "host")
        self.challenger = await match_client.connect(reactor, self.node.ws, tokens["cole"],
                                                     created["id"], "challenger")
        for socket in (self.host, self.challenger):
            self.addCleanup(lambda s=socket: s.state == s.STATE_OPEN and s.dropConnection(abort=True))
        await self.host.wait_for(lambda f: f.get("challenger") == "cole", 10)
        self.challenger.command("ready")
        await self.host.wait_for(lambda f: f.get("challenger_ready") is True, 10)
        return created["id"]

    async def start_bots(self) -> None:
        # The challenger parks his paddle at the top: the ball, always served toward
        # him, misses it five times.
        self.challenger.keep_frames = False
        self.challenger.on_frame = lambda frame: (
            frame.get("message_type") == "status" and not frame["right_paddle_margin_reached"]
            and self.challenger.command("fup"))
        self.host.command("start_match")
        await self.host.wait_for_type("init", 10)


class PlayTests(BrowserTestCase):
    def test_sign_up_by_keyboard_and_form_errors(self) -> Deferred[None]:
        """
        The sign-up form is reached and used with the keyboard alone; a taken username
        and wrong credentials are shown next to the form in the API's words (the
        browser's report of those 400 answers is the only console error).
        """

        def scenario(browser: Browser) -> None:
            page = browser.page(self.url, "visitor")
            screenshot(page, "sign-in")
            for _ in range(12):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.id") == "auth-username":
                    break
            self.assertEqual(page.evaluate("document.activeElement.id"), "auth-username")
            page.keyboard.type("ann")
            page.keyboard.press("Tab")
            page.keyboard.type(PASSWORD)
            page.keyboard.press("Tab")  # Log in
            page.keyboard.press("Tab")  # Sign up
            self.assertEqual(page.evaluate("document.activeElement.textContent"), "Sign up")
            page.keyboard.press("Enter")
            expect(page.locator("#me")).to_have_text("ann · Elo 1000")
            page.keyboard.press("Tab")
            page.get_by_role("button", name="Log out").click()

            other = browser.page(self.url, "second visitor")
            with browser.tolerating("status of 400") as refused:
                other.get_by_label("Username").fill("ann")
                other.get_by_label("Password").fill(PASSWORD)
                other.get_by_role("button", name="Sign up").click()
                expect(other.locator("#auth-username-error")).to_have_text(
                    "a user with that username already exists")
                other.get_by_label("Password").fill("wrong password")
                other.get_by_role("button", name="Log in").click()
                expect(other.get_by_role("alert")).to_have_text(
                    "unable to log in with provided credentials")
                screenshot(other, "sign-in-error")
            self.assertEqual(len(refused), 2, refused)
            other.get_by_label("Password").fill(PASSWORD)
            other.get_by_role("button", name="Log in").click()
            expect(other.locator("#me")).to_have_text("ann · Elo 1000")

        return in_browser(scenario)

    def test_every_control_reachable_by_keyboard(self) -> Deferred[None]:
        """
        Tab reaches every control of each view, in the header, the view, the lobby and
        the chat; Escape then Tab leaves the code editor.
        """

        def tab_stops(page: Any, presses: int = 60) -> list[str]:
            """The ids of the elements Tab focuses, in order, once around the page."""
            page.locator("body").focus()
            seen: list[str] = []
            for _ in range(presses):
                if page.evaluate("!!document.activeElement.closest('.CodeMirror')"):
                    page.keyboard.press("Escape")
                page.keyboard.press("Tab")
                focused = page.evaluate("""() => {
                    const e = document.activeElement;
                    return e.closest('.CodeMirror') ? 'code-editor' : (e.id || e.textContent.trim());
                }""")
                if seen and focused == seen[0]:
                    break
                seen.append(focused)
            return seen

        def scenario(browser: Browser) -> None:
            page = browser.page(self.url, "ann")
            visitor = set(tab_stops(page))
            self.assertLessEqual({"auth-username", "auth-password", "log-in", "sign-up",
                                  "tab-play", "tab-arena", "tab-code"}, visitor)
            sign_up(page, "ann")
            home = set(tab_stops(page))
            self.assertLessEqual({"log-out", "create-match", "play-now", "chat-input",
                                  "chat-send", "chat-log"}, home)
            page.goto(self.url + "#/code")
            code = tab_stops(page)
            self.assertLessEqual({"code-language", "code-engine", "code-example",
                                  "code-load-example", "code-editor", "run", "output"}, set(code))
            self.assertLess(code.index("code-editor"), code.index("run"))
            page.get_by_label("Engine", exact=True).select_option("match")
            self.assertLessEqual({"code-match", "code-seat"}, set(tab_stops(page)))
            page.goto(self.url + "#/arena/default")
            arena = set(tab_stops(page))
            self.assertLessEqual({"arena-select", "arena-watch", "arena-create"}, arena)
            page.goto(self.url)
            page.get_by_role("button", name="Create match").click()
            expect(page.get_by_role("status", name="Match connection")).to_have_text("Connected")
            # The match's own room and the lobby's, in the chat beside the match.
            self.assertLessEqual({"room-view", "room-lobby", "chat-input"}, set(tab_stops(page)))

        return in_browser(scenario)

    def test_match_played_watched_and_resumed(self) -> Deferred[None]:
        """
        ann creates a match, bob joins it as challenger, cat watches; bob gets ready and
        ann starts; both steer with the keyboard; bob reloads mid-game and is back in
        his seat; the game is played to the end, both see the final score and their
        Elo change, the REST API agrees, and cat saw the same score sequence as ann.
        """

        def scenario(browser: Browser) -> dict[str, Any]:
            ann = browser.page(self.url, "ann")
            sign_up(ann, "ann")
            bob = browser.page(self.url, "bob")
            sign_up(bob, "bob")
            cat = browser.page(self.url, "cat")
            sign_up(cat, "cat")

            ann.get_by_role("button", name="Create match").click()
            match_id = match_id_of(ann)
            expect(ann.get_by_role("status", name="Score")).to_have_text("0 – 0")
            expect(ann.get_by_role("status", name="Match connection")).to_have_text("Connected")
            start = ann.get_by_role("button", name="Start")
            expect(start).to_be_disabled()
            expect(ann.locator("#start-reason")).to_have_text("Waiting for a challenger to join.")

            row = lobby_row(cat, match_id)
            expect(row).to_contain_text("ann vs open seat")
            row.get_by_role("button", name="Watch").click()
            expect(cat.get_by_role("status", name="Match connection")).to_have_text("Connected")
            expect(cat.locator("#match-role")).to_have_text("Watching.")
            self.assertEqual(cat.get_by_role("button", name="Ready").count(), 0)

            row = lobby_row(bob, match_id)
            expect(row).to_contain_text("ann vs open seat")
            screenshot(bob, "lobby")
            row.get_by_role("button", name="Join").click()
            expect(bob.locator("#match-role")).to_have_text("You are the challenger (right paddle).")
            expect(ann.locator("#start-reason")).to_have_text("Waiting for bob to be ready.")
            screenshot(ann, "match-lobby")
            bob.get_by_role("button", name="Ready").click()
            expect(start).to_be_enabled()
            record_score(ann)
            record_score(cat)
            start.focus()
            ann.keyboard.press("Enter")  # the Start button, by keyboard

            expect(ann.locator("#controls-hint")).to_be_visible()
            ann.wait_for_function("document.getElementById('pong').dataset.drawn !== undefined")
            # The challenger parks at the top and the host at the bottom: the ball is
            # served toward the challenger, who misses.
            hold_key(bob, "ArrowUp", paddle("right", "< 0.1"))
            hold_key(ann, "ArrowDown", paddle("left", "> 0.9"))
            expect(ann.locator("#controls-hint")).to_be_hidden()
            cat.wait_for_function(paddle("right", "< 0.1"))  # the spectator sees it too
            expect(ann.get_by_role("status", name="Score")).not_to_have_text("0 – 0", timeout=20_000)
            screenshot(ann, "match-playing")
            screenshot(cat, "match-watching")

            # A reload mid-game: bob is back in his seat and still steers.
            bob.reload()
            expect(bob.locator("#match-role")).to_have_text("You are the challenger (right paddle).")
            expect(bob.get_by_role("status", name="Match connection")).to_have_text("Connected")
            bob.wait_for_function(paddle("right", "< 0.1"))
            hold_key(bob, "ArrowDown", paddle("right", "> 0.12"), shift=True)
            hold_key(bob, "ArrowUp", paddle("right", "< 0.1"))

            for page in (ann, bob):
                expect(page.locator("#match-end")).to_be_visible(timeout=60_000)
            final = ann.get_by_role("status", name="Score").inner_text()
            self.assertEqual(bob.get_by_role("status", name="Score").inner_text(), final)
            expect(ann.locator("#end-title")).to_have_text(re.compile("You win!|You lose"))
            for page in (ann, bob):
                changes = page.locator("#end-elo").inner_text()
                self.assertIn("(+16)", changes)
                self.assertIn("(−16)", changes)
            screenshot(ann, "match-end")
            expect(cat.locator("#match-end")).to_be_visible()
            ann_scores = ann.evaluate("window.scores")
            cat_scores = cat.evaluate("window.scores")
            return {"match": match_id, "final": final, "ann": ann_scores, "cat": cat_scores,
                    "ann_title": ann.locator("#end-title").inner_text(),
                    "ann_me": ann.locator("#me").inner_text()}

        async def check(seen: dict[str, Any]) -> None:
            self.assertEqual(seen["ann"], seen["cat"])
            self.assertEqual(seen["ann"][0], "0 – 0")
            self.assertEqual(seen["ann"][-1], seen["final"])
            token = await self.token("ann")
            status, completed = await http_json(
                "GET", self.node.url(f"/api/completed_matches/{seen['match']}/"), token=token)
            self.assertEqual(status, 200)
            host, challenger = (int(n) for n in seen["final"].split(" – "))
            winner_is_host = completed["winner"] == "ann"
            self.assertEqual((completed["winner_score"], completed["loser_score"]),
                             (host, challenger) if winner_is_host else (challenger, host))
            self.assertEqual(completed["winner_score"], 5)
            self.assertEqual(seen["ann_title"], "You win!" if winner_is_host else "You lose: bob wins")
            ann_elo = completed["winner_elo_after_match" if winner_is_host else "loser_elo_after_match"]
            self.assertEqual(ann_elo, 1016 if winner_is_host else 984)
            self.assertEqual(seen["ann_me"], f"ann · Elo {ann_elo}")
            # One score per goal after 0 – 0, as the spectator saw them too.
            self.assertEqual(len(seen["ann"]), 1 + host + challenger)

        return in_browser(scenario).addCallback(lambda seen: ensureDeferred(check(seen)))

    def test_server_restart_in_the_lobby(self) -> Deferred[None]:
        """
        The server restarts while a match waits in its lobby: both players' pages say
        "Reconnecting", then reconnect on their own, and the match goes on.
        """

        def scenario(browser: Browser) -> None:
            ann = browser.page(self.url, "ann")
            sign_up(ann, "ann")
            bob = browser.page(self.url, "bob")
            sign_up(bob, "bob")
            ann.get_by_role("button", name="Create match").click()
            match_id = match_id_of(ann)
            lobby_row(bob, match_id).get_by_role("button", name="Join").click()
            expect(ann.locator("#start-reason")).to_have_text("Waiting for bob to be ready.")

            with browser.tolerating(NETWORK_FAILURE):
                browser.call(self.restart_begin)
                for page in (ann, bob):
                    expect(page.get_by_role("status", name="Match connection")).to_contain_text(
                        "Reconnecting")
                    expect(page.get_by_role("status", name="Chat connection")).to_contain_text(
                        re.compile("Reconnecting|Disconnected|Cannot reach"))
                screenshot(ann, "reconnecting")
                browser.call(self.restart_end)
                for page in (ann, bob):
                    expect(page.get_by_role("status", name="Match connection")).to_have_text(
                        "Connected", timeout=20_000)
                expect(ann.locator("#start-reason")).to_have_text(
                    "Waiting for bob to be ready.", timeout=20_000)
                expect(ann.get_by_role("status", name="Chat connection")).to_have_text(
                    "Connected to match " + str(match_id), timeout=20_000)
            bob.get_by_role("button", name="Ready").click()
            expect(ann.get_by_role("button", name="Start")).to_be_enabled()

        return in_browser(scenario)

    async def restart_begin(self) -> None:
        self.port = self.node.port
        self.assertEqual(await self.node.stop(), 0)

    async def restart_end(self) -> None:
        self.node = self.new_node(self.port)
        await self.node.start()


class MatchmakingTests(BrowserTestCase):
    def test_play_now_pairs_two_users(self) -> Deferred[None]:
        """
        ann and bob each press "Play now": ann searches until bob queues too, then both
        pages open the same match, ann (who waited longer) as its host and bob as its
        challenger; bob gets ready, ann starts, and the game runs.
        """

        def scenario(browser: Browser) -> int:
            ann = browser.page(self.url, "ann")
            sign_up(ann, "ann")
            bob = browser.page(self.url, "bob")
            sign_up(bob, "bob")
            ann.get_by_role("button", name="Play now", exact=True).click()
            expect(ann.get_by_role("status", name="Matchmaking")).to_have_text("Searching…")
            # The focus moves from Play now to Cancel, which takes its place.
            expect(ann.get_by_role("button", name="Cancel", exact=True)).to_be_focused()
            expect(ann.get_by_role("button", name="Play now", exact=True)).to_be_hidden()
            expect(ann.get_by_role("button", name="Create match")).to_be_disabled()
            screenshot(ann, "matchmaking")

            bob.get_by_role("button", name="Play now", exact=True).click()
            match_id = match_id_of(ann)
            self.assertEqual(match_id_of(bob), match_id)
            expect(ann.locator("#match-role")).to_have_text("You are the host (left paddle).")
            expect(bob.locator("#match-role")).to_have_text("You are the challenger (right paddle).")
            expect(ann.get_by_role("status", name="Matchmaking")).to_have_text(
                f"Matched: match {match_id}, as host.")
            expect(ann.locator("#start-reason")).to_have_text("Waiting for bob to be ready.")
            bob.get_by_role("button", name="Ready").click()
            start = ann.get_by_role("button", name="Start")
            expect(start).to_be_enabled()
            start.click()
            expect(ann.locator("#controls-hint")).to_be_visible()
            expect(bob.get_by_label("Match time")).not_to_have_text("0:00", timeout=20_000)
            return match_id

        async def check(match_id: int) -> None:
            status, match = await http_json(
                "GET", self.node.url(f"/api/ongoing_matches/{match_id}/"), token=await self.token("ann"))
            self.assertEqual(status, 200)
            self.assertEqual((match["host"], match["challenger"], match["is_started"]),
                             ("ann", "bob", True))
            for name in ("ann", "bob"):  # seated: the tickets are done
                status, _ = await http_json("GET", self.node.url("/api/matchmaking/"),
                                            token=await self.token(name))
                self.assertEqual(status, 404)

        return in_browser(scenario).addCallback(lambda match_id: ensureDeferred(check(match_id)))

    def test_searching_after_a_reload_then_cancel(self) -> Deferred[None]:
        """
        cat queues with "Play now" and reloads: the lobby still says "Searching…" (the
        ticket is the server's); Cancel leaves the queue (GET /api/matchmaking/ answers
        404) and brings "Play now" back.
        """

        def scenario(browser: Browser) -> None:
            cat = browser.page(self.url, "cat")
            sign_up(cat, "cat")
            searching = cat.get_by_role("status", name="Matchmaking")
            cat.get_by_role("button", name="Play now", exact=True).click()
            expect(searching).to_have_text("Searching…")
            status, ticket = browser.call(self.ticket, "cat")
            self.assertEqual((status, ticket["state"], ticket["match_id"]), (200, "waiting", None))

            cat.reload()
            expect(cat.locator("#me")).to_have_text("cat · Elo 1000")
            expect(searching).to_have_text("Searching…")
            expect(cat.get_by_role("button", name="Play now", exact=True)).to_be_hidden()
            cat.get_by_role("button", name="Cancel", exact=True).click()
            expect(searching).to_have_text("Search cancelled.")
            expect(cat.get_by_role("button", name="Play now", exact=True)).to_be_enabled()
            expect(cat.get_by_role("button", name="Cancel", exact=True)).to_be_hidden()
            self.assertEqual(browser.call(self.ticket, "cat")[0], 404)

            # A reload now finds nothing to resume.
            cat.reload()
            expect(cat.locator("#me")).to_have_text("cat · Elo 1000")
            expect(cat.get_by_role("status", name="Lobby connection")).to_have_text("Live")
            expect(searching).to_have_text("")
            expect(cat.get_by_role("button", name="Play now", exact=True)).to_be_enabled()

        return in_browser(scenario)

    async def ticket(self, username: str) -> tuple[int, Any]:
        return await http_json("GET", self.node.url("/api/matchmaking/"), token=await self.token(username))


class ReplayTests(BrowserTestCase):
    def test_watch_replay_seek_speed_and_end(self) -> Deferred[None]:
        """
        cat watches hana beat cole live; at the end, "Watch replay" replays the match:
        its frames are drawn and the position advances; Home on the position slider
        seeks to the start, the speed 0.5× streams again from where it was, End seeks
        to the end: "Replay ended", the server closes the stream and the page does not
        reconnect.  The lobby's recent results offer the same replay.
        """

        def sockets(page: Any) -> list[dict[str, Any]]:
            return page.evaluate("window.gameSockets")

        def scenario(browser: Browser) -> None:
            page = browser.page(self.url, "cat")
            page.add_init_script(RECORD_GAME_SOCKETS)
            sign_up(page, "cat")
            page.reload()
            expect(page.locator("#me")).to_have_text("cat · Elo 1000")
            match_id = browser.call(self.bots_in_lobby)
            lobby_row(page, match_id).get_by_role("button", name="Watch").click()
            expect(page.get_by_role("status", name="Match connection")).to_have_text("Connected")
            browser.call(self.start_bots)
            expect(page.locator("#end-title")).to_have_text("hana wins", timeout=60_000)
            self.assertEqual(len(sockets(page)), 1)

            page.locator("#match-end").get_by_role("button", name="Watch replay").click()
            page.wait_for_url(re.compile(rf"#/replay/{match_id}$"))
            expect(page.locator("#match-title")).to_have_text(f"Replay of match {match_id}")
            connection = page.get_by_role("status", name="Match connection")
            expect(connection).to_have_text("Replaying at 1×")
            expect(page.locator("#match-players")).to_have_text("hana beat cole 5 – 0")
            replay = sockets(page)[1]["replays"][0]
            self.assertEqual((replay["message_type"], replay["id"], replay["position_ms"],
                              replay["speed"]), ("replay", match_id, 0, 1))
            self.assertNotIn("speed", sockets(page)[1]["url"])
            duration = replay["duration_ms"]
            total = f"{duration // 60000}:{duration // 1000 % 60:02d}"
            position = page.locator("#replay-position")
            expect(position).to_have_text(re.compile(rf"^0:0[1-9] / {total}$"))
            before = page.locator("#pong").get_attribute("data-drawn")
            page.wait_for_function("before => document.getElementById('pong').dataset.drawn !== before",
                                   arg=before)
            expect(page.locator("#match-end")).to_be_hidden()
            screenshot(page, "replay")

            slider = page.get_by_label("Position")
            slider.focus()
            page.keyboard.press("Home")
            page.wait_for_function("() => window.gameSockets[1].replays.length === 2")
            self.assertIn({"command": "seek", "ms": 0}, sockets(page)[1]["sent"])
            self.assertEqual(sockets(page)[1]["replays"][1]["position_ms"], 0)
            expect(position).to_have_text(re.compile(rf"^0:0[1-9] / {total}$"))

            page.get_by_label("Speed").select_option("0.5")
            expect(connection).to_have_text("Replaying at 0.5×")
            page.wait_for_function("() => window.gameSockets[1].closed !== null"
                                   " && window.gameSockets[2].replays.length === 2")
            first, second = sockets(page)[1:]
            self.assertEqual(first["closed"], 1000)  # closed by the page
            self.assertIn("speed=0.5", second["url"])
            # The new stream goes on from where the first one was.
            seek = second["sent"][0]
            self.assertEqual(seek["command"], "seek")
            self.assertGreater(seek["ms"], 0)
            self.assertEqual([r["position_ms"] for r in second["replays"]], [0, seek["ms"]])
            self.assertEqual(second["replays"][1]["speed"], 0.5)

            slider.focus()
            page.keyboard.press("End")
            page.wait_for_function("() => window.gameSockets[2].closed !== null")
            # Closed by the server after the end: no reconnection.
            expect(connection).to_have_text("Replay ended")
            expect(position).to_have_text(f"{total} / {total}")
            result = page.locator("#match-end")
            expect(result.locator("#end-title")).to_have_text("hana wins")
            expect(result.locator("#end-score")).to_have_text("hana 5 – 0 cole")
            second = sockets(page)[2]
            self.assertEqual(second["closed"], 1000)
            self.assertIn({"command": "seek", "ms": duration}, second["sent"])
            self.assertEqual(second["replays"][-2]["position_ms"], duration)
            self.assertEqual(second["replays"][-1], {"message_type": "replay_end", "id": match_id})
            self.assertEqual(len(sockets(page)), 3)
            screenshot(page, "replay-ended")

            # The lobby's recent results lead to the same replay.
            row = page.locator(f'#recent li[data-match-id="{match_id}"]')
            expect(row).to_contain_text("hana 5 – 0 cole")
            row.get_by_role("button", name="Watch replay").click()
            expect(connection).to_have_text("Replaying at 1×")
            page.wait_for_function("() => window.gameSockets.length === 4")
            self.assertEqual(sockets(page)[3]["replays"][0]["position_ms"], 0)

        return in_browser(scenario)


class ChatTests(BrowserTestCase):
    def test_match_room_and_lobby(self) -> Deferred[None]:
        """ann and bob talk in their match's room, then in the lobby, under their names."""

        def scenario(browser: Browser) -> None:
            ann = browser.page(self.url, "ann")
            sign_up(ann, "ann")
            bob = browser.page(self.url, "bob")
            sign_up(bob, "bob")
            ann.get_by_role("button", name="Create match").click()
            match_id = match_id_of(ann)
            lobby_row(bob, match_id).get_by_role("button", name="Join").click()
            for page in (ann, bob):
                expect(page.get_by_role("status", name="Chat connection")).to_have_text(
                    f"Connected to match {match_id}")
            expect(ann.get_by_role("log", name="Chat")).to_contain_text("bob has joined the chat")

            bob.get_by_label("Message").fill("good luck!")
            bob.get_by_role("button", name="Send").click()
            expect(ann.get_by_role("log", name="Chat")).to_contain_text("bob: good luck!")
            ann.get_by_label("Message").fill("you too")
            ann.get_by_label("Message").press("Enter")
            expect(bob.get_by_role("log", name="Chat")).to_contain_text("ann: you too")
            expect(bob.get_by_label("Message")).to_have_value("")
            screenshot(bob, "chat")

            for page in (ann, bob):
                page.get_by_role("button", name="Lobby", exact=True).click()
                expect(page.get_by_role("status", name="Chat connection")).to_have_text(
                    "Connected to the lobby")
            expect(ann.get_by_role("log", name="Chat")).to_contain_text("bob has joined the chat")
            ann.get_by_label("Message").fill("anyone for a game?")
            ann.get_by_role("button", name="Send").click()
            expect(bob.get_by_role("log", name="Chat")).to_contain_text("ann: anyone for a game?")
            self.assertNotIn("you too", bob.get_by_role("log", name="Chat").inner_text())

        return in_browser(scenario)


class ArenaTests(BrowserTestCase):
    def test_bots_seen_moving(self) -> Deferred[None]:
        """
        ann watches the default arena; the example bot (a separate process, with ann's
        account) and a program run from the editor with the arena engine join; ann
        starts the round and both bots, highlighted as hers, are drawn moving.
        """

        def scenario(browser: Browser) -> None:
            viewer = browser.page(self.url + "#/arena/default", "ann (arena)")
            sign_up(viewer, "ann")
            viewer.get_by_role("button", name="Watch").click()
            expect(viewer.get_by_role("status", name="Arena connection")).to_have_text("Watching live")

            coder = browser.open(viewer.context, self.url + "#/code", "ann (code)")
            coder.get_by_label("Language").select_option("python")
            coder.get_by_label("Example").select_option("bot")
            coder.get_by_role("button", name="Load example").click()
            expect(coder.get_by_label("Engine", exact=True)).to_have_value("arena")
            coder.get_by_role("button", name="Run").click()
            expect(coder.get_by_role("log", name="Output")).to_contain_text("registered as player")

            browser.call(self.start_example_bot)
            players = viewer.locator("#arena-players li.mine")
            expect(players).to_have_count(2, timeout=20_000)
            viewer.get_by_role("button", name="Start").click()
            expect(viewer.locator("#arena-round")).to_have_text("Round started.")
            expect(coder.get_by_role("log", name="Output")).to_contain_text("the round started")

            # Both bots are drawn, and drawn somewhere else a few frames later.
            viewer.bring_to_front()
            first = drawn(viewer, "#arena-canvas")
            self.assertEqual(len(first), 2, first)
            viewer.wait_for_function(
                """first => {
                    const now = JSON.parse(document.getElementById("arena-canvas").dataset.drawn);
                    return Object.keys(first).every(id => now[id]
                        && (now[id][0] !== first[id][0] || now[id][1] !== first[id][1]));
                }""", arg=first, timeout=5_000)
            screenshot(viewer, "arena")
            screenshot(coder, "code-arena")
            coder.get_by_role("button", name="Stop").click()
            expect(coder.get_by_role("log", name="Output").locator(".end-line")).to_be_visible()

        return in_browser(scenario)

    async def start_example_bot(self) -> None:
        self.bot = ServerProcess([sys.executable, EXAMPLE_BOT, "--port", str(self.node.port),
                                  "--username", "ann", "--password", PASSWORD, "--no-start"])
        # The bot logs no "listening" line: it is running once spawned.
        self.bot.start().addErrback(lambda _: None)
        self.addCleanup(self.bot.kill)


class CodeTests(BrowserTestCase):
    node_options = ("--processor-time-limit", "1")

    def test_hello_world_in_each_language_and_errors(self) -> Deferred[None]:
        """
        Hello world runs in Python, JavaScript, Ruby and PHP from the editor; the page
        answers a program's engine calls and lists them; a syntax error marks its line,
        as does a runtime error in each other language; a run stopped by a limit says so.
        """
        hello = {
            "python": 'print("Hello, world!")\n',
            "javascript": 'console.log("Hello, world!");\n',
            "ruby": 'puts "Hello, world!"\n',
            "php": '<?php\necho "Hello, world!\\n";\n',
        }

        def type_code(page: Any, code: str) -> None:
            page.locator(".CodeMirror").click()
            page.keyboard.press("Control+A")
            page.keyboard.press("Delete")
            page.keyboard.insert_text(code)

        def run(page: Any) -> Any:
            page.get_by_role("button", name="Run").click()
            output = page.get_by_role("log", name="Output")
            expect(output.locator(".end-line")).to_be_visible(timeout=30_000)
            return output

        def scenario(browser: Browser) -> None:
            page = browser.page(self.url + "#/code", "ann")
            sign_up(page, "ann")
            for language, code in hello.items():
                page.get_by_label("Language").select_option(language)
                type_code(page, code)
                output = run(page)
                expect(output).to_contain_text("Hello, world!")
                expect(output.locator(".end-line")).to_contain_text("exited with code 0")

            page.get_by_label("Language").select_option("python")
            page.get_by_label("Example").select_option("guess")
            page.get_by_role("button", name="Load example").click()
            output = run(page)
            expect(output).to_contain_text("found it in")
            calls = page.locator("#engine-calls li")
            self.assertGreaterEqual(calls.count(), 1)
            expect(calls.last).to_contain_text('"answer":"correct"')
            screenshot(page, "code-engine")

            type_code(page, 'x = 1\nprint("hi"\ny = 2\n')
            output = run(page)
            expect(output.locator(".end-line")).to_contain_text("exited with code 1")
            # The second line of the editor, and only it, is marked, with the message under it.
            expect(page.locator(".CodeMirror .error-line")).to_have_count(1)
            second_line = page.locator(".CodeMirror-code > div").nth(1)
            self.assertEqual(second_line.locator(".CodeMirror-linenumber").inner_text(), "2")
            expect(second_line.locator(".error-line")).to_have_count(1)
            expect(second_line.locator(".error-widget")).to_contain_text("line 2: SyntaxError")
            screenshot(page, "code-error")

            # A runtime error in each of the other languages marks the line that failed.
            failing = {
                "javascript": ('console.log("a");\nnope();\n', "line 2: ReferenceError"),
                "ruby": ('puts "a"\nnope\n', "line 2: main.rb:2:in `<main>': undefined local"),
                "php": ('<?php\necho "a";\nnope();\n', "line 3: Fatal error: Uncaught Error: Call"),
            }
            for language, (code, message) in failing.items():
                page.get_by_label("Language").select_option(language)
                type_code(page, code)
                run(page)
                expect(page.locator(".error-widget")).to_contain_text(message)

            page.get_by_label("Language").select_option("python")
            type_code(page, "while True:\n    pass\n")
            output = run(page)
            expect(output.locator(".end-line")).to_contain_text("time limit exceeded (1 s)")

        return in_browser(scenario)


class CodeMatchTests(BrowserTestCase):
    # A whole match is longer than the engine wait limit's default (docs/processor.md).
    node_options = ("--processor-engine-wait-limit", "300")

    def test_pong_bot_from_the_editor(self) -> Deferred[None]:
        """
        hana hosts a match (a Python client that starts it once the challenger is
        ready, then keeps her paddle away from the ball); ann, in the Code view,
        chooses the match engine, which offers the Pong bot, loads it, enters the match
        id and the challenger's seat and runs it: the bot readies, plays and wins 5 – 0,
        and the page shows its output, the end frame and how many frames it read.
        """
        EXAMPLE = os.path.join(os.path.dirname(EXAMPLE_BOT), "pong_bot.py")

        def scenario(browser: Browser) -> dict[str, Any]:
            page = browser.page(self.url + "#/code", "ann")
            sent: list[Any] = []
            page.on("websocket", lambda socket: "/ws/processor/" in socket.url and socket.on(
                "framesent", lambda payload: sent.append(payload)))
            sign_up(page, "ann")
            match_id = browser.call(self.hana_hosts)

            page.get_by_label("Language").select_option("python")
            page.get_by_label("Engine", exact=True).select_option("match")
            expect(page.get_by_label("Example")).to_have_value("pong")
            page.get_by_role("button", name="Load example").click()
            with open(EXAMPLE) as f:
                self.assertEqual(page.evaluate("document.querySelector('.CodeMirror').CodeMirror.getValue()"),
                                 f.read())
            expect(page.get_by_label("Engine", exact=True)).to_have_value("match")
            expect(page.locator("#engine-calls")).to_be_hidden()
            page.get_by_label("Match id").fill(str(match_id))
            page.get_by_label("Seat").select_option("challenger")
            page.get_by_role("button", name="Run").click()
            expect(page.get_by_role("status", name="Run state")).to_contain_text("Running")

            output = page.get_by_role("log", name="Output")
            expect(output.locator(".end-line")).to_contain_text("exited with code 0", timeout=180_000)
            expect(output).to_contain_text('end {"message_type": "end", "id": ' + str(match_id))
            expect(output).to_contain_text('"winner": "ann"')
            expect(output).to_contain_text(re.compile(r"frames read: [1-9]\d*"))
            screenshot(page, "code-match")
            contexts = [json.loads(text) for text in sent if '"context"' in text]
            return {"match": match_id, "contexts": contexts}

        async def check(seen: dict[str, Any]) -> None:
            self.assertEqual(seen["contexts"], [{"type": "context", "language": "python",
                                                 "engine": "match", "match": seen["match"],
                                                 "role": "challenger"}])
            status, completed = await http_json(
                "GET", self.node.url(f"/api/completed_matches/{seen['match']}/"),
                token=await self.token("hana"))
            self.assertEqual(status, 200)
            self.assertEqual((completed["winner"], completed["winner_score"], completed["loser"],
                              completed["loser_score"]), ("ann", 5, "hana", 0))

        return in_browser(scenario).addCallback(lambda seen: ensureDeferred(check(seen)))

    async def hana_hosts(self) -> int:
        """hana hosts a match that she starts when the challenger is ready: its id."""
        api = RestClient(reactor, self.node.http)
        await api.sign_up("hana", PASSWORD)
        token = await api.token("hana", PASSWORD)
        created = await api.as_user(token).create_match()
        host = await match_client.connect(reactor, self.node.ws, token, created["id"], "host")
        self.addCleanup(lambda: host.state == host.STATE_OPEN and host.dropConnection(abort=True))
        host.keep_frames = False

        def frame(frame: dict[str, Any]) -> None:
            kind = frame.get("message_type")
            if kind == "lobby" and frame.get("challenger_ready"):
                host.command("start_match")
            elif kind == "status":
                # Away from the ball: every shot the bot returns is a goal.
                host.command("fdown" if frame["ball_y"] < 0.5 else "fup")

        host.on_frame = frame
        return created["id"]


class PhoneTests(BrowserTestCase):
    def test_watching_on_a_phone(self) -> Deferred[None]:
        """
        At 390×844 the view comes first and the lobby is a folded panel; a visitor signs
        up, opens the lobby, watches a match two bots play, and sees the score change
        and the result, then its replay.
        """

        def scenario(browser: Browser) -> None:
            page = browser.page(self.url, "phone", viewport=PHONE)
            sign_up(page, "cat")
            match_id = browser.call(self.bots_in_lobby)
            lobby = page.locator("#lobby")
            self.assertFalse(lobby.evaluate("e => e.open"))
            page.locator("#lobby > summary").click()
            row = lobby_row(page, match_id)
            expect(row).to_contain_text("hana vs cole")
            row.get_by_role("button", name="Watch").click()
            expect(page.locator("#match-role")).to_have_text("Watching.")
            canvas = page.locator("#pong").bounding_box()
            self.assertLessEqual(canvas["x"] + canvas["width"], PHONE["width"])
            self.assertGreater(canvas["width"], 250)
            browser.call(self.start_bots)
            score = page.get_by_role("status", name="Score")
            expect(score).not_to_have_text("0 – 0", timeout=20_000)
            screenshot(page, "phone-watching")
            expect(page.locator("#end-title")).to_have_text("hana wins", timeout=60_000)
            expect(score).to_have_text("5 – 0")
            screenshot(page, "phone-end")
            # The replay fits the phone too.
            page.locator("#match-end").get_by_role("button", name="Watch replay").click()
            expect(page.get_by_role("status", name="Match connection")).to_have_text("Replaying at 1×")
            for control in (page.get_by_label("Speed"), page.get_by_label("Position")):
                box = control.bounding_box()
                self.assertLessEqual(box["x"] + box["width"], PHONE["width"])
            expect(page.locator("#replay-position")).not_to_have_text(re.compile(r"^0:00 "))
            screenshot(page, "phone-replay")

        return in_browser(scenario)
