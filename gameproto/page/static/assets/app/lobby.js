// The lobby: ongoing matches (polled every 2 s, so it stays live without a reload),
// create / play now / join / watch, the leaderboard and the recent results (with their
// replays).

import { api } from "./api.js";
import { StateLabel, backoff } from "./connection.js";
import { $, h } from "./dom.js";
import { Matchmaking } from "./matchmaking.js";
import { seats } from "./seats.js";

const POLL_MS = 2000;
// A tab in the background polls rarely, and catches up when it is shown again.
const HIDDEN_POLL_MS = 30000;

function matchState(match) {
  if (match.is_started) return "playing";
  if (!match.challenger) return "waiting for a challenger";
  return match.challenger_ready ? "ready to start" : "waiting for the challenger to be ready";
}

export class Lobby {
  constructor(session, navigate) {
    this.session = session;
    this.navigate = navigate;
    this.label = new StateLabel($("lobby-connection"));
    this.timer = null;
    this.failures = 0;
    this.generation = 0;
    this.matchmaking = new Matchmaking(session, navigate, () => this.renderButtons());
    $("create-match").addEventListener("click", () => this.createMatch());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.session.user) this.refreshSoon();
    });
    session.onChange((user, changed) => {
      this.renderButtons();
      if (changed) this.restart();
    });
    this.restart();
  }

  // Create match and Play now need a user who plays nowhere yet; while queued, Cancel
  // takes the place of Play now.
  renderButtons() {
    const user = this.session.user;
    const busy = !user || user.ongoing_match !== null;
    const { searching, starting } = this.matchmaking;
    $("create-match").disabled = busy || searching || starting;
    $("play-now").disabled = busy || starting;
    $("play-now").hidden = searching;
    $("matchmaking-cancel").hidden = !searching;
  }

  restart() {
    clearTimeout(this.timer);
    this.generation += 1;
    if (!this.session.user) {
      this.label.clear();
      $("ongoing").replaceChildren(h("li", { class: "empty" }, "Log in or sign up to see the games and play."));
      $("leaderboard").replaceChildren();
      $("recent").replaceChildren();
      return;
    }
    this.label.set("connecting", "Loading…");
    this.poll(this.generation);
  }

  // Read everything now (after an action of the user's), then keep polling.
  refreshSoon() {
    if (!this.session.user) return;
    clearTimeout(this.timer);
    this.poll(this.generation);
  }

  // One poll at a time: a poll asked for while one is on its way follows it at once.
  async poll(generation) {
    if (this.polling) {
      this.pollAgain = true;
      return;
    }
    this.polling = true;
    this.pollAgain = false;
    let result;
    try {
      result = await Promise.all([
        api("GET", "api/ongoing_matches/"),
        api("GET", "api/users/?ordering=-elo&limit=10"),
        api("GET", "api/completed_matches/?limit=10"),
        this.session.refresh(),
      ]);
    } catch (error) {
      result = error;
    }
    this.polling = false;
    if (generation !== this.generation) {
      // Signed out or in as someone else meanwhile: that session's poll goes on.
      if (this.pollAgain) this.poll(this.generation);
      return;
    }
    let delay;
    if (result instanceof Error) {
      if (result.status === 401) {
        this.session.set(null);
        return;
      }
      delay = Math.max(POLL_MS, backoff(this.failures++));
      this.label.countdown("reconnecting", `Offline (${result.message}). Retrying`, performance.now() + delay);
    } else {
      const [ongoing, leaders, recent] = result;
      this.failures = 0;
      this.label.set("connected", "Live");
      this.render(ongoing, leaders, recent);
      delay = document.hidden ? HIDDEN_POLL_MS : POLL_MS;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.poll(generation), this.pollAgain ? 0 : delay);
  }

  render(ongoing, leaders, recent) {
    const me = this.session.username;
    const rows = ongoing.map((match) => {
      const mine = match.host === me || match.challenger === me;
      const openSeat = !match.challenger && !match.is_started && !mine;
      const challenger = match.challenger || "open seat";
      return h("li", { dataset: { matchId: match.id }, class: mine ? "mine" : "" },
        h("span", { class: "what" },
          `${match.host} vs ${challenger}`,
          h("span", { class: "state" }, `#${match.id} · ${matchState(match)}`
            + (match.spectators.length ? ` · ${match.spectators.length} watching` : ""))),
        openSeat && h("button", { type: "button", onclick: () => this.join(match.id) }, "Join"),
        mine
          ? h("button", { type: "button", class: "secondary", onclick: () => this.navigate(`#/match/${match.id}`) }, "Open")
          : h("button", { type: "button", class: "secondary", onclick: () => this.watch(match.id) }, "Watch"));
    });
    $("ongoing").replaceChildren(...(rows.length ? rows : [h("li", { class: "empty" }, "No games yet — create one.")]));

    $("leaderboard").replaceChildren(...leaders.map((user) =>
      h("li", { class: user.username === me ? "mine" : "" }, `${user.username} · ${user.elo}`)));

    const results = recent.map((match) => {
      const mine = match.winner === me || match.loser === me;
      return h("li", { class: mine ? "mine" : "", dataset: { matchId: match.id } },
        h("span", { class: "what" }, `${match.winner} ${match.winner_score} – ${match.loser_score} ${match.loser}`),
        h("button", { type: "button", class: "secondary", onclick: () => this.navigate(`#/replay/${match.id}`) },
          "Watch replay"));
    });
    $("recent").replaceChildren(...(results.length ? results : [h("li", { class: "empty" }, "No finished games yet.")]));
  }

  async createMatch() {
    const button = $("create-match");
    button.disabled = true;
    try {
      const match = await api("POST", "api/ongoing_matches/");
      seats.remember(match.id, "host");
      this.navigate(`#/match/${match.id}`);
    } catch (error) {
      this.label.set("error", `Could not create a match: ${error.message}`);
    } finally {
      this.refreshSoon();
    }
  }

  join(matchId) {
    seats.remember(matchId, "challenger");
    this.navigate(`#/match/${matchId}`);
  }

  watch(matchId) {
    seats.remember(matchId, "spectator");
    this.navigate(`#/match/${matchId}`);
  }
}
