// N official socket.io-client clients (WebSocket transport) in one chat room of a
// server at URL, all in this one node process; S of them send messages as fast as
// their acks come back for DURATION seconds. Prints one JSON object: messages sent,
// deliveries (messages received by members, the sender included), and the delivery
// latency p50/p99 (send -> receipt on the same clock: the clients share this process).
//
//   node bench/chat_fanout_clients.js URL CLIENTS SENDERS DURATION [ROOM]
//
// socket.io-client comes from tests/interop (`npm ci` there).
"use strict";
const path = require("path");
const { performance } = require("perf_hooks");

const { io } = require(require.resolve("socket.io-client", {
  paths: [path.join(__dirname, "..", "tests", "interop")],
}));

const [url, clientsArg, sendersArg, durationArg, room = "bench"] = process.argv.slice(2);
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
  let allJoined;
  const joined = new Promise((resolve) => { allJoined = resolve; });

  for (let i = 0; i < clients; i++) {
    // Each member connects from its own loopback address, as distinct users would:
    // gameproto's packet budget is per address for clients without a token.
    const socket = io(url, {
      transports: ["websocket"], auth: { room }, forceNew: true, reconnection: false,
      localAddress: `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    });
    socket.on("message", (m) => {
      if (m.from === "Server") {
        // Every member hears every join: the room is complete when all have.
        if (++joinsSeen === clients * clients) allJoined();
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
  measuring = true;
  const started = performance.now();
  const stopAt = started + duration;
  async function sender(socket) {
    while (performance.now() < stopAt) {
      if ((await socket.emitWithAck("message", { message: String(performance.now()) })) !== true) {
        fail("a message was refused");
      }
      sent++;
    }
  }
  await Promise.all(members.slice(0, senders).map(sender));
  // Acks come after the room was sent each message: wait for the last copies to land
  // (at most 10 s), so the rate counts every delivery over the time they took.
  const expected = sent * clients;
  if (delivered < expected) {
    await new Promise((resolve) => {
      allDelivered = () => delivered >= expected && resolve();
      setTimeout(resolve, 10000);
    });
  }
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  console.log(JSON.stringify({
    clients, senders, elapsed, sent, delivered, expected,
    sent_per_s: sent / elapsed,
    delivered_per_s: delivered / elapsed,
    p50_ms: percentile(latencies, 0.5),
    p99_ms: percentile(latencies, 0.99),
  }));
  for (const socket of members) socket.disconnect();
  process.exit(0);
}

main().catch((e) => fail(String(e && e.stack || e)));
