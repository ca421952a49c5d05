"""
The web page's files: served at / and below a prefix with their security headers, no
inline script, relative links only, the vendored libraries byte for byte the pinned npm
packages, and everything inside the wheel.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from gameproto import web
from gameproto.page import STATIC
from gameproto.testing import request
from tests.support import running_in_ci
from tests.restsupport import make_server
from tests.wheelsupport import project_wheel

REPOSITORY = Path(__file__).parent.parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")


class _Page(HTMLParser):
    """Every script, stylesheet, icon and inline attribute of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.inline_script_text: list[str] = []
        self.inline_attributes: list[str] = []
        self.ids: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.append(attributes["id"] or "")
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.inline_attributes.append(f"<{tag} {name}>")
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "link" and attributes.get("href"):
            self.links.append(attributes["href"] or "")
        if tag == "style":
            self.inline_attributes.append("<style>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script_text.append(data.strip())


def parse_index() -> _Page:
    page = _Page()
    page.feed((STATIC / "index.html").read_text("utf-8"))
    return page


class ServingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = make_server()

    def test_page_at_root(self) -> None:
        """GET / is the page, as HTML, with the Content-Security-Policy and nosniff."""
        response = request(self.server.site, "GET", "/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(response.headers["content-security-policy"], CSP)
        self.assertEqual(response.headers["x-content-type-options"], "nosniff")
        self.assertEqual(response.headers["referrer-policy"], "same-origin")
        self.assertIn(b'<script type="module" src="assets/app/main.js"></script>', response.body)

    def test_every_asset_of_the_page_is_served(self) -> None:
        """Each script and stylesheet the page names is served with its type and the CSP."""
        page = parse_index()
        sources = [script["src"] for script in page.scripts] + page.links
        self.assertGreaterEqual(len(sources), 12)
        types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".svg": "image/svg+xml"}
        for source in sources:
            assert source is not None
            response = request(self.server.site, "GET", "/" + source)
            self.assertEqual(response.status, 200, source)
            self.assertEqual(response.headers["content-type"], types[Path(source).suffix], source)
            self.assertEqual(response.headers["content-security-policy"], CSP)

    def test_modules_import_by_relative_paths(self) -> None:
        """Every module the page's scripts import is a relative path that is served."""
        app = STATIC / "assets" / "app"
        imports = 0
        for module in app.glob("*.js"):
            for target in re.findall(r'^import .* from "([^"]+)";$', module.read_text("utf-8"),
                                     re.MULTILINE):
                imports += 1
                self.assertRegex(target, r"\A\.\.?/", (module.name, target))
                path = os.path.normpath(f"/assets/app/{target}")
                self.assertEqual(request(self.server.site, "GET", path).status, 200, path)
        self.assertGreaterEqual(imports, 15)

    def test_missing_files_and_directories(self) -> None:
        """A missing file, a directory, a path out of the directory: JSON 404, no listing."""
        for path in ["/assets/", "/assets/nope.js", "/assets/app/", "/assets/%2E%2E/__init__.py",
                     "/index.html/x"]:
            response = request(self.server.site, "GET", path)
            self.assertEqual(response.status, 404, path)
            self.assertEqual(response.json(), {"error": "not found"}, path)

    def test_other_methods(self) -> None:
        """POST to a file of the page is a JSON 405."""
        response = request(self.server.site, "POST", "/assets/style.css", b"{}")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.headers["allow"], "GET, HEAD")
        self.assertIn("error", response.json())

    def test_below_a_prefix(self) -> None:
        """
        Mounted at /game the page is at /game/ with its files at /game/assets/; /game
        itself redirects to /game/ (the page's relative links resolve from there).
        """
        server = make_server(port=None)
        app_root = web.Tree()
        web.mount(app_root, "/game", server.root)
        site = web.make_site(app_root, server.reactor)
        page = request(site, "GET", "/game/")
        self.assertEqual(page.status, 200)
        self.assertIn(b"assets/app/main.js", page.body)
        self.assertEqual(request(site, "GET", "/game/assets/app/main.js").status, 200)
        moved = request(site, "GET", "/game?x=1")
        self.assertEqual((moved.status, moved.headers["location"]), (301, "./game/?x=1"))
        self.assertEqual(request(site, "GET", "/game/api/session/").json(), {"user": None})


