"""
The web page: static files shipped inside the package, served at C{/} (the page) and
C{/assets/} (its scripts, styles and the vendored browser libraries) of gameproto's
tree, wherever that tree is mounted.  Every link of the page is relative, so the same
files work at C{/} and below any prefix.

Each response carries a Content-Security-Policy without inline script: whatever
text a user manages to put into the page (a chat message, a username, a program's
output) cannot run as script.  See docs/web.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.web import http
from twisted.web.resource import Resource

from gameproto import wire
from gameproto.web import JSONNotFound

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        # 'self' covers ws:// and wss:// to the page's own host.
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Files change with the installed version: revalidate (Last-Modified) every time.
    "Cache-Control": "no-cache",
}


class StaticFiles(Resource):
    """
    The page's files below C{directory} (or the one file C{index}): GET and HEAD, with
    the security headers, Last-Modified and If-Modified-Since, a JSON 404 for anything
    that is not a file there, and no directory listings.  The files are small and read
    whole, so a response is written at once.
    """

    isLeaf = True
    CONTENT_TYPES = {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".map": "application/json",
        ".svg": "image/svg+xml",
        ".png": "image/png",
    }

    def __init__(self, directory: Path, index: str | None = None) -> None:
        super().__init__()
        self.directory = directory
        self.index = index

    def _file(self, request: Any) -> Path | None:
        segments = list(request.postpath)
        if self.index is not None:
            if segments not in ([], [b""]):
                return None
            segments = [self.index.encode("utf-8")]
        try:
            names = [segment.decode("utf-8") for segment in segments]
        except UnicodeDecodeError:
            return None
        if not names or any(name in ("", ".", "..") or "/" in name or "\\" in name
                            or "\0" in name for name in names):
            return None
        path = self.directory.joinpath(*names)
        if path.suffix not in self.CONTENT_TYPES or not path.is_file():
            return None
        return path

    def render(self, request: Any) -> bytes:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        path = self._file(request)
        if path is None:
            return JSONNotFound().render(request)
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader("Allow", "GET, HEAD")
            request.setHeader("Content-Type", "application/json")
            method = request.method.decode("ascii", "replace")
            return wire.encode({"error": f"method {method} not allowed"})
        request.setHeader("Content-Type", self.CONTENT_TYPES[path.suffix])
        if request.setLastModified(path.stat().st_mtime) is http.CACHED:
            return b""
        return path.read_bytes()


def mount_page(root: Resource) -> None:
    """Serve the page at C{""} (the tree's own path with a slash) and its files at C{assets}."""
    root.putChild(b"", StaticFiles(STATIC, index="index.html"))
    root.putChild(b"assets", StaticFiles(STATIC / "assets"))
