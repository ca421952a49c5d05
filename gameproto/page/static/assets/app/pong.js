// The Pong view: one match over /ws/game/{id}/?role=..., drawn at the display's refresh
// rate between the server's 100 Hz status frames, with keyboard control for players;
// or the replay of a completed match (#/replay/{id}: the spectator URL of a completed
// match streams its frames, docs/match.md "Replays"), drawn the same way.

import { api, socketURL } from "./api.js";
import { JSONSocket, StateLabel } from "./connection.js";
import { $, fitCanvas, formatClock, h } from "./dom.js";
import { ReplayBar } from "./replay.js";
import { seats } from "./seats.js";

// Draw about one frame (10 ms) behind the newest frame, so there are two frames to
// interpolate between.
const RENDER_DELAY_MS = 12;
const KEEP_FRAMES = 8;
const HOST_X = 0.01;
const CHALLENGER_X = 0.99;

// Close codes after which reconnecting is pointless (docs/match.md).
const FINAL_CLOSES = {
  4000: "The server refused the request.",
  4001: "Log in to play or watch.",
  4004: "This match does not exist.",
  4009: "This match was opened in another tab or window.",
};

const ROLE_TEXT = {
  host: "You are the host (left paddle).",
  challenger: "You are the challenger (right paddle).",
  spectator: "Watching.",
};
const REPLAY_ROLE_TEXT = "Watching the replay.";

// What a key means to the server (docs/match.md: up, down, fup, fdown).
function commandFor(direction, fast) {
  return (fast ? "f" : "") + direction;
}

function isTyping(target) {
  return target instanceof HTMLElement
    && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)
        || target.closest(".CodeMirror"));
}

export class MatchView {
  constructor(session, lobby, navigate) {
    this.session = session;
    this.lobby = lobby;
    this.navigate = navigate;
    this.label = new StateLabel($("match-connection"));
    this.canvas = $("pong");
    this.context = this.canvas.getContext("2d");
    this.matchId = null;
    this.socket = null;
    this.visible = false;
    this.reset();

    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe($("field-wrap"));
    addEventListener("keydown", (event) => this.key(event, true));
    addEventListener("keyup", (event) => this.key(event, false));
    addEventListener("blur", () => (this.held = null));
    $("ready").addEventListener("click", () => this.send("ready"));
    $("start").addEventListener("click", () => this.send("start_match"));
    $("rematch").addEventListener("click", () => this.rematch());
    $("watch-replay").addEventListener("click", () => this.navigate(`#/replay/${this.matchId}`));
    this.replayBar = new ReplayBar({
      onSeek: (ms) => this.seek(ms),
      onSpeed: () => this.changeSpeed(),
    });
    $("back-to-lobby").addEventListener("click", () => this.navigate("#/"));
  }

  reset() {
    this.role = null;
    this.host = null;
    this.challenger = null;
    this.sizes = { ball_radius: 0.02, paddle_height: 0.13, paddle_width: 0.02 };
    this.frames = [];
    this.phase = "lobby";  // lobby, playing, ended
    this.held = null;
    this.fast = false;
    this.ended = false;
    this.finalText = null;
    this.hintShown = false;
    this.lastScore = null;
    this.replay = false;  // showing the replay of a completed match
    this.replayStarted = false;  // a `replay` message came on this socket
    this.replayEnded = false;
    this.jump = false;  // the next frame starts elsewhere in the replay: no interpolation
  }

  // -- showing a match -----------------------------------------------------------

