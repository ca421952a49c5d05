"""
The languages the processor runs: python, javascript, ruby, php.

For each one: its system interpreter (overridable with C{--processor-<language>}), its
command line, the name of the user's file in the run directory, its SDK file, the texts by
which it reports running out of memory, and how its error output is shown to the user.

Error output is rewritten so the user sees their own program, not the sandbox: every path
inside the run directory is shown relative to it (C{main.py}, C{main.js}, ...), frames of
the SDK (and of whatever the SDK itself called) are removed, and the text is cut to 4 KiB.
The user's line numbers are correct because the user's file is run as it was sent; the
only change is PHP's C{<?php } opening tag, added on the first line when missing so that
no line moves.

Everything here is pure: no I/O, no reactor.  The rewriting functions take the captured
standard error and the run directory's path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs

#: Where the SDK files live in the package; the launcher copies one into each run directory.
SDK_DIRECTORY = Path(__file__).resolve().parent / "sdk"

#: The longest interpreter error message shown to the user, in bytes of UTF-8.
MAX_ERROR_BYTES = 4096

#: Output the start-up probe of each language must print (sandbox.check_languages).
PROBE_TOKEN = "gameproto-probe-ok"

_MiB = 1024 * 1024

# Interpreters sized by memory get this much less than RLIMIT_DATA, so that they fail with
# their own readable error (heap out of memory, Allowed memory size) before malloc fails
# somewhere the interpreter cannot report it.
_INTERPRETER_HEADROOM = 32 * _MiB


def base_environment(run_dir: str) -> dict[str, str]:
    """
    The whole environment of a user's program, before the language adds its own entries.
    Explicit and minimal: nothing of the server's environment (tokens, Redis URLs) reaches
    user code (notes/twisted-autobahn.md section 6).
    """
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": run_dir,
        "PWD": run_dir,  # the working directory (bubblewrap sets it with --chdir anyway)
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def _identity_code(code: str) -> bytes:
    return code.encode("utf-8")


@attrs.frozen
class Language:
    """
    One language of the processor.

    @ivar name: the name clients use in their C{context} message.
    @ivar default_interpreter: the system interpreter; the run uid cannot read root's home,
        so never a pyenv or virtualenv interpreter.
    @ivar file_name: the user's file in the run directory.
    @ivar sdk_file_name: the SDK file, in L{SDK_DIRECTORY} and in the run directory.
    @ivar memory_markers: texts in the error output meaning the program ran out of memory.
    @ivar probe_code: a program printing L{PROBE_TOKEN}, run at start-up.
    """

    name: str
    default_interpreter: str
    file_name: str
    sdk_file_name: str
    memory_markers: tuple[str, ...]
    probe_code: str
    _command: Callable[[str, str, int], list[str]]
    _extra_environment: Callable[[str], Mapping[str, str]]
    _rewrite: Callable[[str, str], str]
    _prepare_code: Callable[[str], bytes] = _identity_code

    @property
    def sdk_source(self) -> Path:
        """The SDK file shipped in the package."""
        return SDK_DIRECTORY / self.sdk_file_name

    def command(self, interpreter: str, run_dir: str, memory: int) -> list[str]:
        """
        The interpreter's argv for a run in C{run_dir} whose data limit is C{memory} bytes.
        Paths are absolute: the launcher C{chdir}s into the run directory, but an absolute
        path does not depend on it.
        """
        return self._command(interpreter, run_dir, memory)

    def environment(self, run_dir: str) -> dict[str, str]:
        """The complete environment of the user's program."""
        env = base_environment(run_dir)
        env.update(self._extra_environment(run_dir))
        return env

    def prepare_code(self, code: str) -> bytes:
        """The bytes of the user's file."""
        return self._prepare_code(code)

    def rewrite_error(self, stderr: str, run_dir: str) -> str:
        """
        The error message shown to the user for the captured standard error C{stderr} of a
        run in C{run_dir}: paths relative to the run directory, SDK frames removed, at most
        L{MAX_ERROR_BYTES}.  Empty when there is nothing to show.
        """
        text = relativize(stderr, run_dir)
        return clip_error(self._rewrite(text, self.sdk_file_name).strip("\n"))

    def out_of_memory(self, stderr: str) -> bool:
        """Whether the error output reports that the program ran out of memory."""
        return any(marker in stderr for marker in self.memory_markers)


