"""
Tests for L{gameproto.processor.languages}: command lines, environments, and the
rewriting of each interpreter's error output (samples taken from real runs of Python 3.11,
node 20, Ruby 3.1 and PHP 8.2 in a run directory).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gameproto.processor.languages import (
    JAVASCRIPT,
    LANGUAGES,
    PHP,
    PYTHON,
    RUBY,
    clip_error,
    relativize,
)

# docs/processor.md: an error message shows at most 4 KiB of the program's stderr.
MAX_ERROR_BYTES = 4096
RUN_DIR = "/tmp/gameproto-runs/60007-0123456789abcdef"


def at_run_dir(text: str) -> str:
    """A sample written with C{@/} for the run directory, as the interpreter printed it."""
    return text.replace("@/", RUN_DIR + "/")


class CommandTests(SynchronousTestCase):
    def test_names_and_files(self) -> None:
        """The four languages, their user files and SDK files."""
        self.assertEqual(sorted(LANGUAGES), ["javascript", "php", "python", "ruby"])
        self.assertEqual(
            [(lang.file_name, lang.sdk_file_name) for lang in (PYTHON, JAVASCRIPT, RUBY, PHP)],
            [
                ("main.py", "gameproto_sdk.py"),
                ("main.js", "gameproto_sdk.js"),
                ("main.rb", "gameproto_sdk.rb"),
                ("main.php", "gameproto_sdk.php"),
            ],
        )
        for language in LANGUAGES.values():
            self.assertTrue(language.sdk_source.is_file(), language.sdk_source)

    def test_python_command(self) -> None:
        """Python runs as C{python3 -u -E -s main.py}, from the system interpreter."""
        self.assertEqual(PYTHON.default_interpreter, "/usr/bin/python3")
        self.assertEqual(
            PYTHON.command("/usr/bin/python3", RUN_DIR, 256 << 20),
            ["/usr/bin/python3", "-u", "-E", "-s", f"{RUN_DIR}/main.py"],
        )

    def test_node_heap_below_data_limit(self) -> None:
        """node's old space is the memory limit minus 32 MiB."""
        self.assertEqual(
            JAVASCRIPT.command("/usr/bin/node", RUN_DIR, 256 << 20),
            ["/usr/bin/node", "--max-old-space-size=224", f"{RUN_DIR}/main.js"],
        )

    def test_ruby_finds_sdk(self) -> None:
        """Ruby gets the run directory on its load path."""
        self.assertEqual(
            RUBY.command("/usr/bin/ruby", RUN_DIR, 256 << 20),
            ["/usr/bin/ruby", "-I", RUN_DIR, f"{RUN_DIR}/main.rb"],
        )

    def test_php_prepends_sdk(self) -> None:
        """PHP loads the SDK with auto_prepend_file, errors on stderr, memory_limit below RLIMIT_DATA."""
        argv = PHP.command("/usr/bin/php", RUN_DIR, 256 << 20)
        self.assertIn(f"auto_prepend_file={RUN_DIR}/gameproto_sdk.php", argv)
        self.assertIn("memory_limit=224M", argv)
        self.assertIn("display_errors=stderr", argv)
        self.assertIn("log_errors=0", argv)
        self.assertEqual(argv[-1], f"{RUN_DIR}/main.php")

    def test_environment_minimal(self) -> None:
        """The environment is explicit; only node gets NODE_PATH (to find the SDK)."""
        base = {"PATH", "HOME", "PWD", "TMPDIR", "LANG", "LC_ALL"}
        self.assertEqual(set(PYTHON.environment(RUN_DIR)), base)
        self.assertEqual(set(JAVASCRIPT.environment(RUN_DIR)), base | {"NODE_PATH"})
        self.assertEqual(JAVASCRIPT.environment(RUN_DIR)["NODE_PATH"], RUN_DIR)
        self.assertEqual(PYTHON.environment(RUN_DIR)["HOME"], RUN_DIR)

    def test_php_opening_tag(self) -> None:
        """A PHP program without C{<?php} gets one on its first line: no line moves."""
        self.assertEqual(PHP.prepare_code('echo 1;\necho 2;\n'), b'<?php echo 1;\necho 2;\n')
        self.assertEqual(PHP.prepare_code("<?php\necho 1;\n"), b"<?php\necho 1;\n")
        self.assertEqual(PYTHON.prepare_code("print('\u00e9')\n"), "print('\u00e9')\n".encode())

    def test_memory_markers(self) -> None:
        """Each interpreter's own out-of-memory texts are recognised."""
        self.assertTrue(PYTHON.out_of_memory("Traceback...\nMemoryError\n"))
        self.assertTrue(JAVASCRIPT.out_of_memory("FATAL ERROR: ... JavaScript heap out of memory"))
        self.assertTrue(JAVASCRIPT.out_of_memory("RangeError: Array buffer allocation failed"))
        self.assertTrue(RUBY.out_of_memory("main.rb:1:in `*': failed to allocate memory (NoMemoryError)"))
        self.assertTrue(PHP.out_of_memory("Fatal error: Allowed memory size of 2 bytes exhausted"))
        self.assertFalse(PYTHON.out_of_memory("ZeroDivisionError: division by zero"))


