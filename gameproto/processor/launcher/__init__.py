"""
The processor's launcher, a program of its own: the server runs this directory with its
own Python (C{python -I -S .../launcher}), which executes C{__main__.py} with the
directory on C{sys.path}, so its modules import each other by their plain names and need
nothing but the standard library.  The server imports the same modules as
C{gameproto.processor.launcher.*} (the request's shape, C{/proc} reading).
"""
