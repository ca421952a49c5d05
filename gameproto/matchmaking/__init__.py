"""
Matchmaking by Elo for the match (Pong) protocol: a queue of users that pairs
those whose ratings are close, the window widening with the time waited, and
makes each pair a match of the match service.

- L{gameproto.matchmaking.rules}: the pure rules (the window, the queue's order,
  who pairs with whom, each ticket's transitions), tested without I/O;
- L{gameproto.matchmaking.queue}: L{IMatchQueue} and the single node's queue in
  memory; L{gameproto.matchmaking.redis_queue}: the queue of the nodes sharing a
  Redis, each change one Lua script;
- L{gameproto.matchmaking.service}: L{MatchmakingService}, the same on one node or
  many (the pairing runs on the one node holding the matcher's lease);
- L{gameproto.matchmaking.api} and L{gameproto.matchmaking.protocol}: the REST
  routes and the WebSocket that says when a user is matched.
"""
