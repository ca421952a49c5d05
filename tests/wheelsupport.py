"""
The project's wheel, built once per test process by C{pip wheel} (in pip's isolated
build environment, with setuptools from the package index) from a copy of what the
build reads: the build writes nothing into the checkout, and the checkout's C{build/}
directory, which can hold files of modules deleted since, never reaches the wheel.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
#: Everything the build reads.
BUILD_FILES = ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "LICENSE")
BUILD_DIRECTORIES = ("gameproto", "twisted")

_wheel: Path | None = None


def project_wheel() -> Path:
    """The path of the wheel (removed when the test process exits)."""
    global _wheel
    if _wheel is None:
        scratch = Path(tempfile.mkdtemp(prefix="gameproto-wheel-"))
        atexit.register(shutil.rmtree, scratch, True)
        source = scratch / "source"
        source.mkdir()
        for name in BUILD_FILES:
            shutil.copy(REPOSITORY / name, source / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")
        for name in BUILD_DIRECTORIES:
            shutil.copytree(REPOSITORY / name, source / name, ignore=ignore)
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--wheel-dir", str(scratch / "dist"), str(source)],
            capture_output=True, text=True, timeout=300,
        )
        if built.returncode != 0:
            raise AssertionError(f"pip wheel failed:\n{built.stdout}{built.stderr}")
        [_wheel] = (scratch / "dist").glob("gameproto-*.whl")
    return _wheel


__all__ = ["REPOSITORY", "project_wheel"]
