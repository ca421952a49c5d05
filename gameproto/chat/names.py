"""
The chat's name rules (DESIGN.md §4 "chat"), as pure functions.
"""

from __future__ import annotations

import unicodedata

MAX_NAME_LENGTH = 32
SERVER_NAME = "Server"

# Control, format, line/paragraph separators, surrogates, private use, unassigned:
# characters that make two names look alike or break a terminal.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def normalise_name(raw: object) -> str | None:
    """
    The name a client asked for, as it will be shown, or C{None} if it breaks a rule:
    NFKC-normalised then stripped, 1–32 code points, no character of a forbidden
    category, never C{Server} in any case.
    """
    if not isinstance(raw, str):
        return None
    name = unicodedata.normalize("NFKC", raw).strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        return None
    if any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in name):
        return None
    if name_key(name) == name_key(SERVER_NAME):
        return None
    return name


def name_key(name: str) -> str:
    """Two names are the same name when their keys are equal."""
    return name.casefold()
