"""
The Lua scripts of the C{redis://} store (L{gameproto.store.redis}): every write that
must be atomic is one script, which Redis runs without interleaving.  Each says which
KEYS and ARGV it takes and what it returns.
"""

CREATE_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('ZADD', KEYS[4], 0, ARGV[4])
return 1
"""

# KEYS: ongoing record, ongoing index, winner, loser, elo asc, elo desc, completed
# record, completed index, winner's completed index, loser's completed index.
# ARGV: match id, winner's and loser's Elo the rating was computed from, their
# records after, old and new elo index members (asc w, asc l, desc w, desc l),
# completed JSON, completed index member.
# Returns 1 done, 0 no such match or player, -1 a rating changed meanwhile (retry).
COMPLETE_MATCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local winner = redis.call('GET', KEYS[3])
local loser = redis.call('GET', KEYS[4])
if not winner or not loser then return 0 end
if tostring(cjson.decode(winner)['elo']) ~= ARGV[2] then return -1 end
if tostring(cjson.decode(loser)['elo']) ~= ARGV[3] then return -1 end
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], ARGV[5])
redis.call('ZREM', KEYS[5], ARGV[6], ARGV[7])
redis.call('ZADD', KEYS[5], 0, ARGV[8], 0, ARGV[9])
redis.call('ZREM', KEYS[6], ARGV[10], ARGV[11])
redis.call('ZADD', KEYS[6], 0, ARGV[12], 0, ARGV[13])
redis.call('SET', KEYS[7], ARGV[14])
redis.call('ZADD', KEYS[8], 0, ARGV[15])
redis.call('ZADD', KEYS[9], 0, ARGV[15])
redis.call('ZADD', KEYS[10], 0, ARGV[15])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

DELETE_ONGOING = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""

# KEYS: the arena record, the index (sorted by creation), the owner's set, the sequence.
# ARGV: id, record JSON, max per owner, max in all.
# Returns 1 created, 0 the id is taken, -1 the owner has too many, -2 too many in all.
CREATE_ARENA = """
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return -2 end
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[3]) then return -1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

# KEYS: the arena record, the index.  ARGV: id, prefix of the owners' sets.
DELETE_ARENA = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
redis.call('SREM', ARGV[2] .. cjson.decode(raw)['owner_key'], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"""


# KEYS: the completed match, the replay, the index of replays by time.
# ARGV: match id, replay JSON, recorded (epoch seconds).  Returns 0 if no such match.
SAVE_REPLAY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
"""

# KEYS: the index of replays by time.  ARGV: recorded before (exclusive), the
# replays' key prefix.  Returns how many were deleted.
PRUNE_REPLAYS = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, id in ipairs(old) do redis.call('DEL', ARGV[2] .. id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return #old
"""
