// A Pong bot for gameproto's processor (engine "match"): it follows the ball with its
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
