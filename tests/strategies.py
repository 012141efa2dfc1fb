"""Hypothesis strategies for Onside batches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

# JSON values as orjson reads them back: no NaN/inf, ints within 64 bits,
# strings without U+0000 (refused by design: PostgreSQL can't store it).
json_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(
    allow_nan=False, allow_infinity=False
) | json_text
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4),
    max_leaves=12,
)
payloads = st.dictionaries(json_text, json_values, max_size=5)

uuid4s = st.builds(lambda: str(uuid.uuid4())) | st.uuids(version=4).map(str)
any_uuids = st.uuids().map(str)

event_names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(lambda s: s.strip())

offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
datetimes = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)
)


@st.composite
def event_datetimes(draw: st.DrawFn) -> str:
    moment = draw(datetimes)
    style = draw(st.sampled_from(["Z", "offset", "naive"]))
    if style == "Z":
        return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    if style == "offset":
        return moment.replace(tzinfo=draw(offsets)).isoformat()
    return moment.isoformat()


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "event_name": draw(event_names),
        "payload": draw(payloads),
        "event_datetime": draw(event_datetimes()),
        "event_id": draw(uuid4s),
        "installation_id": draw(any_uuids),
    }


batches = st.lists(events(), min_size=1, max_size=8)

# One way to break one field of a valid event, with the field it breaks.
corruptions = st.sampled_from([
    ("event_name", None),
    ("event_name", ""),
    ("event_name", "   "),
    ("event_name", 42),
    ("payload", None),
    ("payload", []),
    ("payload", "text"),
    ("payload", {"bad": "nul\x00byte"}),
    ("event_datetime", "yesterday"),
    ("event_datetime", "2026-13-01T00:00:00Z"),
    ("event_datetime", "2026-05-05"),
    ("event_datetime", 1748275200),
    ("event_id", "not-a-uuid"),
    ("event_id", "550e8400-e29b-11d4-a716-446655440000"),  # version 1
    ("event_id", "550e8400e29b41d4a716446655440000"),  # not canonical
    ("event_id", 7),
    ("installation_id", "xyz"),
    ("installation_id", ["550e8400-e29b-41d4-a716-446655440000"]),
    ("event_id", "DELETE"),
])
