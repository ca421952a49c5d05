# A Pong bot for gameproto's processor (engine "match"): it follows the ball with its
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
