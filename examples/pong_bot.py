"""
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
