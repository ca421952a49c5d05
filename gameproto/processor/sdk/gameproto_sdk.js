'use strict';
/*
 * gameproto SDK for JavaScript (node): const { send } = require('gameproto_sdk');
 *
 * send(command) sends any JSON value to the game engine and returns its reply,
 * synchronously.  A reply that is an object with an "error" key throws EngineError (for
 * instance "engine call timed out" when the engine took more than 10 s).
 */
const fs = require('fs');

const REQUESTS_FD = 3;
const REPLIES_FD = 4;
let pending = Buffer.alloc(0);

class EngineError extends Error {
  constructor(message) {
    super(message);
    this.name = 'EngineError';
  }
}

function writeAll(fd, data) {
  let offset = 0;
  while (offset < data.length) {
    offset += fs.writeSync(fd, data, offset, data.length - offset);
  }
}

function readLine(fd) {
  const chunk = Buffer.alloc(65536);
  for (;;) {
    const newline = pending.indexOf(10);
    if (newline >= 0) {
      const line = pending.subarray(0, newline).toString('utf8');
      pending = pending.subarray(newline + 1);
      return line;
    }
    let count;
    try {
      count = fs.readSync(fd, chunk, 0, chunk.length, null);
    } catch (error) {
      if (error.code === 'EAGAIN') {
        // Only if the pipe was made non-blocking: wait a little without spinning.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        continue;
      }
      throw error;
    }
    if (count === 0) {
      throw new EngineError('engine channel closed');
    }
    pending = Buffer.concat([pending, chunk.subarray(0, count)]);
  }
}

function send(command) {
  // On Linux node writes process.stdout and process.stderr pipes synchronously: what the
  // program printed is already in the pipe, ahead of the call.
  const line = JSON.stringify(command);
  if (line === undefined) {
    throw new TypeError('send() needs a JSON value');
  }
  writeAll(REQUESTS_FD, Buffer.from(line + '\n', 'utf8'));
  const reply = JSON.parse(readLine(REPLIES_FD));
  if (reply !== null && typeof reply === 'object' && !Array.isArray(reply) && 'error' in reply) {
    throw new EngineError(String(reply.error));
  }
  return reply;
}

module.exports = { send, EngineError };
