"""
gameproto as its users get it.  The wheel, built from the project's files, installed
with its dependencies in a fresh virtual environment outside the checkout: its
C{twistd gameproto} serves C{/healthz}, a REST sign-up and processor runs with the SDKs
the wheel ships.  An editable install in setuptools' default (PEP 660) mode: twistd finds
the plugin.  What the wheel holds: the plugin, C{py.typed}, the SDKs, the licence, a long
description whose links work on a package index page.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
import zipfile
from email import message_from_bytes
from email.message import Message
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

import gameproto
from gameproto.client import processor as processor_client
from tests.nodes import ServerProcess, http_json, stop_on_cleanup
from tests.processor_support import interpreter, require_root, run_uids
from tests.wheelsupport import REPOSITORY, project_wheel

# [text](target) and ![alt](target) in Markdown.
_MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def child_environment() -> dict[str, str]:
    """
    This process's environment without what would let a child import the checkout's
    gameproto instead of the installed one (PYTHONPATH, an activated venv) or change
    the server's settings (GAMEPROTO_*).
    """
    return {
        name: value for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        and not name.startswith("GAMEPROTO_")
    }


async def run(*argv: str | Path, cwd: Path) -> str:
    """Run a command to its end; its standard output, or a failure with all of its output."""
    out, err, code = await getProcessOutputAndValue(
        str(argv[0]), [str(a) for a in argv[1:]], env=child_environment(), path=str(cwd)
    )
    if code != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited with {code}:\n"
            f"{out.decode(errors='replace')}{err.decode(errors='replace')}"
        )
    return out.decode()


_wheelhouse: Path | None = None


async def wheelhouse() -> Path:
    """
    The wheels of gameproto's dependencies (and of setuptools, for an editable install's
    build), downloaded from the package index once per test process: each venv of these
    tests installs from them, as pip would from the index, without downloading them again.
    """
    global _wheelhouse
    if _wheelhouse is None:
        house = Path(tempfile.mkdtemp(prefix="gameproto-wheelhouse-"))
        atexit.register(shutil.rmtree, house, True)
        await run(sys.executable, "-m", "pip", "download", "--quiet", "--dest", house,
                  project_wheel(), "setuptools", cwd=house)
        _wheelhouse = house
    return _wheelhouse


async def fresh_venv(test: TestCase, *install: str | Path) -> Path:
    """
    A new virtual environment in a temporary directory, with C{pip install *install}
    done: dependencies resolved and installed by pip, from L{wheelhouse}.  The venv has
    no pip of its own (installing one is most of the time C{venv} takes): this process's
    pip installs into it (C{pip --python}).
    """
    house = await wheelhouse()
    directory = Path(tempfile.mkdtemp(prefix="gameproto-venv-"))
    test.addCleanup(shutil.rmtree, directory, True)
    venv = directory / "venv"
    await run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=directory)
    await run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
              "--quiet", "--no-index", "--find-links", house, *install, cwd=directory)
    return venv


async def imported_from(venv: Path, cwd: Path) -> Path:
    """Where the venv's Python imports gameproto from, started in C{cwd}."""
    found = await run(venv / "bin" / "python", "-c", "import gameproto; print(gameproto.__file__)",
                      cwd=cwd)
    return Path(found.strip()).parent


def wheel_metadata(wheel: zipfile.ZipFile) -> Message:
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return message_from_bytes(wheel.read(name))


