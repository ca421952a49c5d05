// The arena viewer: the controller's snapshots (/ws/arena/{id}/control) drawn as they
// come, players as headed triangles with their life, shots as dots, the user's own bots
// highlighted; "Start" starts a round.  One controller per arena: watching takes the
// controller's place (docs/web.md).

import { api, socketURL } from "./api.js";
import { JSONSocket, StateLabel } from "./connection.js";
import { $, fitCanvas, h } from "./dom.js";

const KEEP_SNAPSHOTS = 6;
const RENDER_DELAY_MS = 25;  // about one tick (20 ms by default) behind

const FINAL_CLOSES = {
  4001: "Log in to watch an arena.",
  4003: "Only the arena's owner can watch it here.",
  4004: "This arena does not exist.",
  4009: "Another viewer took over this arena (one viewer at a time). Press Watch to take it back.",
};

export class ArenaView {
  constructor(session, navigate) {
    this.session = session;
    this.navigate = navigate;
    this.label = new StateLabel($("arena-connection"));
    this.canvas = $("arena-canvas");
    this.context = this.canvas.getContext("2d");
    this.arenas = [];
    this.arenaId = null;
    this.config = { width: 800, height: 400, player_radius: 5, player_life: 100, shot_radius: 1 };
    this.socket = null;
    this.snapshots = [];
    this.started = false;
    this.visible = false;
    this.refusal = null;

    $("arena-select").addEventListener("change", (event) => this.navigate(`#/arena/${event.target.value}`));
    $("arena-watch").addEventListener("click", () => this.watch());
    $("arena-start").addEventListener("click", () => this.socket?.send({ type: "StartGameCommand" }));
    $("arena-create").addEventListener("click", () => this.create());
    new ResizeObserver(() => this.resize()).observe(this.canvas.parentElement);
    session.onChange((user, changed) => {
      if (changed) this.stop();
      this.renderButtons();
    });
  }

  async show(arenaId) {
    this.visible = true;
    if (arenaId !== this.arenaId) {
      this.stop();
      this.arenaId = arenaId;
      this.snapshots = [];
      this.renderPlayers([]);
      $("arena-round").textContent = "";
      this.label.set("", "Press Watch to see this arena live.");
    }
    $("arena-title").textContent = `Arena ${arenaId}`;
    this.renderButtons();
    await this.loadArenas();
    this.resize();
  }

  hide() {
    this.visible = false;
  }

  async loadArenas() {
    if (!this.session.user) {
      this.label.set("closed", "Log in to watch an arena.");
      return;
    }
    try {
      this.arenas = await api("GET", "api/arenas/");
    } catch (error) {
      this.label.set("error", `Cannot list the arenas: ${error.message}`);
      return;
    }
    const select = $("arena-select");
    const options = this.arenas.map((arena) => h("option", { value: arena.id },
      arena.owner ? `${arena.id} (${arena.owner})` : arena.id));
    select.replaceChildren(...options);
    select.value = this.arenaId;
    const arena = this.arenas.find((a) => a.id === this.arenaId);
    if (arena) {
      this.config = arena.config;
      if (!this.socket) this.started = arena.started;
      this.resize();
    } else if (this.arenaId) {
      this.label.set("closed", "This arena does not exist.");
    }
    this.renderButtons();
  }

  async create() {
    try {
      const arena = await api("POST", "api/arenas/", {});
      this.navigate(`#/arena/${arena.id}`);
    } catch (error) {
      this.label.set("error", `Could not create an arena: ${error.message}`);
    }
  }

  watch() {
    this.stop();
    this.refusal = null;
    this.snapshots = [];
    this.socket = new JSONSocket({
      url: socketURL(`ws/arena/${encodeURIComponent(this.arenaId)}/control`),
      label: this.label,
      names: { connecting: "Connecting…", connected: "Watching live" },
      onOpen: () => this.renderButtons(),
      onMessage: (message) => this.received(message),
      decide: (code, reason) => {
        this.renderButtons();
        if (FINAL_CLOSES[code]) return { retry: false, text: FINAL_CLOSES[code] };
        if (code === 1000) return { retry: false, text: `Closed: ${reason}` };
        if (code === 4029) return { retry: true, state: "busy", text: "Server busy (too many connections). Retrying" };
        return { retry: true };
      },
    });
    this.socket.open();
    this.renderButtons();
    this.loop();
  }

  stop() {
    if (this.socket) this.socket.close();
    this.socket = null;
    this.renderButtons();
  }

  renderButtons() {
    const signedIn = this.session.user !== null;
    const watching = this.socket !== null && this.socket.connected;
    $("arena-watch").disabled = !signedIn;
    $("arena-create").disabled = !signedIn;
    $("arena-start").disabled = !watching || this.started;
  }

  received(message) {
    const data = message.data || {};
    switch (message.type) {
      case "GameSnapshotNotification":
        this.snapshots.push({ at: performance.now(), snapshot: data.arena_snapshot });
        if (this.snapshots.length > KEEP_SNAPSHOTS) this.snapshots.shift();
        this.renderPlayers(data.arena_snapshot.players_snapshots);
        return;
      case "StartGameAck":
        this.started = true;
        $("arena-round").textContent = "Round started.";
        break;
      case "GameOverNotification":
        this.started = false;
        $("arena-round").textContent = data.winner === null
          ? "Round over: nobody is left."
          : `Round over: player ${data.winner} wins.`;
        break;
      case "InvalidCommandError":
        if (data.reason === "the game has already started") this.started = true;
        $("arena-round").textContent = data.reason;
        break;
      default:
        return;
    }
    this.renderButtons();
  }

