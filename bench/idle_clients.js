// Idle clients for bench/idle_connections.py, all in this one node process: official
// socket.io-client sockets (WebSocket or polling) in the chat, or plain WebSockets (the
// `ws` package socket.io-client uses) on the match and arena endpoints. Each client
// connects from its own loopback address, 127.1.X.Y, as distinct users would.
//
//   node bench/idle_clients.js
//
// Reads one JSON command a line on stdin and answers each with one JSON line on stdout:
//
//   {"cmd": "socketio", "url": URL, "transport": "websocket"|"polling", "count": N,
//    "first": I, "room_size": R}
//       connects N chat members (clients I .. I+N-1: address and name from the index),
//       member i in room "idle<i / R>", each registered as "u<i>" (the register ack
//       awaited); answers {"connected", "failed", "retried" (clients that failed once and
//       were tried again), "seconds", "error"? (the first failure)}
//   {"cmd": "ws", "sockets": [[URL, TOKEN|null], ...], "first": I, "expect": TYPE,
//    "register": BOOL}
//       opens one WebSocket a pair (Authorization: Token TOKEN), waits for its first
//       message (a match's {"status": "success"}), or with register sends the arena's
//       RegisterPlayerCommand and waits for its RegisterPlayerAck; same answer
//   {"cmd": "status"}
//       {"open", "closed", "unpinged" (open clients that have not had a heartbeat ping
//       yet: Engine.IO's, or the WebSocket ping of the match and arena endpoints),
//       "reasons": {why a client closed: how many}}
//   {"cmd": "exit"} (or the end of stdin) ends the process, and every client with it.
//
// socket.io-client and ws come from tests/interop (`npm ci` there).
"use strict";
const http = require("http");
const path = require("path");
const readline = require("readline");

const interop = path.join(__dirname, "..", "tests", "interop");
const { io } = require(require.resolve("socket.io-client", { paths: [interop] }));
const WebSocket = require(require.resolve("ws", { paths: [interop] }));

const IN_FLIGHT = 100; // connections being opened at once
const TIMEOUT = 60000; // per client, from its first attempt

const clients = []; // {open, pings, close()}
const reasons = {};

const address = (i) => `127.1.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`;

function closed(client, why) {
  if (!client.open) return;
  client.open = false;
  reasons[why] = (reasons[why] || 0) + 1;
}

function withTimeout(promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out`)), TIMEOUT); }),
  ]).finally(() => clearTimeout(timer));
}

function socketioClient(url, transport, i, roomSize) {
  const options = {
    transports: [transport], auth: { room: `idle${Math.floor(i / roomSize)}` },
    forceNew: true, reconnection: false, localAddress: address(i), timeout: TIMEOUT,
  };
  // Polling requests go through an agent for the member's own address. Not kept alive:
  // while its long-poll GET waits, a member's POST would hold a second connection, and
  // 10,000 members two each would be more than the servers' RLIMIT_NOFILE (a browser
  // shares its connections among tabs). A POST's connection closes once answered,
  // which is what engine.io-client does in node without an agent.
  if (transport === "polling") options.agent = new http.Agent({ keepAlive: false, localAddress: address(i) });
  const socket = io(url, options);
  const client = { open: false, pings: 0, close: () => socket.disconnect() };
  socket.io.on("ping", () => { client.pings++; });
  const ready = new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  }).then(async () => {
    client.open = true;
    socket.on("disconnect", (why) => closed(client, `socket.io: ${why}`));
    if ((await socket.timeout(TIMEOUT).emitWithAck("register", `u${i}`)) !== true) {
      throw new Error("register refused");
    }
    return client;
  });
  return withTimeout(ready, `socket.io client ${i}`).catch((e) => { socket.disconnect(); throw e; });
}

function wsClient(url, token, i, register) {
  const headers = token ? { Authorization: `Token ${token}` } : {};
  const ws = new WebSocket(url, { headers, localAddress: address(i), perMessageDeflate: false });
  const client = { open: false, pings: 0, close: () => ws.terminate() };
  ws.on("ping", () => { client.pings++; });
  ws.on("error", () => {});
  const ready = new Promise((resolve, reject) => {
    ws.once("error", reject);
    ws.once("close", (code, reason) => reject(new Error(`closed ${code} ${reason}`)));
    ws.once("open", () => {
      client.open = true;
      if (register) ws.send(JSON.stringify({ type: "RegisterPlayerCommand" }));
    });
    const onMessage = (data) => {
      const message = JSON.parse(data.toString());
      if (register ? message.type === "RegisterPlayerAck" : message.status === "success") {
        ws.off("message", onMessage);
        resolve(client);
      } else if (message.error !== undefined || message.type === "InvalidCommandError") {
        reject(new Error(JSON.stringify(message)));
      }
    };
    ws.on("message", onMessage);
  }).then(() => {
    ws.on("close", (code) => closed(client, `ws close ${code}`));
    return client;
  });
  return withTimeout(ready, `ws client ${i}`).catch((e) => { ws.terminate(); throw e; });
}

// An error and what caused it (an engine.io transport error keeps it in .description).
function describe(e) {
  if (!e) return String(e);
  let text = String(e.message || e);
  const cause = e.description;
  if (cause !== undefined) {
    text += `: ${cause && cause.message ? cause.message : JSON.stringify(cause)}`;
    if (cause && cause.context) text += ` (status ${cause.context.status})`;
  }
  return text;
}

// Open count clients (make(k) opens the k-th), IN_FLIGHT at a time. A client that
// fails is tried once more (answer.retried, and the first error); one that fails twice
// counts as failed.
async function openAll(count, make) {
  const started = Date.now();
  let next = 0;
  let failed = 0;
  let retried = 0;
  let error;
  async function worker() {
    while (next < count) {
      const k = next++;
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          clients.push(await make(k));
          break;
        } catch (e) {
          error = error || describe(e);
          if (attempt === 0) retried++;
          else failed++;
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, count) }, worker));
  const answer = { connected: count - failed, failed, retried, seconds: (Date.now() - started) / 1000 };
  if (error) answer.error = error;
  return answer;
}

async function handle(command) {
  switch (command.cmd) {
    case "socketio":
      return openAll(command.count, (k) => socketioClient(
        command.url, command.transport, command.first + k, command.room_size));
    case "ws":
      return openAll(command.sockets.length, (k) => wsClient(
        command.sockets[k][0], command.sockets[k][1], command.first + k, command.register));
    case "status": {
      const open = clients.filter((c) => c.open);
      return {
        open: open.length, closed: clients.length - open.length,
        unpinged: open.filter((c) => c.pings === 0).length, reasons,
      };
    }
    case "exit":
      process.exit(0);
    default:
      return { error: `unknown command ${command.cmd}` };
  }
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(() => handle(JSON.parse(line)))
    .catch((e) => ({ error: String(e && e.stack || e) }))
    .then((answer) => process.stdout.write(JSON.stringify(answer) + "\n"));
});
lines.on("close", () => queue.then(() => process.exit(0)));
