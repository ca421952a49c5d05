<?php
// A Pong bot for gameproto's processor (engine "match"): it follows the ball with its
// paddle.  The same bot as pong_bot.py; see there, and docs/processor.md.
use function gameproto_sdk\send;

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
        } catch (\gameproto_sdk\EngineError $e) {
            echo 'not started: ', $e->getMessage(), "\n"; // the challenger left meanwhile
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
            } catch (\gameproto_sdk\EngineError $e) {
                // the match has just ended: its end frame comes next
            }
        }
        $direction = $wanted;
    } elseif ($kind === 'end' || $kind === 'aborted') {
        echo $kind, ' ', json_encode($frame), "\n";
        break;
    }
}
echo "frames read: $frames\n";