  async show(matchId, replay = false) {
    this.visible = true;
    if (matchId === this.matchId && replay === this.replay && this.socket && !this.socket.closedForGood) {
      this.resize();
      if (this.phase === "playing") this.loop();
      return;
    }
    this.leave();
    this.reset();
    this.matchId = matchId;
    this.replay = replay;
    $("match-title").textContent = replay ? `Replay of match ${matchId}` : `Match ${matchId}`;
    this.renderScore({ left_score: 0, right_score: 0, match_time: 0, sudden_death: false });
    $("match-end").hidden = true;
    $("lobby-phase").hidden = replay;
    $("replay-bar").hidden = !replay;
    this.replayBar.reset();
    $("controls-hint").hidden = true;
    $("match-players").textContent = "";
    $("match-role").textContent = "";
    this.renderLobby({ challenger: null, challenger_ready: false, spectators: 0 });
    this.draw();
    if (!this.session.user) {
      this.label.set("closed", "Log in to play or watch.");
      return;
    }
    if (replay) {
      this.showReplay(matchId);
      return;
    }
    await this.session.refresh();
    const user = this.session.user;
    if (!user || this.matchId !== matchId) return;
    let match = null;
    try {
      match = await api("GET", `api/ongoing_matches/${matchId}/`);
    } catch (error) {
      if (this.matchId !== matchId) return;
      if (error.status === 404) {
        this.showFinished(matchId);
        return;
      }
      // The match endpoint says more than a failed read: connect anyway.
    }
    if (this.matchId !== matchId) return;
    if (match) {
      this.host = match.host;
      this.challenger = match.challenger;
    }
    // The server's word first (a player reloading mid-game), then this tab's intent.
    this.role = user.ongoing_match === matchId ? user.role : seats.get(matchId);
    if (this.host === user.username) this.role = "host";
    this.role = this.role || "spectator";
    this.connect();
  }

  // The view is hidden: a spectator stops watching; a player stays seated.
  hide() {
    this.visible = false;
    this.held = null;
    if (this.role === "spectator") {
      this.leave();
      this.matchId = null;
    }
  }

  leave() {
    if (this.socket) this.socket.close();
    this.socket = null;
  }

  connect() {
    const matchId = this.matchId;
    $("match-role").textContent = ROLE_TEXT[this.role];
    this.renderPlayers();
    this.socket = new JSONSocket({
      url: socketURL(`ws/game/${matchId}/?role=${this.role}`),
      label: this.label,
      names: { connecting: "Connecting…", connected: "Connected" },
      onMessage: (message) => this.received(message),
      decide: (code, reason) => this.decide(code, reason),
    });
    this.socket.open();
  }

  decide(code, reason) {
    if (this.replayEnded) return { retry: false, state: "connected", text: "Replay ended" };
    if (this.ended || this.finalText) {
      return { retry: false, state: this.ended ? "connected" : "closed", text: this.finalText || "Match over" };
    }
    if (FINAL_CLOSES[code]) return { retry: false, text: FINAL_CLOSES[code] };
    if (code === 1000) return { retry: false, text: `Closed: ${reason || "the match ended"}` };
    if (code === 4029) return { retry: true, state: "busy", text: "Server busy (too many connections). Retrying" };
    // Lost (1006), server shutting down (4012), internal (4011): try again.
    return { retry: true };
  }

  send(command) {
    this.socket?.send({ command });
  }

  // -- frames from the server -------------------------------------------------------

  received(message) {
    if (message.error !== undefined) return this.refused(message);
    if (this.replay) return this.replayReceived(message);
    switch (message.message_type) {
      case "lobby": return this.renderLobby(message);
      case "init": return this.started(message);
      case "status": return this.status(message);
      case "end": return this.finished(message);
      case "aborted":
        this.finalText = `Match aborted: ${message.reason}`;
        this.phase = "ended";
        $("lobby-state").textContent = this.finalText;
        return undefined;
      default:
        return undefined;
    }
  }

  refused({ error, code }) {
    switch (code) {
      case 2:
      case 3:
        $("start-reason").textContent = error;
        return;
      case 4:
        if (error === "server shutting down") {
          $("lobby-state").textContent = "The server is restarting…";
          return;
        }
        this.finalText = "This match was deleted.";
        break;
      case 5:
        this.finalText = this.replay && error === "no replay of this match"
          ? "This match has no replay (any more)." : "This match does not exist (any more).";
        break;
      case 6:
        this.finalText = "Log in to play or watch.";
        break;
      case 8:
        this.finalText = "You are not the host of this match.";
        break;
      case 9:
        if (this.role === "challenger") {
          // Someone else took the seat first: watch instead.
          seats.remember(this.matchId, "spectator");
          this.socket.close();
          this.role = "spectator";
          $("lobby-state").textContent = "The seat was taken: watching instead.";
          this.connect();
          return;
        }
        this.finalText = "You are already in another match. Leave it first.";
        break;
      default:
        this.finalText = error;
    }
    $("lobby-state").textContent = this.finalText;
  }

  renderPlayers() {
    const host = this.host || "?";
    const challenger = this.challenger || "open seat";
    $("match-players").textContent = `${host} (host) vs ${challenger} (challenger)`;
    $("match-host-name").textContent = this.host || "";
    $("match-challenger-name").textContent = this.challenger || "";
  }

