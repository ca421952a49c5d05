"""
gameproto: a Twisted/Autobahn framework and server for real-time game protocols.

Four wire protocols (match, chat, arena, processor) run in one reactor behind one
port, started by ``twistd -n gameproto``; each can also be mounted in another
Twisted application (see ``docs/embedding.md``).
"""

__version__ = "0.1.0"
