# The whole plugin is one lazy ServiceMaker: gameproto.tap is imported only when
# twistd actually runs the gameproto subcommand.  Nothing here may import a
# reactor (autobahn.twisted, txredisapi), or `twistd --reactor=...` would break.
from twisted.application.service import ServiceMaker

gameproto = ServiceMaker(
    "gameproto",
    "gameproto.tap",
    "Real-time game protocols: match, chat (Socket.IO), arena, processor",
    "gameproto",
)