  renderLobby({ challenger, challenger_ready: ready, spectators }) {
    this.challenger = challenger;
    this.renderPlayers();
    const isHost = this.role === "host";
    const isChallenger = this.role === "challenger";
    const playing = this.phase !== "lobby";
    const readyButton = $("ready");
    const startButton = $("start");
    readyButton.hidden = !isChallenger || playing || ready;
    startButton.hidden = !isHost || playing;
    startButton.disabled = !(challenger && ready);
    let reason = "";
    if (!challenger) reason = "Waiting for a challenger to join.";
    else if (!ready) reason = `Waiting for ${challenger} to be ready.`;
    $("start-reason").textContent = isHost && !playing ? reason : "";
    let state = "";
    if (!playing) {
      if (isChallenger) state = ready ? "Ready. Waiting for the host to start." : "Press Ready when you are.";
      else if (!isHost) state = challenger ? (ready ? "Ready to start." : "Waiting for the challenger.") : "Waiting for a challenger.";
    }
    const watching = spectators ? ` ${spectators} watching.` : "";
    $("lobby-state").textContent = state + watching;
  }

  started(init) {
    this.sizes = init;
    this.phase = "playing";
    $("ready").hidden = true;
    $("start").hidden = true;
    $("start-reason").textContent = "";
    $("lobby-state").textContent = "";
    const player = this.role === "host" || this.role === "challenger";
    if (player && !this.hintShown) $("controls-hint").hidden = false;
    this.loop();
  }

  status(frame) {
    if (this.phase === "lobby") this.started(this.sizes);  // joined a running game
    if (this.jump) {
      this.frames = [];
      this.jump = false;
    }
    this.frames.push({ at: performance.now(), frame });
    if (this.frames.length > KEEP_FRAMES) this.frames.shift();
    this.renderScore(frame);
    // One command per server tick while a key is held: holding accelerates the paddle,
    // as the server's rules say.
    if (this.held) this.send(commandFor(this.held, this.fast));
  }

  renderScore(frame) {
    const score = `${frame.left_score} – ${frame.right_score}`;
    // The score is a live region: touch it only when it changes.
    if (score !== this.lastScore) {
      $("score").textContent = score;
      this.lastScore = score;
    }
    const clock = formatClock(frame.match_time);
    if ($("clock").textContent !== clock) $("clock").textContent = clock;
    $("sudden-death").hidden = !frame.sudden_death;
  }

  finished(end) {
    this.ended = true;
    this.phase = "ended";
    this.held = null;
    $("controls-hint").hidden = true;
    seats.forget(this.matchId);
    const hostWon = end.winner === this.host;
    this.renderScore({
      left_score: hostWon ? end.winner_score : end.loser_score,
      right_score: hostWon ? end.loser_score : end.winner_score,
      match_time: this.frames.length ? this.frames[this.frames.length - 1].frame.match_time : 0,
      sudden_death: !$("sudden-death").hidden,
    });
    const me = this.session.username;
    this.renderResult(end, me);
    $("rematch").hidden = !(me === end.winner || me === end.loser);
    $("watch-replay").hidden = false;
    $("lobby-phase").hidden = true;
    $("match-end").hidden = false;
    this.finalText = "Match over";
    this.session.refresh();
    this.lobby.refreshSoon();
  }

  // The result box: who won (you, when `me` played), the score and the Elo changes.
  renderResult(end, me) {
    let title = `${end.winner} wins`;
    if (me === end.winner) title = "You win!";
    else if (me === end.loser) title = `You lose: ${end.winner} wins`;
    $("end-title").textContent = title;
    $("end-score").textContent = `${end.winner} ${end.winner_score} – ${end.loser_score} ${end.loser}`;
    const change = (name, before, after) => {
      const delta = after - before;
      const sign = delta >= 0 ? "+" : "−";
      return h("li", {}, `${name}: Elo ${before} → ${after} `,
        h("span", { class: delta >= 0 ? "gain" : "loss" }, `(${sign}${Math.abs(delta)})`));
    };
    $("end-elo").replaceChildren(
      change(end.winner, end.winner_elo_before_match, end.winner_elo_after_match),
      change(end.loser, end.loser_elo_before_match, end.loser_elo_after_match));
  }

