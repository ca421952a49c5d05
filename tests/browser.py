"""
A real Chromium for the web page's tests: Debian's C{chromium} driven by the PyPI
C{playwright} package (Playwright's own browser download is not reachable from every
machine, so the system browser is launched by path).

Playwright's synchronous API blocks, so a scenario runs in a thread of its own
(L{in_browser}) while the reactor keeps serving the test: it reads the server's
output, runs Python clients, restarts servers (L{Browser.call} runs a coroutine on
the reactor and waits for it).

Every page is watched: an uncaught exception in the page or a C{console.error} fails
the test.  The only messages a scenario may tolerate are the browser's own network
failures while it deliberately makes the server unreachable or answer an error
(L{Browser.tolerating}), and even then only those.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Callable, Iterator

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, ensureDeferred

from twisted.trial.unittest import SkipTest

from tests.support import require_tool, running_in_ci

DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}



def in_browser(scenario: Callable[["Browser"], Any]) -> Deferred[Any]:
    """Run C{scenario(browser)} in a thread with a fresh headless Chromium."""
    executable = require_tool("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        message = "the playwright package is not installed (pip install -e '.[test]')"
        if running_in_ci():
            raise AssertionError(message) from None
        raise SkipTest(message) from None

    def run() -> Any:
        from playwright.sync_api import expect, sync_playwright

        # The machine running the tests may be busy: wait for the page as long as for
        # any action (Playwright's assertions wait 5 s by default).
        expect.set_options(timeout=15_000)
        with sync_playwright() as playwright:
            args = ["--no-sandbox"] if os.geteuid() == 0 else []
            chromium = playwright.chromium.launch(executable_path=executable, args=args)
            browser = Browser(chromium)
            try:
                result = scenario(browser)
                browser.assert_no_errors()
                return result
            finally:
                chromium.close()

    return threads.deferToThread(run)


class Browser:
    """One Chromium: a context (a visitor with their own cookies) per L{page}."""

    def __init__(self, chromium: Any) -> None:
        self.chromium = chromium
        self.errors: list[str] = []
        self.tolerated: list[str] = []
        self._tolerate: re.Pattern[str] | None = None

    def page(self, url: str, name: str, viewport: dict[str, int] = DESKTOP) -> Any:
        """A new visitor (its own context) on C{url}; C{name} labels its errors."""
        context = self.chromium.new_context(viewport=viewport)
        return self.open(context, url, name)

    def open(self, context: Any, url: str, name: str) -> Any:
        """Another tab of a visitor (the same cookies), watched like the first."""
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: self.errors.append(f"{name}: page error: {error}"))
        page.on("console", lambda message: self._console(name, message))
        page.goto(url)
        return page

    def _console(self, name: str, message: Any) -> None:
        if message.type != "error":
            return
        text = f"{name}: console.error: {message.text}"
        if self._tolerate is not None and self._tolerate.search(message.text):
            self.tolerated.append(text)
        else:
            self.errors.append(text)

    @contextlib.contextmanager
    def tolerating(self, pattern: str) -> Iterator[list[str]]:
        """
        Within the block, console errors matching C{pattern} (the browser's report of
        a failed request) are expected: they are collected in the list yielded.
        """
        self._tolerate = re.compile(pattern)
        start = len(self.tolerated)
        seen: list[str] = []
        try:
            yield seen
        finally:
            self._tolerate = None
            seen.extend(self.tolerated[start:])

    def assert_no_errors(self) -> None:
        if self.errors:
            raise AssertionError("errors in the page:\n" + "\n".join(self.errors))

    @staticmethod
    def call(coroutine_function: Callable[..., Any], *args: Any) -> Any:
        """Run a coroutine (or Deferred-returning function) on the reactor; its result."""
        return threads.blockingCallFromThread(
            reactor, lambda: ensureDeferred(_awaited(coroutine_function, *args))
        )


async def _awaited(function: Callable[..., Any], *args: Any) -> Any:
    return await function(*args)


def screenshot(page: Any, name: str) -> None:
    """
    Save what C{page} shows as C{name}.png in GAMEPROTO_SCREENSHOTS (docs/web with
    `make screenshots`), else in screenshots/ of the test run's directory (_trial_temp).
    """
    directory = os.environ.get("GAMEPROTO_SCREENSHOTS") or os.path.abspath("screenshots")
    os.makedirs(directory, exist_ok=True)
    page.screenshot(path=os.path.join(directory, f"{name}.png"))