class NoInlineScriptTests(SynchronousTestCase):
    def test_page_has_no_inline_script_or_style(self) -> None:
        """
        Every script of the page is a file (the CSP forbids inline script), and no
        element has a style or event-handler attribute.
        """
        page = parse_index()
        self.assertEqual(page.inline_script_text, [])
        self.assertTrue(all(script.get("src") for script in page.scripts))
        self.assertEqual(page.inline_attributes, [])

    def test_no_remote_resources(self) -> None:
        """The page and its scripts name no other host: nothing comes from a CDN."""
        for path in [STATIC / "index.html", *(STATIC / "assets" / "app").glob("*.js"),
                     STATIC / "assets" / "style.css"]:
            self.assertNotRegex(path.read_text("utf-8"), r"https?://", path.name)

    def test_ids_are_unique(self) -> None:
        """Element ids are unique (labels and ARIA references point at one element)."""
        ids = parse_index().ids
        self.assertEqual(len(ids), len(set(ids)))


class ExamplesTests(SynchronousTestCase):
    def test_pong_bot_examples_are_the_example_files(self) -> None:
        """
        The Code view's "Pong bot" example in each language is examples/pong_bot.* as
        it is, in a JavaScript template literal.
        """
        source = (STATIC / "assets" / "app" / "examples.js").read_text("utf-8")
        for extension in ("py", "js", "rb", "php"):
            text = (REPOSITORY / "examples" / f"pong_bot.{extension}").read_text("utf-8")
            literal = text.replace("\\", "\\\\").replace("`", "\\`").replace("${", "\\${")
            self.assertIn(f"    pong: `{literal}`,\n", source, extension)


class VendoredFilesTests(SynchronousTestCase):
    """The committed browser libraries are exactly the npm packages web/package-lock.json pins."""

    def listed(self) -> list[tuple[str, str]]:
        pairs = []
        for line in (REPOSITORY / "web" / "vendor-files.txt").read_text("utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                source, destination = line.split()
                pairs.append((source, destination))
        return pairs

    def test_every_vendored_file_is_listed(self) -> None:
        """The vendor directory holds the listed files, nothing else."""
        vendor = STATIC / "assets" / "vendor"
        present = sorted(str(p.relative_to(vendor)) for p in vendor.rglob("*") if p.is_file())
        self.assertEqual(present, sorted(destination for _, destination in self.listed()))

    def test_licences_shipped(self) -> None:
        """Each vendored library ships with its licence."""
        vendor = STATIC / "assets" / "vendor"
        for library in ("codemirror", "socket.io-client"):
            self.assertIn("MIT License", (vendor / library / "LICENSE").read_text("utf-8")
                          .replace("(The MIT License)", "MIT License"), library)

    def test_pinned_versions(self) -> None:
        """package.json pins exact versions and the lock file agrees with it."""
        package = json.loads((REPOSITORY / "web" / "package.json").read_text("utf-8"))
        lock = json.loads((REPOSITORY / "web" / "package-lock.json").read_text("utf-8"))
        for name, version in package["dependencies"].items():
            self.assertRegex(version, r"\A\d+\.\d+\.\d+\Z", name)
            self.assertEqual(lock["packages"][f"node_modules/{name}"]["version"], version)

    def test_files_equal_the_packages(self) -> None:
        """Each vendored file is byte for byte its file in the installed npm packages."""
        modules = REPOSITORY / "web" / "node_modules"
        if not modules.is_dir():
            message = "web/node_modules is missing (make test-deps runs npm ci in web/)"
            if running_in_ci():
                raise AssertionError(message)
            raise SkipTest(message)
        vendor = STATIC / "assets" / "vendor"
        for source, destination in self.listed():
            self.assertEqual((modules / source).read_bytes(), (vendor / destination).read_bytes(),
                             destination)


class WheelTests(SynchronousTestCase):
    def test_page_in_the_wheel(self) -> None:
        """A wheel built from the repository holds every file of the page."""
        with zipfile.ZipFile(project_wheel()) as wheel:
            names = set(wheel.namelist())
        expected = {
            "gameproto/page/" + str(path.relative_to(STATIC.parent))
            for path in STATIC.rglob("*") if path.is_file()
        }
        self.assertGreaterEqual(len(expected), 30)
        self.assertEqual(expected - names, set())
