// Example programs, one per language and purpose.  "guess" talks to this page's own
// engine (see engine.js); "bot" plays in an arena with the arena engine.

export const EXAMPLES = {
  hello: { title: "Hello, world", engine: "client" },
  guess: { title: "Guess the number", engine: "client" },
  bot: { title: "Arena bot", engine: "arena" },
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
  },
};
