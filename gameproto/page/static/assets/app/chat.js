// The chat beside every view: the room of the current view (a match's, an arena's) or
// the lobby, over Socket.IO with the official client, under the account's name.

import { io } from "../vendor/socket.io-client/socket.io.esm.min.js";
import { basePath } from "./api.js";
import { StateLabel } from "./connection.js";
import { $, appendToLog, h, nameColour } from "./dom.js";

const SERVER = "Server";

export class Chat {
  constructor(session) {
    this.session = session;
    this.label = new StateLabel($("chat-connection"));
    this.viewRoom = null;       // {room, title} of the current view, if it has a room
    this.room = "lobby";
    this.socket = null;
    this.name = null;
    $("chat-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    $("room-view").addEventListener("click", () => this.join(this.viewRoom.room));
    $("room-lobby").addEventListener("click", () => this.join("lobby"));
    session.onChange((user, changed) => {
      this.renderInput();
      if (changed) this.connect();  // register under the new name, or stay to read
    });
    this.renderInput();
  }

  // The view changed: its room becomes the chat's room (a view without one keeps the lobby).
  setViewRoom(viewRoom) {
    const same = viewRoom?.room === this.viewRoom?.room;
    this.viewRoom = viewRoom;
    $("room-view").hidden = !viewRoom;
    $("room-lobby").hidden = !viewRoom;
    if (viewRoom) $("room-view").textContent = viewRoom.title;
    if (!same || !this.socket) this.join(viewRoom ? viewRoom.room : "lobby");
  }

  join(room) {
    if (room === this.room && this.socket) return;
    this.room = room;
    $("room-view").setAttribute("aria-pressed", String(room !== "lobby"));
    $("room-lobby").setAttribute("aria-pressed", String(room === "lobby"));
    this.connect();
  }

  connect() {
    if (this.socket) {
      this.socket.removeAllListeners();
      this.socket.io.removeAllListeners();
      this.socket.disconnect();
    }
    $("chat-log").replaceChildren();
    this.name = null;
    const room = this.room;
    this.label.set("connecting", `Connecting to ${this.roomTitle(room)}…`);
    // A connection of its own per room: the room is chosen when the socket connects.
    const socket = io(location.origin, { path: `${basePath()}socket.io/`, auth: { room }, forceNew: true });
    this.socket = socket;
    socket.on("connect", () => {
      this.label.set("connected", `Connected to ${this.roomTitle(room)}`);
      this.register(socket);
    });
    socket.on("message", (payload) => this.show(payload));
    socket.on("disconnect", (reason) => {
      this.name = null;
      this.renderInput();
      if (reason === "io client disconnect") return;
      this.label.set("reconnecting", `Disconnected (${reason}). Reconnecting…`);
    });
    socket.on("connect_error", (error) => {
      if (socket.active) {
        this.label.set("reconnecting", `Cannot reach the chat (${error.message}). Reconnecting…`);
      } else {
        this.label.set("closed", `The chat refused the connection: ${error.message}`);
      }
    });
    socket.io.on("reconnect_attempt", (attempt) => {
      this.label.set("reconnecting", `Reconnecting (attempt ${attempt})…`);
    });
  }

  roomTitle(room) {
    if (room === "lobby") return "the lobby";
    return this.viewRoom && this.viewRoom.room === room ? this.viewRoom.title.toLowerCase() : room;
  }

  // Names are unique per room: a second tab of the same account takes "ann (2)".
  register(socket, attempt = 1) {
    const username = this.session.username;
    if (!username) return;
    const name = attempt === 1 ? username : `${username} (${attempt})`;
    socket.emit("register", name, (accepted) => {
      if (socket !== this.socket) return;
      if (accepted) {
        this.name = name;
        this.renderInput();
      } else if (attempt < 5) {
        this.register(socket, attempt + 1);
      } else {
        this.label.set("error", "Could not take a name in this room.");
      }
    });
  }

  renderInput() {
    const input = $("chat-input");
    const signedIn = this.session.user !== null;
    const ready = signedIn && this.name !== null;
    input.disabled = !ready;
    $("chat-send").disabled = !ready;
    input.placeholder = signedIn ? (ready ? "Message" : "Joining the room…") : "Log in to chat";
  }

  send() {
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text || !this.socket || !this.name) return;
    this.socket.emit("message", { message: text }, (accepted) => {
      if (!accepted) this.note("Your message was not sent (too long, or too many messages).");
    });
    input.value = "";
  }

  show({ from, message }) {
    const line = from === SERVER
      ? h("p", { class: "server" }, message)
      : h("p", {}, h("span", { class: "from" }, from), ": ", message);
    if (from !== SERVER) line.firstChild.style.color = nameColour(from);
    appendToLog($("chat-log"), line, 500);
  }

  note(text) {
    appendToLog($("chat-log"), h("p", { class: "server" }, text), 500);
  }
}
