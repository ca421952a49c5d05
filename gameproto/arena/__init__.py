"""
The bot arena shooter of specs/arena.md: C{engine} (pure rules, with C{config} and C{commands}),
C{protocol} (the WebSocket adapter) and C{service} (arenas and their tick loops).
"""
