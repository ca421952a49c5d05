// Drives the gameproto chat and the conformance server with the official
// socket.io-client, as a browser application would, and prints what it saw as one
// JSON object. Usage: node chat_client.js CHAT_URL CONFORMANCE_URL MODE ROOM
// MODE: default (polling, then upgrade) | websocket | polling.
"use strict";
const { io } = require("socket.io-client");

const [chatUrl, conformanceUrl, mode, room] = process.argv.slice(2);
const transportOptions = mode === "default" ? {} : { transports: [mode] };
const result = {};

// A run that hangs is reported, never waited for forever.
setTimeout(() => {
  result.error = "timed out";
  console.log(JSON.stringify(result));
  process.exit(2);
}, 20000).unref();

function client(url, auth) {
  const socket = io(url, { ...transportOptions, auth, forceNew: true, reconnection: false });
  socket.received = [];
  socket.waiters = [];
  socket.on("message", (m) => {
    socket.received.push(m);
    socket.waiters = socket.waiters.filter((w) => !(w.test(m) && (w.resolve(m), true)));
  });
  return socket;
}

function waitForMessage(socket, test) {
  const seen = socket.received.find(test);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => socket.waiters.push({ test, resolve }));
}

const once = (emitter, event) => new Promise((resolve) => emitter.once(event, (...a) => resolve(a)));
const says = (text) => (m) => m.from === "Server" && m.message === text;

async function transportName(socket) {
  // In the default mode the upgrade completes a moment after the connection.
  if (mode === "default" && socket.io.engine.transport.name !== "websocket") {
    await once(socket.io.engine, "upgrade");
  }
  return socket.io.engine.transport.name;
}

async function chat() {
  const alice = client(chatUrl, { room });
  const bob = client(chatUrl, { room });
  await Promise.all([once(alice, "connect"), once(bob, "connect")]);
  result.registerAlice = await alice.emitWithAck("register", "alice");
  result.aliceSawOwnJoin = (await waitForMessage(alice, says("alice has joined the chat"))).message;
  result.registerDuplicate = await bob.emitWithAck("register", "ALICE");
  result.registerBob = await bob.emitWithAck("register", "bob");
  await waitForMessage(alice, says("bob has joined the chat"));
  result.sendAck = await alice.emitWithAck("message", { from: "mallory", message: "hello" });
  result.bobReceived = await waitForMessage(bob, (m) => m.message === "hello");
  result.aliceReceived = await waitForMessage(alice, (m) => m.message === "hello");
  result.emptyAck = await alice.emitWithAck("message", { message: "" });
  result.unregisteredAck = await client(chatUrl, { room }).emitWithAck("message", { message: "x" });
  result.transport = await transportName(alice);
  alice.disconnect();
  result.leave = await waitForMessage(bob, says("alice left the chat"));
  const refused = client(chatUrl, { room: "not a room" });
  result.invalidRoom = (await once(refused, "connect_error"))[0].message;
  bob.disconnect();
}

async function conformance() {
  const socket = client(conformanceUrl, { token: "t" });
  result.auth = (await once(socket, "auth"))[0];
  socket.emit("message", "text", Buffer.from([1, 2, 3]));
  const [text, data] = await once(socket, "message-back");
  result.binaryBack = { text, isBuffer: Buffer.isBuffer(data), bytes: Array.from(data) };
  result.ackArgs = await new Promise((resolve) =>
    socket.emit("message-with-ack", 1, { b: Buffer.from([9]) }, (...args) =>
      resolve([args[0], Buffer.isBuffer(args[1].b), Array.from(args[1].b)])
    )
  );
  const custom = client(conformanceUrl + "/custom", {});
  result.customAuth = (await once(custom, "auth"))[0];
  const nowhere = client(conformanceUrl + "/nowhere", {});
  result.invalidNamespace = (await once(nowhere, "connect_error"))[0].message;
  result.conformanceTransport = await transportName(socket);
  const closed = once(socket, "disconnect");
  socket.disconnect();
  result.disconnectReason = (await closed)[0];
  custom.disconnect();
}

chat()
  .then(conformance)
  .then(() => {
    console.log(JSON.stringify(result));
    process.exit(0);
  })
  .catch((e) => {
    result.error = String(e && e.stack ? e.stack : e);
    console.log(JSON.stringify(result));
    process.exit(1);
  });
