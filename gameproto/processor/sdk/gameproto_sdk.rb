# gameproto SDK for Ruby: require 'gameproto_sdk', then GameprotoSDK.send(command).
#
# GameprotoSDK.send(command) sends any JSON value to the game engine and returns its
# reply.  A reply that is an object with an "error" key raises GameprotoSDK::EngineError
# (for instance "engine call timed out" when the engine took more than 10 s).  There is no
# top-level send: it would shadow Object#send.
require 'json'

module GameprotoSDK
  class EngineError < StandardError; end

  REQUESTS_FD = 3
  REPLIES_FD = 4

  def self.send(command)
    # Output printed before the call must reach the user before the call does.
    $stdout.flush
    $stderr.flush
    @requests ||= IO.new(REQUESTS_FD, 'wb', autoclose: false).tap { |io| io.sync = true }
    @replies ||= IO.new(REPLIES_FD, 'rb', autoclose: false)
    @requests.write(JSON.generate(command) + "\n")
    line = @replies.gets
    raise EngineError, 'engine channel closed' if line.nil? || !line.end_with?("\n")
    reply = JSON.parse(line.force_encoding(Encoding::UTF_8))
    raise EngineError, reply['error'].to_s if reply.is_a?(Hash) && reply.key?('error')
    reply
  end
end
