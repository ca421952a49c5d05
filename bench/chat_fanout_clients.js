// N official socket.io-client clients in the chat rooms of a server at URL, all in this
// one node process; S of them send messages as fast as their acks come back for
// DURATION seconds. Prints one JSON object: messages sent, deliveries (messages received
// by the members of the sender's room, the sender included), and the delivery latency
// p50/p99 (send -> receipt on the same clock: the clients share this process).
//
//   node bench/chat_fanout_clients.js URL CLIENTS SENDERS DURATION [ROOM] [TRANSPORT] [ROOMS]
//
// TRANSPORT is websocket (the default) or polling; with ROOMS > 1 member i joins room
// ROOM<i mod ROOMS>, so the senders (the first S members) are spread over the rooms.
// socket.io-client comes from tests/interop (`npm ci` there).
"use strict";
const path = require("path");
const { performance } = require("perf_hooks");

const { io } = require(require.resolve("socket.io-client", {
  paths: [path.join(__dirname, "..", "tests", "interop")],
}));

const [url, clientsArg, sendersArg, durationArg, room = "bench", transport = "websocket",
  roomsArg = "1"] = process.argv.slice(2);
const rooms = Number(roomsArg);
const clients = Number(clientsArg);
const senders = Number(sendersArg);
const duration = Number(durationArg) * 1000;

function fail(why) {
  console.log(JSON.stringify({ error: why }));
  process.exit(2);
}

// A server that stops answering is reported, never waited for forever.
setTimeout(() => fail("timed out"), duration + 120000).unref();

const once = (emitter, event) => new Promise((resolve, reject) => {
  emitter.once(event, resolve);
  if (event === "connect") emitter.once("connect_error", reject);
});

function percentile(sorted, fraction) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] : 0;
}

async function main() {
  let measuring = false;
  let delivered = 0;
  let allDelivered = () => {};
  const latencies = [];
  const members = [];
  let joinsSeen = 0;
  const roomOf = (i) => (rooms > 1 ? `${room}${i % rooms}` : room);
  const roomSizes = new Map();
  for (let i = 0; i < clients; i++) roomSizes.set(roomOf(i), (roomSizes.get(roomOf(i)) || 0) + 1);
  // Every member hears every join in its room: the rooms are complete when all have.
  const joinsExpected = [...roomSizes.values()].reduce((sum, n) => sum + n * n, 0);
  let allJoined;
  const joined = new Promise((resolve) => { allJoined = resolve; });

  for (let i = 0; i < clients; i++) {
    // Each member connects from its own loopback address, as distinct users would:
    // gameproto's packet budget is per address for clients without a token.
    const socket = io(url, {
      transports: [transport], auth: { room: roomOf(i) }, forceNew: true, reconnection: false,
      localAddress: `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    });
    socket.on("message", (m) => {
      if (m.from === "Server") {
        if (++joinsSeen === joinsExpected) allJoined();
      } else if (measuring) {
        delivered++;
        latencies.push(performance.now() - Number(m.message));
        allDelivered();
      }
    });
    members.push(socket);
  }
  await Promise.all(members.map((s) => once(s, "connect"))).catch((e) => fail(`connect: ${e.message}`));
  const acks = await Promise.all(members.map((s, i) => s.emitWithAck("register", `user${i}`)));
  if (!acks.every((a) => a === true)) fail("a register was refused");
  await joined;

  let sent = 0;
  let expected = 0;
  measuring = true;
  const started = performance.now();
  const stopAt = started + duration;
  async function sender(socket, i) {
    while (performance.now() < stopAt) {
      if ((await socket.emitWithAck("message", { message: String(performance.now()) })) !== true) {
        fail("a message was refused");
      }
      sent++;
      expected += roomSizes.get(roomOf(i));
    }
  }
  await Promise.all(members.slice(0, senders).map((socket, i) => sender(socket, i)));
  // Acks come after the room was sent each message: wait for the last copies to land
  // (at most 10 s), so the rate counts every delivery over the time they took.
  if (delivered < expected) {
    await new Promise((resolve) => {
      allDelivered = () => delivered >= expected && resolve();
      setTimeout(resolve, 10000);
    });
  }
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  console.log(JSON.stringify({
    clients, senders, transport, rooms, elapsed, sent, delivered, expected,
    sent_per_s: sent / elapsed,
    delivered_per_s: delivered / elapsed,
    p50_ms: percentile(latencies, 0.5),
    p99_ms: percentile(latencies, 0.99),
  }));
  for (const socket of members) socket.disconnect();
  process.exit(0);
}

main().catch((e) => fail(String(e && e.stack || e)));
