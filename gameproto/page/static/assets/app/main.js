// gameproto's page: one view at a time in the centre, chosen by the URL's hash
// (#/, #/match/12, #/replay/12, #/arena/default, #/code), the lobby on the left, the chat
// on the right.

import { ArenaView } from "./arena.js";
import { Chat } from "./chat.js";
import { CodeView } from "./code.js";
import { $ } from "./dom.js";
import { Lobby } from "./lobby.js";
import { MatchView } from "./pong.js";
import { Session, mountAccount } from "./session.js";

const navigate = (hash) => {
  if (location.hash === hash) route();
  else location.hash = hash;
};

const session = new Session();
mountAccount(session);
const lobby = new Lobby(session, navigate);
const chat = new Chat(session);
const views = {
  home: { element: $("home-view"), tab: "tab-play" },
  match: { element: $("match-view"), tab: "tab-play", controller: new MatchView(session, lobby, navigate) },
  arena: { element: $("arena-view"), tab: "tab-arena", controller: new ArenaView(session, navigate) },
  code: { element: $("code-view"), tab: "tab-code", controller: new CodeView(session) },
};
let current = null;
let currentHash = null;

function parse(hash) {
  let path;
  try {
    path = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  } catch (error) {
    return { view: "home" };  // a malformed %-escape
  }
  if (path[0] === "match" && /^\d{1,15}$/.test(path[1] || "")) return { view: "match", id: Number(path[1]) };
  if (path[0] === "replay" && /^\d{1,15}$/.test(path[1] || "")) {
    return { view: "match", id: Number(path[1]), replay: true };
  }
  if (path[0] === "arena") return { view: "arena", id: path[1] || "default" };
  if (path[0] === "code") return { view: "code" };
  return { view: "home" };
}

function route() {
  const target = parse(location.hash);
  const next = views[target.view];
  if (current && current !== next) current.controller?.hide();
  for (const view of Object.values(views)) {
    view.element.hidden = view !== next;
    if (view.tab === next.tab) $(view.tab).setAttribute("aria-current", "page");
    else $(view.tab).removeAttribute("aria-current");
  }
  // A new view: move the focus to its heading (screen readers announce it), unless the
  // user is typing in the chat.
  if (currentHash !== null && currentHash !== location.hash && !$("chat").contains(document.activeElement)) {
    next.element.querySelector("h1").focus({ preventScroll: true });
  }
  currentHash = location.hash;
  current = next;
  if (target.view === "match" && target.replay) {
    chat.setViewRoom(null);
    next.controller.show(target.id, true);
  } else if (target.view === "match") {
    chat.setViewRoom({ room: `match:${target.id}`, title: `Match ${target.id}` });
    next.controller.show(target.id);
  } else if (target.view === "arena") {
    chat.setViewRoom({ room: `arena:${target.id}`, title: `Arena ${target.id}` });
    next.controller.show(target.id);
  } else {
    chat.setViewRoom(null);
    next.controller?.show();
  }
  document.title = { home: "gameproto",
    match: target.replay ? `Replay of match ${target.id} · gameproto` : `Match ${target.id} · gameproto`,
    arena: `Arena ${target.id} · gameproto`, code: "Code · gameproto" }[target.view];
}

function renderHome(user) {
  $("home-visitor").hidden = user !== null;
  $("home-member").hidden = user === null;
  // "Play" leads back to the user's own match while there is one.
  $("tab-play").href = user && user.ongoing_match !== null && user.role !== "spectator"
    ? `#/match/${user.ongoing_match}` : "#/";
}

// Wide screens show every panel; narrow ones start with the lobby and chat folded.
// On wide screens the panels' summaries are headings, not switches (nor tab stops).
const narrowScreen = matchMedia("(max-width: 799px)");

function foldPanels() {
  for (const id of ["lobby", "chat"]) {
    $(id).open = !narrowScreen.matches;
    $(id).querySelector("summary").tabIndex = narrowScreen.matches ? 0 : -1;
  }
}

for (const id of ["lobby", "chat"]) {
  $(id).querySelector("summary").addEventListener("click", (event) => {
    if (!narrowScreen.matches) event.preventDefault();
  });
}
narrowScreen.addEventListener("change", foldPanels);

session.onChange((user, changed) => {
  renderHome(user);
  if (changed && current) route();
});
addEventListener("hashchange", route);
foldPanels();

session.load().catch((error) => {
  $("auth-error").textContent = `The server cannot be reached: ${error.message}`;
  session.set(null);
}).finally(() => {
  $("auth-form").hidden = session.user !== null;
  route();
});
