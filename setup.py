"""
Everything about the package is in setup.cfg but its long description: README.md
with its relative links made absolute against setup.cfg's Source URL.  A package
index page shows the long description with nothing beside it, so C{docs/api.md}
would point nowhere there; the README itself keeps relative links, which work in a
checkout and on the repository's own pages.
"""

import configparser
import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
# [text](target) and ![alt](target); a target with a scheme or only an #anchor is
# left alone.
_RELATIVE_LINK = re.compile(
    r"(?P<image>!?)\[(?P<text>[^\]]*)\]"
    r"\((?P<target>(?![a-z][a-z0-9+.-]*:|#)[^)\s]+)\)"
)


def source_url() -> str:
    config = configparser.ConfigParser()
    config.read(HERE / "setup.cfg")
    for line in config["metadata"]["project_urls"].strip().splitlines():
        name, _, url = line.partition("=")
        if name.strip() == "Source":
            return url.strip().rstrip("/")
    raise SystemExit("setup.cfg: project_urls has no Source")


def absolute_links(markdown: str, source: str) -> str:
    """Relative links to files of the repository made absolute: pages, and raw images."""

    def absolute(match: re.Match[str]) -> str:
        kind = "raw" if match["image"] else "blob"
        return f"{match['image']}[{match['text']}]({source}/{kind}/main/{match['target']})"

    return _RELATIVE_LINK.sub(absolute, markdown)


setup(
    long_description=absolute_links((HERE / "README.md").read_text("utf-8"), source_url()),
    long_description_content_type="text/markdown",
)
