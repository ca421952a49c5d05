// Example programs, one per language and purpose.  "guess" talks to this page's own
// engine (see engine.js); "bot" plays in an arena with the arena engine; "pong" plays
// Pong with the match engine: it is examples/pong_bot.{py,js,rb,php} as it is
// (tests/test_page.py checks that it is).

export const EXAMPLES = {
  hello: { title: "Hello, world", engine: "client" },
  guess: { title: "Guess the number", engine: "client" },
  bot: { title: "Arena bot", engine: "arena" },
  pong: { title: "Pong bot", engine: "match" },
};

export const PROGRAMS = {
  python: {
    hello: `print("Hello, world!")
`,
    guess: `# This page is the game engine: it thinks of a number from 1 to 100.
from gameproto_sdk import send

low, high = 1, 100
while True:
    guess = (low + high) // 2
    reply = send({"type": "guess", "number": guess})
    print(guess, reply["answer"])
    if reply["answer"] == "correct":
        break
    if reply["answer"] == "higher":
        low = guess + 1
    else:
        high = guess - 1
print("found it in", reply["tries"], "tries")
`,
    bot: `# A bot in the arena: register, wait for the round to start, then walk and
# turn at the walls.
from gameproto_sdk import send

ack = send({"type": "RegisterPlayerCommand"})
print("registered as player", ack["data"]["id"], "at", ack["data"]["x"], ack["data"]["y"])
while True:
    note = send({"type": "WaitNotification", "timeout_ms": 5000})
    if note and note["type"] == "StartGameOrder":
        break
print("the round started")

heading = 0
for turn in range(1, 3000):
    reply = send({"type": "MovePlayerCommand",
                  "data": [{"rotate": heading}, {"move": "forward"}]})
    if reply["type"] == "InvalidCommandError":
        reason = reply["data"]["reason"]
        if reason != "the move hits a wall" and reason != "the move hits another player":
            print("stopped:", reason)
            break
        heading = (heading + 90) % 360
    elif turn % 50 == 0:
        print("at", round(reply["data"]["x"]), round(reply["data"]["y"]))
`,
    pong: `"""
A Pong bot for gameproto's processor (engine "match"): it follows the ball with its paddle.

Run it with the context {"engine": "match", "match": ID, "role": "host"|"challenger"}, or
with {"engine": "match"} alone to be paired by the server's matchmaking.  The host starts
the game once the challenger is ready; the challenger readies at once.  It prints the last
frame (end, or aborted) and how many frames it read.
"""

import json

from gameproto_sdk import EngineError, send

DEAD_BAND = 0.02  # this close to the ball, let the paddle stop
FAR = 0.05  # farther than this, move fast (fup, fdown)

seat = send({"type": "GetSeat"})
while seat is None:  # no seat in the context: wait to be paired
    seat = send({"type": "Matchmake"})
host = seat["role"] == "host"
paddle = "left_paddle_y" if host else "right_paddle_y"
if not host:
    send({"command": "ready"})

started = False
direction = 0  # where the paddle was last sent: -1 up, +1 down, 0 no command
frames = 0
while True:
    frame = send({"type": "WaitFrame"})
    if frame is None:  # nothing new within the wait
        continue
    kind = frame["message_type"]
    if kind == "lobby" and host and not started and frame["challenger_ready"]:
        try:
            send({"command": "start_match"})
        except EngineError as e:  # the challenger left meanwhile
            print("not started:", e)
    elif kind in ("init", "status"):
        started = True
    if kind == "status":
        frames += 1
        gap = frame["ball_y"] - frame[paddle]
        wanted = 0 if abs(gap) <= DEAD_BAND else (1 if gap > 0 else -1)
        if wanted and wanted == -direction:
            wanted = 0  # a tick without a command stops the paddle before it turns
        if wanted:
            move = "down" if wanted > 0 else "up"
            try:
                send({"command": "f" + move if abs(gap) > FAR else move})
            except EngineError:  # the match has just ended: its end frame comes next
                pass
        direction = wanted
    elif kind in ("end", "aborted"):
        print(kind, json.dumps(frame))
        break
print("frames read:", frames)
`,
  },
  javascript: {
    hello: `console.log("Hello, world!");
`,
    guess: `// This page is the game engine: it thinks of a number from 1 to 100.
const { send } = require('gameproto_sdk');

let low = 1, high = 100, reply;
while (true) {
  const guess = Math.floor((low + high) / 2);
  reply = send({ type: 'guess', number: guess });
  console.log(guess, reply.answer);
  if (reply.answer === 'correct') break;
  if (reply.answer === 'higher') low = guess + 1;
  else high = guess - 1;
}
console.log(\`found it in \${reply.tries} tries\`);
`,
    bot: `// A bot in the arena: register, wait for the round to start, then walk and
// turn at the walls.
const { send } = require('gameproto_sdk');

const ack = send({ type: 'RegisterPlayerCommand' });
console.log('registered as player', ack.data.id, 'at', ack.data.x, ack.data.y);
for (;;) {
  const note = send({ type: 'WaitNotification', timeout_ms: 5000 });
  if (note && note.type === 'StartGameOrder') break;
}
console.log('the round started');

let heading = 0;
for (let turn = 1; turn < 3000; turn++) {
  const reply = send({ type: 'MovePlayerCommand', data: [{ rotate: heading }, { move: 'forward' }] });
  if (reply.type === 'InvalidCommandError') {
    const reason = reply.data.reason;
    if (reason !== 'the move hits a wall' && reason !== 'the move hits another player') {
      console.log('stopped:', reason);
      break;
    }
    heading = (heading + 90) % 360;
  } else if (turn % 50 === 0) {
    console.log('at', Math.round(reply.data.x), Math.round(reply.data.y));
  }
}
`,
    pong: `// A Pong bot for gameproto's processor (engine "match"): it follows the ball with its
// paddle.  The same bot as pong_bot.py; see there, and docs/processor.md.
const { send, EngineError } = require('gameproto_sdk');

const DEAD_BAND = 0.02; // this close to the ball, let the paddle stop
const FAR = 0.05; // farther than this, move fast (fup, fdown)

let seat = send({ type: 'GetSeat' });
while (seat === null) seat = send({ type: 'Matchmake' }); // wait to be paired
const host = seat.role === 'host';
const paddle = host ? 'left_paddle_y' : 'right_paddle_y';
if (!host) send({ command: 'ready' });

let started = false;
let direction = 0; // where the paddle was last sent: -1 up, +1 down, 0 no command
let frames = 0;
for (;;) {
  const frame = send({ type: 'WaitFrame' });
  if (frame === null) continue; // nothing new within the wait
  const kind = frame.message_type;
  if (kind === 'lobby' && host && !started && frame.challenger_ready) {
    try {
      send({ command: 'start_match' });
    } catch (e) {
      if (!(e instanceof EngineError)) throw e;
      console.log('not started:', e.message); // the challenger left meanwhile
    }
  } else if (kind === 'init' || kind === 'status') {
    started = true;
  }
  if (kind === 'status') {
    frames += 1;
    const gap = frame.ball_y - frame[paddle];
    let wanted = Math.abs(gap) <= DEAD_BAND ? 0 : (gap > 0 ? 1 : -1);
    if (wanted !== 0 && wanted === -direction) wanted = 0; // stop before turning
    if (wanted !== 0) {
      const move = wanted > 0 ? 'down' : 'up';
      try {
        send({ command: Math.abs(gap) > FAR ? 'f' + move : move });
      } catch (e) {
        if (!(e instanceof EngineError)) throw e; // the match has just ended: its end frame comes next
      }
    }
    direction = wanted;
  } else if (kind === 'end' || kind === 'aborted') {
    console.log(kind, JSON.stringify(frame));
    break;
  }
}
console.log('frames read:', frames);
`,
  },
  ruby: {
    hello: `puts "Hello, world!"
`,
    guess: `# This page is the game engine: it thinks of a number from 1 to 100.
require 'gameproto_sdk'

low, high = 1, 100
loop do
  guess = (low + high) / 2
  reply = GameprotoSDK.send({ 'type' => 'guess', 'number' => guess })
  puts "#{guess} #{reply['answer']}"
  if reply['answer'] == 'correct'
    puts "found it in #{reply['tries']} tries"
    break
  end
  if reply['answer'] == 'higher'
    low = guess + 1
  else
    high = guess - 1
  end
end
`,
    bot: `# A bot in the arena: register, wait for the round to start, then walk and
# turn at the walls.
require 'gameproto_sdk'

ack = GameprotoSDK.send({ 'type' => 'RegisterPlayerCommand' })
puts "registered as player #{ack['data']['id']} at #{ack['data']['x']} #{ack['data']['y']}"
loop do
  note = GameprotoSDK.send({ 'type' => 'WaitNotification', 'timeout_ms' => 5000 })
  break if note && note['type'] == 'StartGameOrder'
end
puts 'the round started'

heading = 0
(1...3000).each do |turn|
  reply = GameprotoSDK.send({ 'type' => 'MovePlayerCommand',
                              'data' => [{ 'rotate' => heading }, { 'move' => 'forward' }] })
  if reply['type'] == 'InvalidCommandError'
    reason = reply['data']['reason']
    unless ['the move hits a wall', 'the move hits another player'].include?(reason)
      puts "stopped: #{reason}"
      break
    end
    heading = (heading + 90) % 360
  elsif turn % 50 == 0
    puts "at #{reply['data']['x'].round} #{reply['data']['y'].round}"
  end
end
`,
    pong: `# A Pong bot for gameproto's processor (engine "match"): it follows the ball with its
# paddle.  The same bot as pong_bot.py; see there, and docs/processor.md.
require 'json'
require 'gameproto_sdk'

DEAD_BAND = 0.02 # this close to the ball, let the paddle stop
FAR = 0.05 # farther than this, move fast (fup, fdown)

seat = GameprotoSDK.send({ 'type' => 'GetSeat' })
seat = GameprotoSDK.send({ 'type' => 'Matchmake' }) while seat.nil? # wait to be paired
host = seat['role'] == 'host'
paddle = host ? 'left_paddle_y' : 'right_paddle_y'
GameprotoSDK.send({ 'command' => 'ready' }) unless host

started = false
direction = 0 # where the paddle was last sent: -1 up, +1 down, 0 no command
frames = 0
loop do
  frame = GameprotoSDK.send({ 'type' => 'WaitFrame' })
  next if frame.nil? # nothing new within the wait
  kind = frame['message_type']
  if kind == 'lobby' && host && !started && frame['challenger_ready']
    begin
      GameprotoSDK.send({ 'command' => 'start_match' })
    rescue GameprotoSDK::EngineError => e
      puts "not started: #{e.message}" # the challenger left meanwhile
    end
  elsif %w[init status].include?(kind)
    started = true
  end
  if kind == 'status'
    frames += 1
    gap = frame['ball_y'] - frame[paddle]
    wanted = gap.abs <= DEAD_BAND ? 0 : (gap.positive? ? 1 : -1)
    wanted = 0 if wanted != 0 && wanted == -direction # stop before turning
    if wanted != 0
      move = wanted.positive? ? 'down' : 'up'
      begin
        GameprotoSDK.send({ 'command' => gap.abs > FAR ? "f#{move}" : move })
      rescue GameprotoSDK::EngineError
        nil # the match has just ended: its end frame comes next
      end
    end
    direction = wanted
  elsif %w[end aborted].include?(kind)
    puts "#{kind} #{JSON.generate(frame)}"
    break
  end
end
puts "frames read: #{frames}"
`,
  },
  php: {
    hello: `<?php
echo "Hello, world!\\n";
`,
    guess: `<?php
// This page is the game engine: it thinks of a number from 1 to 100.
$low = 1;
$high = 100;
while (true) {
    $guess = intdiv($low + $high, 2);
    $reply = \\gameproto_sdk\\send(['type' => 'guess', 'number' => $guess]);
    echo "$guess {$reply['answer']}\\n";
    if ($reply['answer'] === 'correct') {
        echo "found it in {$reply['tries']} tries\\n";
        break;
    }
    if ($reply['answer'] === 'higher') {
        $low = $guess + 1;
    } else {
        $high = $guess - 1;
    }
}
`,
    bot: `<?php
// A bot in the arena: register, wait for the round to start, then walk and
// turn at the walls.
use function gameproto_sdk\\send;

$ack = send(['type' => 'RegisterPlayerCommand']);
echo "registered as player {$ack['data']['id']} at {$ack['data']['x']} {$ack['data']['y']}\\n";
while (true) {
    $note = send(['type' => 'WaitNotification', 'timeout_ms' => 5000]);
    if ($note !== null && $note['type'] === 'StartGameOrder') {
        break;
    }
}
echo "the round started\\n";

$heading = 0;
for ($turn = 1; $turn < 3000; $turn++) {
    $reply = send(['type' => 'MovePlayerCommand',
                   'data' => [['rotate' => $heading], ['move' => 'forward']]]);
    if ($reply['type'] === 'InvalidCommandError') {
        $reason = $reply['data']['reason'];
        if ($reason !== 'the move hits a wall' && $reason !== 'the move hits another player') {
            echo "stopped: $reason\\n";
            break;
        }
        $heading = ($heading + 90) % 360;
    } elseif ($turn % 50 === 0) {
        echo 'at ' . round($reply['data']['x']) . ' ' . round($reply['data']['y']) . "\\n";
    }
}
`,
    pong: `<?php
// A Pong bot for gameproto's processor (engine "match"): it follows the ball with its
// paddle.  The same bot as pong_bot.py; see there, and docs/processor.md.
use function gameproto_sdk\\send;

const DEAD_BAND = 0.02; // this close to the ball, let the paddle stop
const FAR = 0.05; // farther than this, move fast (fup, fdown)

$seat = send(['type' => 'GetSeat']);
while ($seat === null) $seat = send(['type' => 'Matchmake']); // wait to be paired
$host = $seat['role'] === 'host';
$paddle = $host ? 'left_paddle_y' : 'right_paddle_y';
if (!$host) send(['command' => 'ready']);

$started = false;
$direction = 0; // where the paddle was last sent: -1 up, +1 down, 0 no command
$frames = 0;
for (;;) {
    $frame = send(['type' => 'WaitFrame']);
    if ($frame === null) continue; // nothing new within the wait
    $kind = $frame['message_type'];
    if ($kind === 'lobby' && $host && !$started && $frame['challenger_ready']) {
        try {
            send(['command' => 'start_match']);
        } catch (\\gameproto_sdk\\EngineError $e) {
            echo 'not started: ', $e->getMessage(), "\\n"; // the challenger left meanwhile
        }
    } elseif ($kind === 'init' || $kind === 'status') {
        $started = true;
    }
    if ($kind === 'status') {
        $frames++;
        $gap = $frame['ball_y'] - $frame[$paddle];
        $wanted = abs($gap) <= DEAD_BAND ? 0 : ($gap > 0 ? 1 : -1);
        if ($wanted !== 0 && $wanted === -$direction) $wanted = 0; // stop before turning
        if ($wanted !== 0) {
            $move = $wanted > 0 ? 'down' : 'up';
            try {
                send(['command' => abs($gap) > FAR ? 'f' . $move : $move]);
            } catch (\\gameproto_sdk\\EngineError $e) {
                // the match has just ended: its end frame comes next
            }
        }
        $direction = $wanted;
    } elseif ($kind === 'end' || $kind === 'aborted') {
        echo $kind, ' ', json_encode($frame), "\\n";
        break;
    }
}
echo "frames read: $frames\\n";
`,
  },
};
