"""
How the text of one C{twistd gameproto} option (a flag or its C{GAMEPROTO_*}
variable) becomes a value; each parser's C{coerceDoc} is what C{--help} says of it.
A bad value raises L{ValueError}, which the option parser reports as a usage error.
"""

from __future__ import annotations

from typing import Any, Callable

from gameproto.limits import Rate
from gameproto.processor.sandbox import parse_uid_range
from gameproto.web import ACCESS_LOG_POLICIES


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A parser of numbers of C{kind} (C{int}, C{float}) greater than 0."""

    def coerce(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if number <= 0:
            raise ValueError(f"{value!r} must be greater than 0")
        return number

    coerce.coerceDoc = "Must be greater than 0."  # type: ignore[attr-defined]
    return coerce


def size_in_bytes(value: str) -> int:
    """A size in bytes: C{1048576}, C{1024KiB}, C{1MiB} (also C{k}, C{K}, C{KB}, C{M}, C{MB})."""
    text = value.strip()
    number = text.rstrip("KMiBkmb")
    unit = text[len(number):].lower()
    factor = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
              "m": 1024**2, "mb": 1024**2, "mib": 1024**2}.get(unit)
    try:
        size = int(number) * factor if factor is not None else 0
    except ValueError:
        size = 0
    if size <= 0:
        raise ValueError(f"{value!r} is not a size in bytes (such as 1048576, 1024KiB or 1MiB)")
    return size


size_in_bytes.coerceDoc = "Bytes, or with a unit: 256KiB, 1MiB."  # type: ignore[attr-defined]


def rate_or_off(value: str) -> Rate | None:
    """C{10/h}, C{30/m}, C{20/10m}, C{5/90s}, or C{off}."""
    if value.strip().lower() == "off":
        return None
    return Rate.parse(value)


rate_or_off.coerceDoc = (  # type: ignore[attr-defined]
    "COUNT/PERIOD: 10/h, 30/m, 20/10m, 90/45s; off for no limit."
)


def uid_range(value: str) -> range:
    """C{FIRST-LAST}: the run uids of the processor."""
    return parse_uid_range(value)


uid_range.coerceDoc = "FIRST-LAST, inclusive."  # type: ignore[attr-defined]


def access_log_policy(value: str) -> str:
    """C{requests}, C{all} or C{off} (gameproto.web.ACCESS_LOG_POLICIES)."""
    if value not in ACCESS_LOG_POLICIES:
        raise ValueError("must be " + ", ".join(ACCESS_LOG_POLICIES[:-1]) + " or off")
    return value


def log_format(value: str) -> str:
    """C{text} or C{json}."""
    if value not in ("text", "json"):
        raise ValueError("must be text or json")
    return value
