"""
What the property-based tests share: the Hypothesis settings profile they run under
and the strategies of JSON values, text and frames.

The profile is deterministic (C{derandomize}: the examples follow from the test's
source, so a CI failure replays on any machine) and writes no example database.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings, strategies as st

settings.register_profile(
    "gameproto",
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("gameproto")

#: How many sequences of frames a protocol machine test plays: each one builds a
#: whole server, a hundred times dearer than one codec example.
MACHINE_EXAMPLES = 60

# Text a JSON codec can carry: any code point but the lone surrogates, which UTF-8
# cannot encode.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)

# The values orjson round-trips: integers within 64 bits, finite floats.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)


def json_values(scalars: st.SearchStrategy[Any] = json_scalars) -> st.SearchStrategy[Any]:
    """Any JSON value: nested lists and objects of C{scalars}."""
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(text, children, max_size=4),
        max_leaves=12,
    )


json_objects = st.dictionaries(text, json_values(), max_size=4)


def frames(commands: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """
    One step of a client: a frame (a command of the protocol, any JSON object or value,
    text that is not JSON, a binary frame, bytes that may not be UTF-8 in a text frame)
    or a pause of the clock.
    """
    return st.one_of(
        st.tuples(st.just("json"), commands),
        st.tuples(st.just("json"), commands),
        st.tuples(st.just("json"), json_objects),
        st.tuples(st.just("json"), json_values()),
        st.tuples(st.just("text"), text),
        st.tuples(st.just("binary"), st.binary(max_size=40)),
        st.tuples(st.just("raw-text"), st.binary(max_size=20)),
        st.tuples(st.just("advance"), st.floats(min_value=0, max_value=3)),
    )
