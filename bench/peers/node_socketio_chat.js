// The chat of docs/chat.md on Node's official Socket.IO server (socket.io 4.8, pinned by
// bench/peers/node/package-lock.json): the peer bench/chat_fanout.py measures gameproto
// against. Same path (/socket.io/), same events, same acks and the same order as
// gameproto and bench/peers/python_socketio_chat.py: a `register` ack before the join
// announcement, a `message` ack after the room has been sent the message.
//
//   (cd bench/peers/node && npm ci)
//   node bench/peers/node_socketio_chat.js [--port 0] [--host 127.0.0.1]
//
// prints `listening on 127.0.0.1:PORT` once it serves (the line the benchmark waits
// for), and runs until SIGTERM or SIGINT.
"use strict";
const http = require("http");
const path = require("path");

let Server;
try {
  ({ Server } = require(require.resolve("socket.io", { paths: [path.join(__dirname, "node")] })));
} catch (e) {
  console.error(`node_socketio_chat.js needs socket.io: (cd bench/peers/node && npm ci) (${e.message})`);
  process.exit(3);
}

const DEFAULT_ROOM = "lobby";
const ROOM_PATTERN = /^[A-Za-z0-9:_.-]{1,64}$/;
const MAX_MESSAGE_LENGTH = 4000;
const MAX_NAME_LENGTH = 32;
const SERVER_NAME = "Server";
const FORBIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Co}\p{Cn}]/u;

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : fallback;
}

// The name rules of docs/chat.md: NFKC, stripped, 1-32 code points, no control or
// unassigned characters, not the server's own name.
function normaliseName(raw) {
  if (typeof raw !== "string") return null;
  const name = raw.normalize("NFKC").trim();
  const length = [...name].length;
  if (length < 1 || length > MAX_NAME_LENGTH || FORBIDDEN.test(name)) return null;
  if (name.toLowerCase() === SERVER_NAME.toLowerCase()) return null;
  return name;
}

const httpServer = http.createServer();
// The official server's defaults, as gameproto's: pings 25 s / 20 s, 1 MB payloads.
const io = new Server(httpServer, { path: "/socket.io/", cors: { origin: "*" }, maxHttpBufferSize: 1e6 });
const names = new Map(); // room -> lower-cased names taken there

function announce(room, text) {
  io.to(room).emit("message", { from: SERVER_NAME, message: text });
}

io.use((socket, next) => {
  // No auth payload means the lobby; one that is not an object names no room.
  const auth = socket.handshake.auth;
  const room = auth && typeof auth === "object" ? (auth.room ?? DEFAULT_ROOM) : null;
  if (typeof room !== "string" || !ROOM_PATTERN.test(room)) return next(new Error("invalid room"));
  socket.data.room = room;
  next();
});

io.on("connection", (socket) => {
  const room = socket.data.room;
  socket.join(room);
  socket.on("register", (raw, ack) => {
    if (typeof ack !== "function") return;
    const name = normaliseName(raw);
    const taken = names.get(room) || new Set();
    names.set(room, taken);
    if (socket.data.name !== undefined || name === null || taken.has(name.toLowerCase())) {
      ack(false);
      return;
    }
    taken.add(name.toLowerCase());
    socket.data.name = name;
    ack(true);
    announce(room, `${name} has joined the chat`);
  });
  socket.on("message", (body, ack) => {
    if (typeof ack !== "function") return;
    const text = body && typeof body === "object" ? body.message : undefined;
    if (socket.data.name === undefined || typeof text !== "string"
        || text.length < 1 || text.length > MAX_MESSAGE_LENGTH) {
      ack(false);
      return;
    }
    io.to(room).emit("message", { from: socket.data.name, message: text });
    ack(true);
  });
  socket.on("disconnect", () => {
    if (socket.data.name === undefined) return;
    (names.get(room) || new Set()).delete(socket.data.name.toLowerCase());
    announce(room, `${socket.data.name} left the chat`);
  });
});

httpServer.listen(Number(option("--port", "0")), option("--host", "127.0.0.1"), () => {
  const { address, port } = httpServer.address();
  console.log(`listening on ${address}:${port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => { io.close(); httpServer.close(() => process.exit(0)); });
}
