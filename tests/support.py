"""
Helpers shared by the tests: external tools, free ports, real server processes.
"""

import os
import shutil

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