class HelperTests(SynchronousTestCase):
    def test_relativize(self) -> None:
        """Paths in the run directory are shown relative to it."""
        self.assertEqual(relativize(f'File "{RUN_DIR}/main.py"', RUN_DIR), 'File "main.py"')
        self.assertEqual(relativize(f"cwd {RUN_DIR}", RUN_DIR), "cwd .")

    def test_clip_keeps_end(self) -> None:
        """Over 4 KiB, the end is kept (the exception is last), from a line start."""
        text = "".join(f"line {n}\n" for n in range(2000)) + "ValueError: last"
        clipped = clip_error(text)
        self.assertLessEqual(len(clipped.encode()), MAX_ERROR_BYTES)
        self.assertTrue(clipped.startswith("[...]\nline "))
        self.assertTrue(clipped.endswith("ValueError: last"))

    def test_clip_multibyte(self) -> None:
        """Clipping never splits a character or exceeds 4 KiB of UTF-8."""
        clipped = clip_error("\u00e9" * 5000)
        self.assertLessEqual(len(clipped.encode()), MAX_ERROR_BYTES)
        self.assertNotIn("\ufffd", clipped)

    def test_short_text_unchanged(self) -> None:
        """Text under 4 KiB is left as it is."""
        self.assertEqual(clip_error("short"), "short")


class PythonRewriteTests(SynchronousTestCase):
    def test_runtime_error(self) -> None:
        """A traceback names main.py and the user's line; the program's earlier stderr goes."""
        stderr = at_run_dir(
            "debug: starting\n"
            "Traceback (most recent call last):\n"
            '  File "@/main.py", line 4, in <module>\n'
            "    x = 1/0\n"
            "        ~^~\n"
            "ZeroDivisionError: division by zero\n"
        )
        self.assertEqual(
            PYTHON.rewrite_error(stderr, RUN_DIR),
            "Traceback (most recent call last):\n"
            '  File "main.py", line 4, in <module>\n'
            "    x = 1/0\n"
            "        ~^~\n"
            "ZeroDivisionError: division by zero",
        )

    def test_syntax_error(self) -> None:
        """A SyntaxError (no Traceback header) keeps its file/line header."""
        stderr = at_run_dir(
            '  File "@/main.py", line 1\n'
            '    print("a"\n'
            "         ^\n"
            "SyntaxError: '(' was never closed\n"
        )
        self.assertEqual(
            PYTHON.rewrite_error(stderr, RUN_DIR),
            '  File "main.py", line 1\n    print("a"\n         ^\nSyntaxError: \'(\' was never closed',
        )

    def test_sdk_frames_removed(self) -> None:
        """An EngineError shows the user's call, not the SDK's raise."""
        stderr = at_run_dir(
            "Traceback (most recent call last):\n"
            '  File "@/main.py", line 5, in <module>\n'
            "    f()\n"
            '  File "@/main.py", line 4, in f\n'
            '    send({"a": 1})\n'
            '  File "@/gameproto_sdk.py", line 42, in send\n'
            '    raise EngineError(reply["error"])\n'
            "gameproto_sdk.EngineError: boom\n"
        )
        self.assertEqual(
            PYTHON.rewrite_error(stderr, RUN_DIR),
            "Traceback (most recent call last):\n"
            '  File "main.py", line 5, in <module>\n'
            "    f()\n"
            '  File "main.py", line 4, in f\n'
            '    send({"a": 1})\n'
            "gameproto_sdk.EngineError: boom",
        )

    def test_sdk_callees_removed(self) -> None:
        """Frames the SDK called (json) go with the SDK's frame."""
        stderr = at_run_dir(
            "Traceback (most recent call last):\n"
            '  File "@/main.py", line 2, in <module>\n'
            "    send({1, 2})\n"
            '  File "@/gameproto_sdk.py", line 31, in send\n'
            "    line = json.dumps(command)\n"
            "           ^^^^^^^^^^^^^^^^^^^\n"
            '  File "/usr/lib/python3.11/json/__init__.py", line 238, in dumps\n'
            "    **kw).encode(obj)\n"
            "TypeError: Object of type set is not JSON serializable\n"
        )
        self.assertEqual(
            PYTHON.rewrite_error(stderr, RUN_DIR),
            "Traceback (most recent call last):\n"
            '  File "main.py", line 2, in <module>\n'
            "    send({1, 2})\n"
            "TypeError: Object of type set is not JSON serializable",
        )

    def test_chained_exceptions_kept(self) -> None:
        """Both tracebacks of a chained exception are kept."""
        stderr = at_run_dir(
            "Traceback (most recent call last):\n"
            '  File "@/main.py", line 2, in <module>\n'
            "    1/0\n"
            "ZeroDivisionError: division by zero\n"
            "\n"
            "During handling of the above exception, another exception occurred:\n"
            "\n"
            "Traceback (most recent call last):\n"
            '  File "@/main.py", line 4, in <module>\n'
            "    raise ValueError('x')\n"
            "ValueError: x\n"
        )
        rewritten = PYTHON.rewrite_error(stderr, RUN_DIR)
        self.assertIn('  File "main.py", line 2, in <module>', rewritten)
        self.assertIn("During handling of the above exception", rewritten)
        self.assertTrue(rewritten.endswith("ValueError: x"))

    def test_plain_stderr_kept(self) -> None:
        """Without a traceback (sys.exit("message")) the whole error output is the message."""
        self.assertEqual(PYTHON.rewrite_error("bad input\n", RUN_DIR), "bad input")

    def test_long_traceback_clipped(self) -> None:
        """The message is at most 4 KiB and ends with the exception."""
        frames = "".join(
            f'  File "{RUN_DIR}/main.py", line {n}, in f\n    f()\n' for n in range(1, 400)
        )
        stderr = "Traceback (most recent call last):\n" + frames + "RecursionError: too deep\n"
        rewritten = PYTHON.rewrite_error(stderr, RUN_DIR)
        self.assertLessEqual(len(rewritten.encode()), MAX_ERROR_BYTES)
        self.assertTrue(rewritten.endswith("RecursionError: too deep"))
        self.assertNotIn(RUN_DIR, rewritten)