  // A match that ended before this page looked at it: show its result if it has one.
  async showFinished(matchId) {
    let end;
    try {
      end = await api("GET", `api/completed_matches/${matchId}/`);
    } catch (error) {
      if (this.matchId === matchId) this.label.set("closed", "This match does not exist.");
      return;
    }
    if (this.matchId !== matchId) return;
    this.label.set("closed", "This match is over.");
    // A completed match knows its winner and loser, not who hosted it.
    this.host = end.winner;
    this.challenger = end.loser;
    this.renderPlayers();
    $("match-players").textContent = `${end.winner} beat ${end.loser}`;
    this.finished(end);
  }

  // -- replays -------------------------------------------------------------------------

  async showReplay(matchId) {
    this.role = "spectator";
    $("match-role").textContent = REPLAY_ROLE_TEXT;
    this.connectReplay(0);
    let end;
    try {
      end = await api("GET", `api/completed_matches/${matchId}/`);
    } catch (error) {
      return;  // the stream says why there is nothing to replay
    }
    if (this.matchId !== matchId || !this.replay) return;
    $("match-players").textContent = `${end.winner} beat ${end.loser} ${end.winner_score} – ${end.loser_score}`;
  }

  // Stream the replay at the chosen speed, from `position` ms.
  connectReplay(position) {
    this.leave();
    this.replayStarted = false;
    this.replayEnded = false;
    this.finalText = null;
    const speed = this.replayBar.speed;
    const query = speed === 1 ? "role=spectator" : `role=spectator&speed=${speed}`;
    this.socket = new JSONSocket({
      url: socketURL(`ws/game/${this.matchId}/?${query}`),
      label: this.label,
      names: { connecting: "Connecting…", connected: "Connected" },
      onOpen: () => {
        if (position > 0) this.socket.send({ command: "seek", ms: Math.round(position) });
      },
      onMessage: (message) => this.received(message),
      decide: (code, reason) => this.decide(code, reason),
    });
    this.socket.open();
  }

  replayReceived(message) {
    switch (message.message_type) {
      case "replay": {
        this.replayStarted = true;
        this.replayEnded = false;
        this.jump = true;
        this.replayBar.started(message);
        $("match-end").hidden = true;
        if (this.phase === "lobby") this.started(this.sizes);
        this.phase = "playing";
        this.loop();
        const truncated = message.truncated ? " (the replay keeps only the beginning)" : "";
        this.label.set("connected", `Replaying at ${message.speed}×${truncated}`);
        return undefined;
      }
      case "init":
        this.sizes = message;
        return undefined;
      case "status":
        this.status(message);
        this.replayBar.frame();
        return undefined;
      case "end":
        // The result, as the players saw it at the end ("Watch replay" plays it again).
        $("match-players").textContent = `${message.winner} beat ${message.loser} `
          + `${message.winner_score} – ${message.loser_score}`;
        this.renderResult(message, null);
        $("rematch").hidden = true;
        $("watch-replay").hidden = false;
        $("match-end").hidden = false;
        return undefined;
      case "replay_end":
        this.replayEnded = true;
        this.phase = "ended";
        this.replayBar.ended();
        this.label.set("connected", "Replay ended");
        return undefined;
      case "lobby":
        // Not completed: the spectator URL of an ongoing match watches it live.
        if (!this.replayStarted) this.navigate(`#/match/${this.matchId}`);
        return undefined;
      default:
        return undefined;
    }
  }

  // The slider moved: on the stream if it still runs, else on a new one from there.
  seek(ms) {
    if (this.socket && this.socket.connected && this.replayStarted && !this.replayEnded) {
      this.socket.send({ command: "seek", ms });
    } else if (this.matchId !== null) {
      this.connectReplay(ms);
    }
  }

  // The speed is the stream's query parameter: a new stream, from where this one is.
  changeSpeed() {
    if (this.matchId === null || !this.replay) return;
    const { position, duration } = this.replayBar;
    this.connectReplay(this.replayEnded || position >= duration ? 0 : position);
  }

  async rematch() {
    try {
      const match = await api("POST", "api/ongoing_matches/");
      seats.remember(match.id, "host");
      this.navigate(`#/match/${match.id}`);
    } catch (error) {
      $("end-score").textContent = `Could not create a match: ${error.message}`;
    }
  }

  // -- keyboard ---------------------------------------------------------------------

