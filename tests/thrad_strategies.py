"""Hypothesis strategies for Thrad event bodies (beside tests/strategies.py's batches)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from app.thrad.contract import NUMBER_FIELDS, OBJECT_FIELDS, STRING_FIELDS
from tests.strategies import json_text, json_values

# Strings as a partner might send them: anything JSON can carry, U+0000 included.
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
numbers = st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)


def _well_typed(field: str) -> st.SearchStrategy[Any]:
    if field in NUMBER_FIELDS:
        return numbers
    if field in OBJECT_FIELDS:
        return st.dictionaries(json_text, json_values, max_size=4)
    return any_text


FIELDS = ("event_name", *STRING_FIELDS, *NUMBER_FIELDS, *OBJECT_FIELDS)


@st.composite
def event_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-typed events, with now and then a field of any JSON type."""
    body: dict[str, Any] = {}
    for field in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS))):
        body[field] = draw(json_values if draw(st.integers(0, 9)) == 0 else _well_typed(field))
    if draw(st.booleans()):
        body.setdefault("event_name", draw(any_text))
    body.update(draw(st.dictionaries(json_text, json_values, max_size=2)))  # unknown fields
    return body


# The OpenAPI schema's edges: names blank to Python (str.isspace) or to other
# regex engines' \s (U+FEFF), or holding U+0000; params with U+0000 in them.
_EDGE_CHARACTERS = "\t\n\x0b\x1c\x1f \x85\xa0\u2000\u3000\ufeff\x00a"
edge_event_bodies = st.one_of(
    event_bodies(),
    st.builds(
        lambda b, n: {**b, "event_name": n},
        event_bodies(),
        st.text(st.sampled_from(_EDGE_CHARACTERS), max_size=3),
    ),
    st.builds(
        lambda b, p: {**b, "params": p},
        event_bodies(),
        st.dictionaries(st.sampled_from(["k", "\x00"]), st.sampled_from(["v", "\x00"])),
    ),
    # Dedup ids around their 256-character limit, and blank ones.
    st.builds(
        lambda b, f, n, c: {**b, f: c * n},
        event_bodies(),
        st.sampled_from(["tag_id", "event_id"]),
        st.sampled_from([0, 1, 255, 256, 257, 600]),
        st.sampled_from(["a", " ", "\U0001f600"]),
    ),
)