# ---------------------------------------------------------------------------
# shared rewriting helpers


def relativize(text: str, run_dir: str) -> str:
    """Show paths inside the run directory relative to it (C{/tmp/.../main.py} -> C{main.py})."""
    run_dir = run_dir.rstrip("/")
    return text.replace(run_dir + "/", "").replace(run_dir, ".")


def clip_error(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """
    Cut C{text} to at most C{limit} bytes of UTF-8, keeping the end (where every interpreter
    puts the exception itself) and starting on a line boundary when one is near.
    """
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    marker = "[...]\n"
    tail = data[len(data) - (limit - len(marker.encode("utf-8"))) :]
    newline = tail.find(b"\n")
    if 0 <= newline < len(tail) // 2:
        tail = tail[newline + 1 :]
    # Slicing bytes may split a character: drop the partial one instead of a U+FFFD.
    return marker + tail.decode("utf-8", errors="ignore")


def _line_start(lines: Sequence[str], pattern: re.Pattern[str]) -> int:
    for index, line in enumerate(lines):
        if pattern.match(line):
            return index
    return 0


# ---------------------------------------------------------------------------
# python

_PY_FRAME = re.compile(r'^  File "(?P<file>[^"]*)", line \d+')
_PY_START = re.compile(r'^(Traceback \(most recent call last\):|  File "main\.py", line \d+$)')


def _rewrite_python(text: str, sdk: str) -> str:
    lines = text.splitlines()
    # The traceback is the last thing Python writes; what the program printed on stderr
    # before it was already streamed to the user as output.
    lines = lines[_line_start(lines, _PY_START) :]
    kept: list[str] = []
    in_sdk = False
    for line in lines:
        frame = _PY_FRAME.match(line)
        if frame:
            # An SDK frame and every frame after it (what the SDK called: json, os.write)
            # are the SDK's business, up to the exception line.
            in_sdk = in_sdk or frame.group("file") == sdk
            if not in_sdk:
                kept.append(line)
            continue
        if line.startswith("    "):
            if not in_sdk:
                kept.append(line)  # the frame's source line and its ^^^^ markers
            continue
        in_sdk = False
        kept.append(line)
    return "\n".join(kept)


def _python_command(interpreter: str, run_dir: str, memory: int) -> list[str]:
    # -u: output reaches the user as it is printed; -E -s: no PYTHON* variables, no user
    # site-packages.  The run directory is sys.path[0], so `import gameproto_sdk` works.
    return [interpreter, "-u", "-E", "-s", f"{run_dir}/main.py"]


PYTHON = Language(
    name="python",
    default_interpreter="/usr/bin/python3",
    file_name="main.py",
    sdk_file_name="gameproto_sdk.py",
    memory_markers=("MemoryError",),
    probe_code=f'print("{PROBE_TOKEN}")\n',
    command=_python_command,
    extra_environment=lambda run_dir: {},
    rewrite=_rewrite_python,
)


# ---------------------------------------------------------------------------
# javascript (node)

_JS_FRAME = re.compile(r"^\s+at ")
_JS_HEADER = re.compile(r"^(?P<file>[^\s:]+\.js):\d+$")


def _rewrite_javascript(text: str, sdk: str) -> str:
    lines = [line for line in text.splitlines() if not re.match(r"^Node\.js v\d", line)]
    fatal = next((line for line in lines if line.startswith("FATAL ERROR:")), None)
    if fatal is not None:
        # V8 gave up (heap out of memory): its GC log and native stack say nothing about
        # the user's program; the FATAL ERROR line says what happened.
        return fatal
    header = next((i for i, line in enumerate(lines) if _JS_HEADER.match(line)), None)
    if header is not None:
        # An uncaught exception: node prints "file:line", the source line, a caret and a
        # blank line, then the stack.  What came before was the program's own stderr.
        lines = lines[header:]
        match = _JS_HEADER.match(lines[0])
        if match and match.group("file") == sdk:
            # Thrown inside the SDK (an EngineError): the stack below names the user's line.
            blank = next((i for i, line in enumerate(lines) if not line.strip()), 0)
            lines = lines[blank + 1 :]
    kept: list[str] = []
    stack: list[str] = []

    def end_stack() -> None:
        # Frames are innermost first: drop everything up to the last SDK frame (the SDK
        # and what it called: JSON.stringify, fs.readSync), and node's own internals.
        last_sdk = max((i for i, frame in enumerate(stack) if f"{sdk}:" in frame), default=-1)
        kept.extend(
            frame for frame in stack[last_sdk + 1 :] if "node:internal" not in frame
        )
        stack.clear()

    for line in lines:
        if _JS_FRAME.match(line):
            stack.append(line)
            continue
        end_stack()
        kept.append(line)
    end_stack()
    return "\n".join(kept)


def _javascript_command(interpreter: str, run_dir: str, memory: int) -> list[str]:
    # RLIMIT_DATA bounds malloc; V8's heap gets less so that it reports "heap out of
    # memory" itself.  RLIMIT_AS is not used: V8 reserves about 1 GiB of address space.
    heap_mib = max(16, (memory - _INTERPRETER_HEADROOM) // _MiB)
    return [interpreter, f"--max-old-space-size={heap_mib}", f"{run_dir}/main.js"]


JAVASCRIPT = Language(
    name="javascript",
    default_interpreter="/usr/bin/node",
    file_name="main.js",
    sdk_file_name="gameproto_sdk.js",
    memory_markers=(
        "heap out of memory",
        "Array buffer allocation failed",
        "Fatal process out of memory",
    ),
    probe_code=f'console.log("{PROBE_TOKEN}");\n',
    command=_javascript_command,
    # require('gameproto_sdk') resolves through NODE_PATH to the copy in the run directory.
    extra_environment=lambda run_dir: {"NODE_PATH": run_dir},
    rewrite=_rewrite_javascript,
)


# ---------------------------------------------------------------------------
# ruby

_RB_HEAD = re.compile(r"^(?P<location>(?P<file>[^\s:]+):\d+:in `[^']*'): (?P<message>.*)$")
_RB_FROM = re.compile(r"^\tfrom (?P<location>(?P<file>[^\s:]+):\d+:in `[^']*')$")


def _rewrite_ruby(text: str, sdk: str) -> str:
    lines = text.splitlines()
    kept: list[str] = []
    index = 0
    while index < len(lines):
        head = _RB_HEAD.match(lines[index])
        if head is None:
            kept.append(lines[index])
            index += 1
            continue
        # An uncaught exception: "loc:in `m': message (Class)", message lines, then
        # "\tfrom loc" callers, innermost first.
        message = [head.group("message")]
        index += 1
        while index < len(lines) and not _RB_FROM.match(lines[index]):
            if _RB_HEAD.match(lines[index]):
                break
            message.append(lines[index])
            index += 1
        frames = [head.group("location")]
        while index < len(lines) and (caller := _RB_FROM.match(lines[index])):
            frames.append(caller.group("location"))
            index += 1
        last_sdk = max(
            (i for i, frame in enumerate(frames) if frame.startswith(f"{sdk}:")), default=-1
        )
        frames = frames[last_sdk + 1 :] or frames[-1:]
        frames = [frame for frame in frames if not frame.startswith("<internal:")] or frames
        kept.append(f"{frames[0]}: {message[0]}")
        kept.extend(message[1:])
        kept.extend(f"\tfrom {frame}" for frame in frames[1:])
    return "\n".join(kept)


def _ruby_command(interpreter: str, run_dir: str, memory: int) -> list[str]:
    # -I: `require 'gameproto_sdk'` finds the copy in the run directory.
    return [interpreter, "-I", run_dir, f"{run_dir}/main.rb"]


RUBY = Language(
    name="ruby",
    default_interpreter="/usr/bin/ruby",
    file_name="main.rb",
    sdk_file_name="gameproto_sdk.rb",
    memory_markers=("NoMemoryError", "failed to allocate memory"),
    probe_code=f'puts "{PROBE_TOKEN}"\n',
    command=_ruby_command,
    extra_environment=lambda run_dir: {},
    rewrite=_rewrite_ruby,
)


# ---------------------------------------------------------------------------
# php

_PHP_UNCAUGHT = re.compile(
    r"^(?P<head>.*Uncaught .*) in (?P<file>[^\s:]+):(?P<line>\d+)$"
)
_PHP_FRAME = re.compile(r"^#\d+ (?P<file>[^\s(]+)\((?P<line>\d+)\): (?P<call>.*)$")
_PHP_MAIN = re.compile(r"^#\d+ \{main\}$")
_PHP_THROWN = re.compile(r"^  thrown in (?P<file>\S+) on line (?P<line>\d+)$")


def _rewrite_php(text: str, sdk: str) -> str:
    lines = text.splitlines()
    kept: list[str] = []
    index = 0
    while index < len(lines):
        uncaught = _PHP_UNCAUGHT.match(lines[index])
        if uncaught is None or index + 1 >= len(lines) or lines[index + 1] != "Stack trace:":
            kept.append(lines[index])
            index += 1
            continue
        # "Fatal error: Uncaught X: msg in file:line", "Stack trace:", "#0 file(line): call",
        # ..., "#n {main}", "  thrown in file on line n".  Frames are innermost first and
        # each names the file and line of a call: a frame in the SDK file is the SDK's own.
        frames: list[tuple[str, str, str]] = []
        index += 2
        while index < len(lines) and (frame := _PHP_FRAME.match(lines[index])):
            frames.append((frame.group("file"), frame.group("line"), frame.group("call")))
            index += 1
        has_main = index < len(lines) and bool(_PHP_MAIN.match(lines[index]))
        if has_main:
            index += 1
        thrown = index < len(lines) and bool(_PHP_THROWN.match(lines[index]))
        if thrown:
            index += 1
        where = (uncaught.group("file"), uncaught.group("line"))
        last_sdk = max((i for i, f in enumerate(frames) if f[0] == sdk), default=-1)
        if where[0] == sdk or last_sdk >= 0:
            frames = frames[last_sdk + 1 :]
            # The innermost user frame is the call into the SDK: the error is shown there.
            if frames:
                where = (frames[0][0], frames[0][1])
                frames = frames[1:]
        kept.append(f"{uncaught.group('head')} in {where[0]}:{where[1]}")
        kept.append("Stack trace:")
        kept.extend(f"#{n} {f[0]}({f[1]}): {f[2]}" for n, f in enumerate(frames))
        if has_main:
            kept.append(f"#{len(frames)} {{main}}")
        if thrown:
            kept.append(f"  thrown in {where[0]} on line {where[1]}")
    return "\n".join(kept)


def _php_command(interpreter: str, run_dir: str, memory: int) -> list[str]:
    limit_mib = max(16, (memory - _INTERPRETER_HEADROOM) // _MiB)
    return [
        interpreter,
        "-d", f"memory_limit={limit_mib}M",
        # Errors go to stderr (the user's error output), once, without HTML.
        "-d", "display_errors=stderr",
        "-d", "log_errors=0",
        "-d", "html_errors=0",
        "-d", f"auto_prepend_file={run_dir}/gameproto_sdk.php",
        f"{run_dir}/main.php",
    ]  # fmt: skip


def _prepare_php(code: str) -> bytes:
    # PHP prints everything outside <?php ... ?> verbatim.  Users of a code runner write
    # PHP statements, so add the opening tag when it is missing -- on the same line, so
    # that every line number of the user's code stays as it was.
    if not code.lstrip().startswith("<?"):
        code = "<?php " + code
    return code.encode("utf-8")


PHP = Language(
    name="php",
    default_interpreter="/usr/bin/php",
    file_name="main.php",
    sdk_file_name="gameproto_sdk.php",
    memory_markers=("Allowed memory size", "Out of memory"),
    probe_code=f'echo "{PROBE_TOKEN}\\n";\n',
    command=_php_command,
    extra_environment=lambda run_dir: {},
    rewrite=_rewrite_php,
    prepare_code=_prepare_php,
)


#: Every language, by the name clients use.
LANGUAGES: Mapping[str, Language] = {
    language.name: language for language in (PYTHON, JAVASCRIPT, RUBY, PHP)
}