class WheelContentsTests(SynchronousTestCase):
    def test_files(self) -> None:
        """
        The wheel holds the plugin (and no twisted/plugins/__init__.py of its own, which
        would hide Twisted's plugins), py.typed, the four SDKs, the launcher, the web page
        and the licence, and nothing at its top but gameproto and twisted/plugins.
        """
        with zipfile.ZipFile(project_wheel()) as wheel:
            names = set(wheel.namelist())
            [licence] = [n for n in names
                         if re.fullmatch(r"[^/]+\.dist-info/(licenses/)?LICENSE", n)]
            licence_text = wheel.read(licence).decode()
        for name in ("twisted/plugins/gameproto_plugin.py", "gameproto/py.typed",
                     "gameproto/tap.py", "gameproto/processor/launcher/__main__.py",
                     "gameproto/page/static/index.html"):
            self.assertIn(name, names)
        for language in ("py", "js", "rb", "php"):
            self.assertIn(f"gameproto/processor/sdk/gameproto_sdk.{language}", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertEqual({n.split("/")[0] for n in names if ".dist-info/" not in n},
                         {"gameproto", "twisted"})
        self.assertEqual({n for n in names if n.startswith("twisted/")},
                         {"twisted/plugins/gameproto_plugin.py"})
        self.assertIn("MIT License", licence_text)
        self.assertIn("Copyright (c) the gameproto authors", licence_text)

    def test_metadata(self) -> None:
        """
        The wheel's version is gameproto.__version__ (setup.cfg reads it from there), its
        licence MIT, and every link of its long description, the README shown on a package
        index page, is absolute: the README's relative links point at files of the
        repository under the Source URL, each of which exists.
        """
        with zipfile.ZipFile(project_wheel()) as wheel:
            metadata = wheel_metadata(wheel)
        self.assertEqual(metadata["Version"], gameproto.__version__)
        self.assertIn("MIT", [metadata["License"], metadata["License-Expression"]])
        urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
        source = urls["Source"]
        description = metadata.get_payload()
        self.assertIn("# gameproto", description)
        targets = [m["target"] for m in _MARKDOWN_LINK.finditer(description)]
        readme_targets = [m["target"] for m in _MARKDOWN_LINK.finditer(
            (REPOSITORY / "README.md").read_text())]
        self.assertEqual(len(targets), len(readme_targets))
        self.assertIn("docs/api.md", readme_targets)
        for target in targets:
            self.assertRegex(target, r"^(https?://|#)")
            for kind in ("blob", "raw"):
                if target.startswith(f"{source}/{kind}/main/"):
                    path = target.removeprefix(f"{source}/{kind}/main/").partition("#")[0]
                    self.assertTrue((REPOSITORY / path).is_file(), f"{target}: no {path} here")


class WheelInstallTests(TestCase):
    timeout = 300

    def setUp(self) -> None:
        require_root()  # the processor runs programs only in the isolated sandbox, as root
        interpreter("python")
        interpreter("javascript")

    async def test_installed_wheel_serves(self) -> None:
        """
        The wheel installed in a fresh venv outside the checkout (dependencies from the
        package index) imports gameproto from the venv; its twistd --version names
        gameproto's version; twistd -n gameproto, started in an empty directory, answers
        /healthz with that version and the processor on, signs a user up over REST, and runs
        a Python and a JavaScript program that each call the engine through the SDK the
        wheel installed.
        """
        venv = await fresh_venv(self, project_wheel())
        here = Path(tempfile.mkdtemp(prefix="gameproto-cwd-"))
        self.addCleanup(shutil.rmtree, here, True)
        installed = await imported_from(venv, here)
        self.assertTrue(installed.is_relative_to(venv), installed)
        twistd = venv / "bin" / "twistd"
        version = await run(twistd, "gameproto", "--version", cwd=here)
        self.assertRegex(version, rf"^gameproto {re.escape(gameproto.__version__)} \(Twisted ")

        runs = tempfile.mkdtemp(prefix="gameproto-wheel-runs-", dir="/tmp")
        self.addCleanup(shutil.rmtree, runs, True)
        uids = run_uids()
        node = stop_on_cleanup(self, ServerProcess(
            [str(twistd), "--pidfile=", "-n", "gameproto", "--port", "tcp:0:interface=127.0.0.1",
             "--processor-dir", runs, "--processor-uids", f"{uids[0]}-{uids[-1]}"],
            cwd=str(here), env=child_environment(),
        ))
        await node.start()

        status, health = await http_json("GET", node.url("/healthz"))
        self.assertEqual((status, health["status"], health["version"]),
                         (200, "ok", gameproto.__version__))
        self.assertEqual(health["details"]["processor"]["state"], "on")
        self.assertTrue((here / "gameproto.sqlite3").exists())  # the default store, in its cwd

        status, _ = await http_json("POST", node.url("/api/users/sign_up/"),
                                    {"username": "ann", "password": "password1"})
        self.assertEqual(status, 201)
        status, body = await http_json("POST", node.url("/api/token/"),
                                       {"username": "ann", "password": "password1"})
        self.assertEqual(status, 200)

        programs = {
            "python": "from gameproto_sdk import send\nprint(send({'n': 41})['n'] + 1)\n",
            "javascript": "const { send } = require('gameproto_sdk');\n"
                          "console.log(send({ n: 41 }).n + 1);\n",
        }
        for language, code in programs.items():
            socket = await processor_client.connect(
                reactor, node.ws_url(""), body["token"], on_command=lambda command: command
            )
            outcome = await socket.run(language, code)
            self.assertEqual((outcome.stdout, outcome.errors(), outcome.end["exit_code"]),
                             (["42"], [], 0), language)
            self.assertEqual([c["message"] for c in outcome.commands], [{"n": 41}])
        self.assertEqual(await node.stop(), 0)


class EditableInstallTests(TestCase):
    timeout = 300

    async def test_editable_install_finds_plugin(self) -> None:
        """
        pip install -e in setuptools' default (PEP 660) mode, into a fresh venv: the venv
        imports gameproto from the checkout, and twistd, started elsewhere, finds the
        gameproto plugin (its --version answers).  Without setup.cfg's package_dir the
        install hides twisted/plugins and twistd knows no gameproto command.
        """
        venv = await fresh_venv(self, "--editable", REPOSITORY)
        elsewhere = Path(tempfile.mkdtemp(prefix="gameproto-cwd-"))
        self.addCleanup(shutil.rmtree, elsewhere, True)
        self.assertEqual(await imported_from(venv, elsewhere), REPOSITORY / "gameproto")
        version = await run(venv / "bin" / "twistd", "gameproto", "--version", cwd=elsewhere)
        self.assertEqual(version.split(" (")[0], f"gameproto {gameproto.__version__}")