class JavaScriptRewriteTests(SynchronousTestCase):
    def test_runtime_error(self) -> None:
        """node's header and stack name main.js and the user's line; internals go."""
        stderr = at_run_dir(
            "@/main.js:4\n"
            "null.x;\n"
            "     ^\n"
            "\n"
            "TypeError: Cannot read properties of null (reading 'x')\n"
            "    at Object.<anonymous> (@/main.js:4:6)\n"
            "    at Module._compile (node:internal/modules/cjs/loader:1521:14)\n"
            "    at node:internal/main/run_main_module:28:49\n"
            "\n"
            "Node.js v20.20.2\n"
        )
        self.assertEqual(
            JAVASCRIPT.rewrite_error(stderr, RUN_DIR),
            "main.js:4\nnull.x;\n     ^\n\n"
            "TypeError: Cannot read properties of null (reading 'x')\n"
            "    at Object.<anonymous> (main.js:4:6)",
        )

    def test_syntax_error(self) -> None:
        """A syntax error names main.js and the line, with node's caret."""
        stderr = at_run_dir(
            "@/main.js:2\n"
            "foo(;\n"
            "    ^\n"
            "\n"
            "SyntaxError: Unexpected token ';'\n"
            "    at wrapSafe (node:internal/modules/cjs/loader:1464:18)\n"
            "\n"
            "Node.js v20.20.2\n"
        )
        self.assertEqual(
            JAVASCRIPT.rewrite_error(stderr, RUN_DIR),
            "main.js:2\nfoo(;\n    ^\n\nSyntaxError: Unexpected token ';'",
        )

    def test_sdk_frames_removed(self) -> None:
        """An EngineError thrown in the SDK shows the user's frames only."""
        stderr = at_run_dir(
            "@/gameproto_sdk.js:66\n"
            "    throw new EngineError(String(reply.error));\n"
            "    ^\n"
            "\n"
            "EngineError: boom\n"
            "    at send (@/gameproto_sdk.js:66:11)\n"
            "    at f (@/main.js:4:3)\n"
            "    at Object.<anonymous> (@/main.js:6:1)\n"
            "    at Module._compile (node:internal/modules/cjs/loader:1521:14)\n"
            "\n"
            "Node.js v20.20.2\n"
        )
        self.assertEqual(
            JAVASCRIPT.rewrite_error(stderr, RUN_DIR),
            "EngineError: boom\n    at f (main.js:4:3)\n    at Object.<anonymous> (main.js:6:1)",
        )

    def test_out_of_memory_shows_fatal_line(self) -> None:
        """V8's GC log and native stack are replaced by its FATAL ERROR line."""
        stderr = (
            "\n<--- Last few GCs --->\n\n[1:0x1]  449 ms: Mark-Compact 207.9 -> 207.9 MB\n\n"
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n"
            "----- Native stack trace -----\n\n 1: 0xb78db3 node::OOMErrorHandler [/usr/bin/node]\n"
        )
        self.assertEqual(
            JAVASCRIPT.rewrite_error(stderr, RUN_DIR),
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        )


