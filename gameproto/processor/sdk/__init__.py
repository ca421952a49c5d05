"""
The gameproto SDK of each language (``gameproto_sdk.py``, ``.js``, ``.rb``, ``.php``).

These files are never imported by the server: the launcher copies the one of the run's
language into the run directory, next to the user's file.  Each one writes a command as a
JSON line on fd 3, flushes the program's stdout and stderr first (so output printed before
a call reaches the user before the call), blocks reading the reply line on fd 4, and raises
``EngineError`` when the reply is an object with an ``"error"`` key.
"""
