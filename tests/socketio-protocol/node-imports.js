// Node.js globals for test-suite.js, as in the socket.io-protocol repository, with one
// change for gameproto: the suite talks to the server named by SERVER_URL (for
// example http://127.0.0.1:PORT) instead of the http://localhost:3000 that
// test-suite.js hard-codes, so that it can run against a server on a free port.
import fetch from "node-fetch";
import { WebSocket } from "ws";
import chai from "chai";
import chaiString from "chai-string";

chai.use(chaiString);

const server = new URL(process.env.SERVER_URL ?? "http://localhost:3000");

function toServer(address) {
  const url = new URL(address);
  url.host = server.host;
  return url.toString();
}

globalThis.fetch = (address, options) => fetch(toServer(address), options);
globalThis.WebSocket = class extends WebSocket {
  constructor(address, ...rest) {
    super(toServer(address), ...rest);
  }
};
globalThis.chai = chai;