class RubyRewriteTests(SynchronousTestCase):
    def test_runtime_error(self) -> None:
        """An uncaught exception names main.rb and the user's lines."""
        stderr = at_run_dir(
            "@/main.rb:3:in `f': boom (RuntimeError)\n\tfrom @/main.rb:5:in `<main>'\n"
        )
        self.assertEqual(
            RUBY.rewrite_error(stderr, RUN_DIR),
            "main.rb:3:in `f': boom (RuntimeError)\n\tfrom main.rb:5:in `<main>'",
        )

    def test_syntax_error(self) -> None:
        """A syntax error names main.rb and the line."""
        stderr = at_run_dir("@/main.rb:3: syntax error, unexpected end-of-input, expecting `end'\n")
        self.assertEqual(
            RUBY.rewrite_error(stderr, RUN_DIR),
            "main.rb:3: syntax error, unexpected end-of-input, expecting `end'",
        )

    def test_sdk_frame_removed(self) -> None:
        """The error is shown at the user's call into the SDK."""
        stderr = at_run_dir(
            "@/gameproto_sdk.rb:25:in `send': boom (GameprotoSDK::EngineError)\n"
            "\tfrom @/main.rb:4:in `f'\n"
            "\tfrom @/main.rb:6:in `<main>'\n"
        )
        self.assertEqual(
            RUBY.rewrite_error(stderr, RUN_DIR),
            "main.rb:4:in `f': boom (GameprotoSDK::EngineError)\n\tfrom main.rb:6:in `<main>'",
        )

    def test_sdk_callees_removed(self) -> None:
        """Library frames the SDK called (json) go too."""
        stderr = at_run_dir(
            "/usr/lib/ruby/3.1.0/json/common.rb:312:in `generate': 1003: NaN not allowed in "
            "JSON (JSON::GeneratorError)\n"
            "\tfrom /usr/lib/ruby/3.1.0/json/common.rb:312:in `generate'\n"
            "\tfrom @/gameproto_sdk.rb:21:in `send'\n"
            "\tfrom @/main.rb:2:in `<main>'\n"
        )
        self.assertEqual(
            RUBY.rewrite_error(stderr, RUN_DIR),
            "main.rb:2:in `<main>': 1003: NaN not allowed in JSON (JSON::GeneratorError)",
        )


class PHPRewriteTests(SynchronousTestCase):
    def test_uncaught_exception(self) -> None:
        """An uncaught exception (after a warning) names main.php and the line."""
        stderr = at_run_dir(
            "PHP Warning:  something in @/main.php on line 1\n"
            "Fatal error: Uncaught Exception: boom in @/main.php:3\n"
            "Stack trace:\n"
            "#0 {main}\n"
            "  thrown in @/main.php on line 3\n"
        )
        self.assertEqual(
            PHP.rewrite_error(stderr, RUN_DIR),
            "PHP Warning:  something in main.php on line 1\n"
            "Fatal error: Uncaught Exception: boom in main.php:3\n"
            "Stack trace:\n#0 {main}\n  thrown in main.php on line 3",
        )

    def test_parse_error(self) -> None:
        """A parse error names main.php and the line; PHP's leading blank line goes."""
        stderr = at_run_dir('\nParse error: syntax error, unexpected token ";" in @/main.php on line 2\n')
        self.assertEqual(
            PHP.rewrite_error(stderr, RUN_DIR),
            'Parse error: syntax error, unexpected token ";" in main.php on line 2',
        )

    def test_sdk_frames_removed(self) -> None:
        """An EngineError is shown at the user's call into the SDK; frames renumbered."""
        stderr = at_run_dir(
            "Fatal error: Uncaught gameproto_sdk\\EngineError: boom in @/gameproto_sdk.php:44\n"
            "Stack trace:\n"
            "#0 @/main.php(2): gameproto_sdk\\send()\n"
            "#1 @/main.php(4): f()\n"
            "#2 {main}\n"
            "  thrown in @/gameproto_sdk.php on line 44\n"
        )
        self.assertEqual(
            PHP.rewrite_error(stderr, RUN_DIR),
            "Fatal error: Uncaught gameproto_sdk\\EngineError: boom in main.php:2\n"
            "Stack trace:\n"
            "#0 main.php(4): f()\n"
            "#1 {main}\n"
            "  thrown in main.php on line 2",
        )
