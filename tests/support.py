"""
Helpers shared by the tests: external tools, the npm packages of the interop clients,
waiting on a real reactor for what has no notification of its own.
"""

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest

from gameproto.redis import RedisUnavailable

# The Node.js clients of the interop tests and their package-lock.json.
INTEROP = Path(__file__).parent / "interop"

# A time limit is tested on an injected Clock wherever the code under test takes one.
# Tests that cannot (real redis-servers, real twistd processes, Redis's own TTLs) check
# the limits the documentation promises, "fails within 2 s", "aborted within the lease
# TTL", by waiting for the event with a deadline (L{within}, L{wait_for}) and never by
# subtracting readings of the clock.  On a shared machine a process start, a garbage
# collection or a busy neighbour adds a pause that no documented limit accounts for, so
# every such deadline is the documented time plus this slack, in seconds, the same for
# every test.  It is added, not multiplied, because the pauses do not grow with the
# limit; and it stays well below what a broken limit costs (a timeout left at its
# library default of 10 s or more, a second lease period).
WALL_CLOCK_SLACK = 2.0


def wall_clock_ceiling(documented: float) -> float:
    """The longest a test on the real reactor accepts for a C{documented}-second limit."""
    return documented + WALL_CLOCK_SLACK


def within(d: Deferred[Any], seconds: float) -> Deferred[Any]:
    """C{d}, failing with TimeoutError if it has not fired in C{seconds}: a deadline."""
    return d.addTimeout(seconds, reactor)


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """
    Return the path of the executable C{name}.  Without it the calling test skips, except
    under CI=true, where a missing tool is a failure: CI installs everything (.ci/test-deps).
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test-deps installs it)"
        if running_in_ci():
            raise AssertionError(message)
        raise SkipTest(message)
    return path


def require_module(name: str) -> ModuleType:
    """
    Import the Python module C{name}, a test dependency (the C{test} extra).  Without it
    the calling test skips, except under CI=true, where it is a failure.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"{name} is not installed (pip install -e '.[test]' installs it)"
        if running_in_ci():
            raise AssertionError(message) from None
        raise SkipTest(message) from None


async def npm_ci(directory: Path, package: str) -> None:
    """
    Install the npm packages locked in C{directory} (.ci/test-deps does it ahead),
    unless C{package} is there already.
    """
    if (directory / "node_modules" / package).is_dir():
        return
    npm = require_tool("npm")
    out, err, code = await getProcessOutputAndValue(
        npm, ["ci", "--no-audit", "--no-fund"], env=dict(os.environ), path=str(directory)
    )
    if code != 0:
        raise AssertionError(f"npm ci in {directory} failed: {err.decode(errors='replace')}")


async def wait_for(condition: Any, deadline: float, poll: float = 0.05,
                   action: Any = None) -> None:
    """
    Wait until C{condition()} holds, running C{action()} between checks; fail after
    C{deadline} seconds.  For events with no notification of their own (a
    reconnection), never as a stand-in for one.
    """
    start = reactor.seconds()
    while not condition():
        if reactor.seconds() - start > deadline:
            raise AssertionError(f"condition not met within {deadline} s")
        if action is not None:
            try:
                await action()
            except RedisUnavailable:
                pass
        await deferLater(reactor, poll, lambda: None)
