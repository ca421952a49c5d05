"""
Helpers shared by the tests: external tools, free ports, real server processes.
"""

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest


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
