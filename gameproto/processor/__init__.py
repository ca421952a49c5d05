"""
The processor (specs/processor.md): runs a user's program in a child process that
talks synchronously to a game engine.

- L{gameproto.processor.languages}: the four languages, their command lines, SDK files
  and how their error output is shown to the user (C{main.py} paths, SDK frames removed).
- L{gameproto.processor.limits}: every limit of a run (L{RunLimits}), and which one
  stopped it (L{Limit}).
- L{gameproto.processor.sandbox}: the run uid pool, the start-up checks deciding which
  languages are on, and how the launcher is invoked.
- C{gameproto/processor/launcher/}: a standalone program (stdlib only, run by the
  server's own Python, as root in production) that forks the interpreter into the
  sandbox, watches it, kills everything it left behind and reports its wait status.
- L{gameproto.processor.runner}: L{Run}, the Twisted C{ProcessProtocol} around one
  launcher, an adapter around its state machine (L{gameproto.processor.run_machine}) and
  its pieces: output lines (L{gameproto.processor.output_lines}), engine calls
  (L{gameproto.processor.engine_channel}), the launcher's status
  (L{gameproto.processor.launcher_status}), its clocks (L{gameproto.processor.budget}),
  its result (L{gameproto.processor.run_result}); and L{Processor}, which admits runs
  (L{gameproto.processor.admission}: at most 2 x cores at once, one per user).
- C{gameproto/processor/sdk/}: C{gameproto_sdk} for Python, JavaScript, Ruby and PHP,
  copied into each run directory next to the user's file.

The WebSocket protocol of the spec (L{gameproto.processor.protocol}, its machine in
L{gameproto.processor.connection_machine}) sits on top of L{Processor} and L{Run}.
"""
