"""
The examples of the documentation run, so that they cannot rot.

Every fenced code block of README.md and docs/*.md whose info string is
``python runnable`` (the opening fence reads ```python runnable; GitHub shows it as
Python) is a whole program, and this module runs each one for real:

- A program is run as ``python example.py`` in a fresh directory and must exit with
  status 0 within 60 s.
- A program that talks to a gameproto server at the documented address (127.0.0.1:8000
  or localhost:8000) runs against a fresh ``twistd -n gameproto --store memory:`` on a
  free port, with that port in place of 8000.
- A program that starts a server of its own listens on port 0 and stops itself.
- A .tac file (it assigns ``application = ...``) is run with ``twistd -ny``, its
  ``tcp:8000`` replaced by ``tcp:0``; it must serve /healthz, then stop cleanly on
  SIGTERM.

Blocks without the marker are fragments (a piece of a program shown elsewhere whole),
shell sessions, or need what a test cannot give.  Besides the examples: README's
/healthz example shows the fields the server answers with, and no page points outside
the repository.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Callable

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gameproto import wire
from tests.nodes import TWISTD, Node, ServerProcess, http_json, stop_on_cleanup

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "runnable"
RUN_TIMEOUT = 60
# The address the documentation gives for a server started with `make run`.
DOCUMENTED_ADDRESS = re.compile(r"(127\.0\.0\.1|localhost):8000\b")
FENCE = re.compile(r"^```(.*)$")


@attrs.frozen
class Example:
    page: Path
    line: int  # of the opening fence
    info: str
    code: str

    @property
    def runnable(self) -> bool:
        words = self.info.split()
        return words[:1] == ["python"] and MARKER in words[1:]

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_tac(self) -> bool:
        return re.search(r"^application\s*=", self.code, re.MULTILINE) is not None


def fenced_blocks(page: Path) -> list[Example]:
    blocks: list[Example] = []
    opened: tuple[int, str] | None = None
    lines: list[str] = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence is None:
            if opened is not None:
                lines.append(line)
            continue
        if opened is None:
            opened, lines = (number, fence.group(1).strip()), []
        else:
            blocks.append(Example(page, opened[0], opened[1], "\n".join(lines) + "\n"))
            opened = None
    return blocks


def runnable_examples() -> list[Example]:
    return [block for page in PAGES for block in fenced_blocks(page) if block.runnable]


class DocsExamplesTests(TestCase):
    """One test per runnable example, named after its page and line (added below)."""

    timeout = RUN_TIMEOUT + 60

    def environment(self) -> dict[str, str]:
        # No developer's GAMEPROTO_* settings leak into an example.
        env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEPROTO_")}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def directory(self) -> str:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        return directory

    async def run_program(self, example: Example) -> None:
        code = example.code
        if DOCUMENTED_ADDRESS.search(code):
            server = stop_on_cleanup(self, Node("--store", "memory:"))
            port = await server.start()
            code = DOCUMENTED_ADDRESS.sub(f"127.0.0.1:{port}", code)
        directory = self.directory()
        path = os.path.join(directory, "example.py")
        Path(path).write_text(code, encoding="utf-8")
        out, err, status = await getProcessOutputAndValue(
            "timeout", ["-k", "5", str(RUN_TIMEOUT), sys.executable, path],
            env=self.environment(), path=directory, reactor=reactor,
        )
        report = (f"{example.name} exited with {status}\n--- stdout\n{out.decode(errors='replace')}"
                  f"\n--- stderr\n{err.decode(errors='replace')}")
        self.assertEqual(status, 0, report)
        self.assertNotIn(b"Traceback", out + err, report)

    async def run_tac(self, example: Example) -> None:
        self.assertIn("tcp:8000", example.code, f"{example.name}: a .tac listens on tcp:8000")
        directory = self.directory()
        path = os.path.join(directory, "example.tac")
        Path(path).write_text(example.code.replace("tcp:8000", "tcp:0"), encoding="utf-8")
        app = stop_on_cleanup(self, ServerProcess([TWISTD, "--pidfile=", "-ny", path],
                                                  cwd=directory, env=self.environment()))
        await app.start()
        status, health = await http_json("GET", app.url("/healthz"))
        self.assertEqual((status, health["status"]), (200, "ok"), app.text())
        await app.stop()
        # twistd ends a .tac stopped by SIGTERM by re-raising the signal on itself.
        self.assertIn((app.exit_code, app.exit_signal), [(0, None), (None, signal.SIGTERM)],
                      app.text())
        self.assertIn("gameproto stopped", app.text())
        self.assertNotIn("Traceback", app.text())

    def check(self, example: Example) -> Deferred[None]:
        run = self.run_tac if example.is_tac else self.run_program
        return Deferred.fromCoroutine(run(example))


def _example_test(example: Example) -> Callable[[DocsExamplesTests], Deferred[None]]:
    def test(self: DocsExamplesTests) -> Deferred[None]:
        return self.check(example)

    test.__doc__ = f"The example at {example.name} runs ({example.info})."
    return test


for _example in runnable_examples():
    _name = re.sub(r"\W", "_", f"test_{_example.page.stem}_line_{_example.line}")
    setattr(DocsExamplesTests, _name, _example_test(_example))


class DocsTextTests(SynchronousTestCase):
    def test_examples_are_found(self) -> None:
        """The marker is recognised: the pages hold runnable examples, README's are shell."""
        names = {example.page.name for example in runnable_examples()}
        self.assertTrue({"embedding.md", "match.md", "chat.md", "arena.md", "socketio.md"}
                        <= names, names)

    def test_no_page_points_outside_the_repository(self) -> None:
        """No page refers to the design notes or protocol specs users do not have."""
        for page in PAGES:
            text = page.read_text(encoding="utf-8")
            for pattern in (r"specs/", r"DESIGN", r"\.\./shared", r"the spec\b"):
                self.assertIsNone(re.search(pattern, text), f"{page.name}: {pattern}")

    def test_readme_health_example_shows_every_field(self) -> None:
        """README's /healthz answer has the fields the server sends, in the same order."""
        from tests.restsupport import make_server
        from gameproto.testing import request

        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        shown = re.search(r"curl localhost:8000/healthz\n# (\{.*\})", readme)
        assert shown is not None, "README shows curl localhost:8000/healthz and its answer"
        documented = wire.decode(shown.group(1))
        answered = request(make_server().site, "GET", "/healthz").json()
        self.assertEqual(list(documented), list(answered))
        self.assertEqual((documented["status"], documented["bus"]), ("ok", "local"))