  renderPlayers(players) {
    const me = this.session.username;
    const key = JSON.stringify(players.map((p) => [p.id, p.user, p.life, p.tokens,
      Math.round(p.coordinates.x), Math.round(p.coordinates.y)]));
    if (key === this.lastPlayers) return;
    this.lastPlayers = key;
    const items = players.map((player) => {
      const mine = me !== null && player.user === me;
      const owner = player.user ? ` · ${player.user}${mine ? " (you)" : ""}` : "";
      const { x, y } = player.coordinates;
      return h("li", { class: mine ? "mine" : "", dataset: { playerId: player.id } },
        `Player ${player.id}${owner} · life ${player.life} · tokens ${player.tokens} · at (${Math.round(x)}, ${Math.round(y)})`);
    });
    $("arena-players").replaceChildren(...(items.length ? items
      : [h("li", { class: "empty" }, "Nobody here yet: run a bot from Code, or examples/arena_bot.py.")]));
  }

  // -- drawing ----------------------------------------------------------------------

  resize() {
    const parent = this.canvas.parentElement;
    const side = parent.querySelector(".arena-side");
    const narrow = matchMedia("(max-width: 799px)").matches;
    const available = Math.max(160, parent.clientWidth - (narrow || !side ? 0 : side.offsetWidth + 12));
    const width = Math.floor(available);
    const height = Math.floor(width * this.config.height / this.config.width);
    fitCanvas(this.canvas, width, height);
    this.draw();
  }

  loop() {
    if (this.looping) return;
    this.looping = true;
    const step = () => {
      if (!this.socket) {
        this.looping = false;
        return;
      }
      if (this.visible) this.draw();
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  interpolated() {
    const snapshots = this.snapshots;
    if (!snapshots.length) return null;
    const renderAt = performance.now() - RENDER_DELAY_MS;
    let newer = snapshots.length - 1;
    while (newer > 0 && snapshots[newer - 1].at > renderAt) newer -= 1;
    const b = snapshots[newer];
    const a = snapshots[newer - 1];
    if (!a || renderAt >= b.at) return b.snapshot;
    const t = Math.min(1, Math.max(0, (renderAt - a.at) / Math.max(1, b.at - a.at)));
    const before = new Map(a.snapshot.players_snapshots.map((p) => [p.id, p.coordinates]));
    const beforeShots = new Map(a.snapshot.shots_snapshots.map((s) => [s.id, s.coordinates]));
    const mix = (from, to) => (from ? { x: from.x + (to.x - from.x) * t, y: from.y + (to.y - from.y) * t } : to);
    return {
      players_snapshots: b.snapshot.players_snapshots.map((p) => ({ ...p, coordinates: mix(before.get(p.id), p.coordinates) })),
      shots_snapshots: b.snapshot.shots_snapshots.map((s) => ({ ...s, coordinates: mix(beforeShots.get(s.id), s.coordinates) })),
    };
  }

  draw() {
    const { canvas, context } = this;
    if (!canvas.width) return;
    const scale = canvas.width / this.config.width;
    const styles = getComputedStyle(document.documentElement);
    const ink = styles.getPropertyValue("--field-ink").trim() || "#f0f3f6";
    const mineColour = styles.getPropertyValue("--mine").trim() || "#f5a524";
    const ok = styles.getPropertyValue("--ok").trim() || "#3fb950";
    const danger = styles.getPropertyValue("--danger").trim() || "#ff7b72";
    context.clearRect(0, 0, canvas.width, canvas.height);
    const snapshot = this.interpolated();
    if (!snapshot) return;
    const me = this.session.username;
    const radius = Math.max(4, this.config.player_radius * scale);
    const drawn = {};
    for (const player of snapshot.players_snapshots) {
      const x = player.coordinates.x * scale;
      const y = player.coordinates.y * scale;
      const heading = (player.rotation * Math.PI) / 180;
      const mine = me !== null && player.user === me;
      drawn[player.id] = [Number(player.coordinates.x.toFixed(2)), Number(player.coordinates.y.toFixed(2))];
      context.save();
      context.translate(x, y);
      context.rotate(heading);
      context.beginPath();
      context.moveTo(radius * 1.6, 0);
      context.lineTo(-radius, radius);
      context.lineTo(-radius * 0.5, 0);
      context.lineTo(-radius, -radius);
      context.closePath();
      context.fillStyle = mine ? mineColour : ink;
      context.fill();
      if (mine) {
        context.lineWidth = 2;
        context.strokeStyle = mineColour;
        context.beginPath();
        context.arc(0, 0, radius * 2.2, 0, Math.PI * 2);
        context.stroke();
      }
      context.restore();
      // Life bar and name above the player.
      const life = Math.max(0, Math.min(1, player.life / (this.config.player_life || 100)));
      const barWidth = radius * 4;
      context.fillStyle = danger;
      context.fillRect(x - barWidth / 2, y - radius * 3, barWidth, 3);
      context.fillStyle = ok;
      context.fillRect(x - barWidth / 2, y - radius * 3, barWidth * life, 3);
      context.fillStyle = mine ? mineColour : ink;
      context.font = `${Math.max(10, Math.round(11 * (window.devicePixelRatio || 1)))}px system-ui, sans-serif`;
      context.textAlign = "center";
      context.fillText(player.user ? `${player.id} ${player.user}` : `${player.id}`, x, y - radius * 3.6);
    }
    context.fillStyle = ink;
    for (const shot of snapshot.shots_snapshots) {
      context.beginPath();
      context.arc(shot.coordinates.x * scale, shot.coordinates.y * scale, Math.max(2, (this.config.shot_radius || 1) * scale), 0, Math.PI * 2);
      context.fill();
    }
    canvas.dataset.drawn = JSON.stringify(drawn);
  }
}
