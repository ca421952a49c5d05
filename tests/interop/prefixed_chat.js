// Chats through a gameproto server mounted below a prefix, with the official
// socket.io-client and its `path` option, and prints what it saw as one JSON object.
// Usage: node prefixed_chat.js SERVER_URL PATH ROOM
// e.g.   node prefixed_chat.js http://127.0.0.1:8000 /game/socket.io/ room-1
"use strict";
const { io } = require("socket.io-client");

const [url, path, room] = process.argv.slice(2);
const result = {};

// A run that hangs is reported, never waited for forever.
setTimeout(() => {
  result.error = "timed out";
  console.log(JSON.stringify(result));
  process.exit(2);
}, 20000).unref();

const once = (emitter, event) => new Promise((resolve) => emitter.once(event, (...a) => resolve(a)));

function client(transports) {
  const socket = io(url, { path, transports, auth: { room }, forceNew: true, reconnection: false });
  socket.received = [];
  socket.on("message", (m) => socket.received.push(m));
  return socket;
}

async function messageSaying(socket, text) {
  while (!socket.received.some((m) => m.message === text)) await once(socket, "message");
  return socket.received.find((m) => m.message === text);
}

async function main() {
  // One client on each transport: polling (with its upgrade) and WebSocket alone.
  const alice = client(["polling", "websocket"]);
  const bob = client(["websocket"]);
  await Promise.all([once(alice, "connect"), once(bob, "connect")]);
  result.registerAlice = await alice.emitWithAck("register", "alice");
  result.registerBob = await bob.emitWithAck("register", "bob");
  await messageSaying(alice, "bob has joined the chat");
  result.sendAck = await alice.emitWithAck("message", { message: "hello below a prefix" });
  result.bobReceived = await messageSaying(bob, "hello below a prefix");
  if (alice.io.engine.transport.name !== "websocket") await once(alice.io.engine, "upgrade");
  result.aliceTransport = alice.io.engine.transport.name;
  alice.disconnect();
  result.leave = (await messageSaying(bob, "alice left the chat")).from;
  bob.disconnect();
}

main().then(
  () => {
    console.log(JSON.stringify(result));
    process.exit(0);
  },
  (error) => {
    result.error = String(error);
    console.log(JSON.stringify(result));
    process.exit(1);
  }
);