  key(event, down) {
    if (!this.visible || this.phase !== "playing") return;
    if (this.role !== "host" && this.role !== "challenger") return;
    const direction = { ArrowUp: "up", ArrowDown: "down" }[event.key];
    this.fast = event.shiftKey;
    if (!direction) return;
    if (down && isTyping(event.target)) return;
    event.preventDefault();  // no page scroll while playing
    if (down) {
      this.held = direction;
      if (!this.hintShown) {
        this.hintShown = true;
        $("controls-hint").hidden = true;
      }
    } else if (this.held === direction) {
      this.held = null;
    }
  }

  // -- drawing ----------------------------------------------------------------------

  resize() {
    const wrap = $("field-wrap");
    const size = Math.max(120, Math.floor(Math.min(wrap.clientWidth, wrap.clientHeight || wrap.clientWidth)));
    this.ratio = fitCanvas(this.canvas, size, size);
    this.draw();
  }

  loop() {
    if (this.looping) return;
    this.looping = true;
    const step = () => {
      if (!this.visible || this.phase === "lobby" || !this.socket) {
        this.looping = false;
        return;
      }
      this.draw();
      if (this.phase === "ended") {
        this.looping = false;
        return;
      }
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  // The state to draw now: between the two frames around (now - delay).
  interpolated() {
    const frames = this.frames;
    if (frames.length === 0) return null;
    const renderAt = performance.now() - RENDER_DELAY_MS;
    let newer = frames.length - 1;
    while (newer > 0 && frames[newer - 1].at > renderAt) newer -= 1;
    const b = frames[newer];
    const a = frames[newer - 1];
    if (!a || renderAt >= b.at) return b.frame;
    const span = b.at - a.at;
    const t = span > 0 ? Math.min(1, Math.max(0, (renderAt - a.at) / span)) : 1;
    const lerp = (key) => a.frame[key] + (b.frame[key] - a.frame[key]) * t;
    const goal = a.frame.left_score !== b.frame.left_score || a.frame.right_score !== b.frame.right_score;
    return {
      ...b.frame,
      left_paddle_y: lerp("left_paddle_y"),
      right_paddle_y: lerp("right_paddle_y"),
      // After a goal the ball is served again from the centre: no sweep across the field.
      ball_x: goal ? b.frame.ball_x : lerp("ball_x"),
      ball_y: goal ? b.frame.ball_y : lerp("ball_y"),
    };
  }

  draw() {
    const { canvas, context } = this;
    const size = canvas.width;
    if (!size) return;
    const styles = getComputedStyle(document.documentElement);
    const ink = styles.getPropertyValue("--field-ink").trim() || "#f0f3f6";
    const mine = styles.getPropertyValue("--mine").trim() || "#f5a524";
    const line = styles.getPropertyValue("--field-line").trim() || "#4a5563";
    context.clearRect(0, 0, size, size);
    // The centre line.
    context.strokeStyle = line;
    context.lineWidth = Math.max(1, size / 300);
    context.setLineDash([size / 40, size / 40]);
    context.beginPath();
    context.moveTo(size / 2, 0);
    context.lineTo(size / 2, size);
    context.stroke();
    context.setLineDash([]);

    const state = this.interpolated() || { left_paddle_y: 0.5, right_paddle_y: 0.5, ball_x: 0.5, ball_y: 0.5 };
    const { paddle_height: height, paddle_width: width, ball_radius: radius } = this.sizes;
    const paddle = (x, y, highlighted) => {
      context.fillStyle = highlighted ? mine : ink;
      context.fillRect((x - width / 2) * size, (y - height / 2) * size, width * size, height * size);
    };
    paddle(HOST_X, state.left_paddle_y, this.role === "host");
    paddle(CHALLENGER_X, state.right_paddle_y, this.role === "challenger");
    if (this.phase !== "lobby") {
      context.fillStyle = ink;
      context.beginPath();
      context.arc(state.ball_x * size, state.ball_y * size, radius * size, 0, Math.PI * 2);
      context.fill();
    }
    // What was drawn, for anyone checking the picture against the server's frames.
    canvas.dataset.drawn = JSON.stringify({
      left: Number(state.left_paddle_y.toFixed(4)),
      right: Number(state.right_paddle_y.toFixed(4)),
      ball: [Number(state.ball_x.toFixed(4)), Number(state.ball_y.toFixed(4))],
    });
  }
}
