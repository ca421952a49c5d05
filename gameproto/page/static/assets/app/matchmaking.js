// "Play now": the matchmaking queue (POST /api/matchmaking/), then /ws/matchmaking/ tells
// where to play.  Matched, the page takes the seat the queue gave, as if the user had
// created the match (host) or joined it (challenger).  A reload while queued finds the
// ticket again (GET /api/matchmaking/) and goes on searching: the tab remembers that it
// queued (sessionStorage, like seats.js), so that a page that never queued does not ask
// for a ticket it does not have.

import { api, socketURL } from "./api.js";
import { JSONSocket, StateLabel } from "./connection.js";
import { $ } from "./dom.js";
import { seats } from "./seats.js";

const SEARCHING = "Searching…";
const KEY = "gameproto.queued";

function queuedHere(username) {
  try {
    return sessionStorage.getItem(KEY) === username;
  } catch (error) {
    return false;
  }
}

export class Matchmaking {
  // `changed()` is called whenever `searching` changes (the lobby's buttons follow it).
  constructor(session, navigate, changed) {
    this.session = session;
    this.navigate = navigate;
    this.changed = changed;
    this.label = new StateLabel($("matchmaking-state"));
    this.socket = null;
    this.searching = false;
    this.starting = false;
    this.generation = 0;
    $("play-now").addEventListener("click", () => this.start());
    $("matchmaking-cancel").addEventListener("click", () => this.cancel());
    session.onChange((user, changed) => {
      if (changed) this.restart();
    });
  }

  // Signed in (or out, or as someone else): drop what was, then find this user's ticket.
  async restart() {
    this.generation += 1;
    const generation = this.generation;
    this.stopSearching(false);
    this.label.clear();
    if (!this.session.user || !queuedHere(this.session.username)) return;
    let ticket;
    try {
      ticket = await api("GET", "api/matchmaking/");
    } catch (error) {
      // 404: not in the queue any more; anything else: the lobby says the server is away.
      if (error.status === 404 && generation === this.generation) sessionStorage.removeItem(KEY);
      return;
    }
    if (generation !== this.generation || this.searching) return;
    this.search();
    if (ticket.state === "matched") this.matched(ticket.match_id, ticket.role);
  }

  async start() {
    if (this.searching || this.starting || !this.session.user) return;
    const generation = this.generation;
    // Play now is disabled while the ticket is asked for, then replaced by Cancel.
    const hadFocus = document.activeElement === $("play-now");
    this.starting = true;
    this.changed();
    this.label.set("connecting", "Joining the queue…");
    try {
      await api("POST", "api/matchmaking/");
    } catch (error) {
      // 409: this user has a ticket already (another tab): carry on with it.
      if (error.status !== 409) {
        this.starting = false;
        this.changed();
        if (generation === this.generation) this.label.set("error", `Could not play now: ${error.message}`);
        if (hadFocus) $("play-now").focus();
        return;
      }
    }
    this.starting = false;
    if (generation !== this.generation) return;
    this.search();
    if (hadFocus) $("matchmaking-cancel").focus();
  }

  // Queued: listen for the ticket's fate on /ws/matchmaking/ (reconnecting if it drops).
  search() {
    this.searching = true;
    sessionStorage.setItem(KEY, this.session.username);
    this.changed();
    this.label.set("searching", SEARCHING);
    this.socket = new JSONSocket({
      url: socketURL("ws/matchmaking/"),
      label: this.label,
      names: { connecting: SEARCHING, connected: SEARCHING },
      onOpen: () => {
        this.label.set("searching", SEARCHING);
        this.check();
      },
      onMessage: (message) => this.received(message),
      decide: (code) => {
        if (code === 4001) {
          this.stopSearching(false);
          return { retry: false, text: "Log in to play." };
        }
        return { retry: true };
      },
    });
    this.socket.open();
  }

  // After a (re)connection: the ticket may have gone while the socket was away.
  async check() {
    const generation = this.generation;
    try {
      await api("GET", "api/matchmaking/");
    } catch (error) {
      if (error.status === 404 && generation === this.generation && this.searching) {
        this.stopSearching();
        this.label.set("closed", "You are not in the queue any more.");
      }
    }
  }

  received(message) {
    switch (message.type) {
      case "matched":
        this.matched(message.match_id, message.role);
        break;
      case "requeued":
        this.label.set("searching", `${SEARCHING} Your opponent did not come: back in the queue.`);
        break;
      case "removed": {
        const hadFocus = document.activeElement === $("matchmaking-cancel");
        this.stopSearching();
        this.label.set("closed", `Not in the queue any more: ${message.reason}`);
        if (hadFocus) $("play-now").focus();
        break;
      }
      case "error":
        this.label.set("error", `Matchmaking: ${message.message}`);
        break;
      default:
        break;
    }
  }

  // Take the seat the queue found, as Create match (host) or Join (challenger) would.
  matched(matchId, role) {
    this.stopSearching();
    seats.remember(matchId, role);
    this.label.set("connected", `Matched: match ${matchId}, as ${role}.`);
    const hash = `#/match/${matchId}`;
    if (location.hash !== hash) this.navigate(hash);
  }

  async cancel() {
    if (!this.searching) return;
    const generation = this.generation;
    const hadFocus = document.activeElement === $("matchmaking-cancel");
    this.stopSearching();
    this.label.set("connecting", "Leaving the queue…");
    if (hadFocus) $("play-now").focus();
    try {
      await api("DELETE", "api/matchmaking/");
    } catch (error) {
      if (error.status !== 404) {
        if (generation === this.generation) this.label.set("error", `Could not leave the queue: ${error.message}`);
        return;
      }
    }
    if (generation === this.generation) this.label.set("", "Search cancelled.");
  }

  // The search is over; `forget` unless it goes on after a reload (a new user, or the
  // same one signing in again).
  stopSearching(forget = true) {
    if (forget) sessionStorage.removeItem(KEY);
    if (this.socket) this.socket.close();
    this.socket = null;
    if (this.searching) {
      this.searching = false;
      this.changed();
    }
  }
}
