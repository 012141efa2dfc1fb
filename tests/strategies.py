"""Hypothesis strategies for Onside batches."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import strategies as st

# JSON values as orjson reads them back: no NaN/inf, ints within 64 bits,
# strings without U+0000 (refused by design: PostgreSQL can't store it).
json_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(json_text, json_values, max_size=5)

# Drawn by Hypothesis, never from uuid.uuid4(): a random id compresses to a
# different length each time, so a gzip-truncated body replayed while
# shrinking drew its cut point from a different range (FlakyStrategyDefinition).
uuid4s = st.uuids(version=4).map(str)
any_uuids = st.uuids().map(str)

event_names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(lambda s: s.strip())

offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
datetimes = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1))


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
corruptions = st.sampled_from(
    [
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
    ]
)


# -- Hostile requests ----------------------------------------------------------
#
# Raw bytes, not Python values: NaN, duplicate keys, lone surrogates and
# 400-digit numbers only exist in JSON text. Each request is a valid batch
# with something hostile put in it, then possibly mangled on the way out
# (truncated, gzipped, gzip-bombed, sent with a wrong Content-Type).

MAX_BODY = 1024 * 1024

# Valid JSON that is merely odd: a batch holding only these must be accepted and land.
ODD_TOKENS = [
    "123456789012345678901234567890",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1" * 300,
    "1e-400",
    "-0",
    "-0.0",
    "1E2",
    "5e-324",
    "1.7976931348623157e308",
    '"\\ud83d\\ude00"',
    '"\\u001f"',
    '"\\/"',
    "true",
    "null",
    "[]",
    "{}",
]
# What no JSON parser should accept, or PostgreSQL can't store: always a 400.
BROKEN_TOKENS = [
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "0.1e99999",
    "1" * 400,
    "01",
    "+1",
    ".5",
    "0x10",
    '"\\ud800"',
    '"\\udfff"',
    '"a\\ud83d"',
    '"\\u0000"',
    '"x\\u0000y"',
    '"\x01raw control"',
    "'single'",
    '"\\x41"',
    "",
]
string_tokens = st.text(max_size=12).map(lambda s: orjson.dumps(s).decode())
numbers = st.integers().map(str) | st.floats(allow_nan=False, allow_infinity=False).map(repr)
# A few keys, so that objects often repeat one (duplicate keys: the last one wins).
odd_keys = st.sampled_from(['"a"', '"b"', '"event_id"', '""', '"\\ud83d\\ude00"'])
broken_keys = st.sampled_from(['"\\u0000"', '"\\ud800"', "a", "1"])


def _containers(keys: st.SearchStrategy[str]):  # type: ignore[no-untyped-def]
    return lambda children: (
        st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
        | st.lists(st.tuples(keys, children), max_size=4).map(
            lambda kvs: "{" + ",".join(f"{k}:{v}" for k, v in kvs) + "}"
        )
    )


odd_json = st.recursive(
    st.sampled_from(ODD_TOKENS) | string_tokens | numbers, _containers(odd_keys), max_leaves=10
)
# Mostly odd, with one broken token or key somewhere.
broken_json = st.recursive(
    st.sampled_from(BROKEN_TOKENS), _containers(odd_keys | broken_keys), max_leaves=6
)


def _deep(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "1" + "]" * depth
    return '{"x":' * depth + "1" + "}" * depth


kinds = st.sampled_from(["array", "object"])
# Within the payload depth limit (with the {"k": ...} around it), and past it.
odd_deep_json = st.builds(_deep, st.integers(1, 62), kinds)
deep_json = st.builds(_deep, st.integers(64, 1100), kinds)


def _event_fields(event: dict[str, Any]) -> dict[str, str]:
    return {k: orjson.dumps(v).decode() for k, v in event.items()}


@st.composite
def hostile_events(draw: st.DrawFn) -> str:
    """One event as JSON text: valid, with one field (or an extra one) made hostile."""
    fields = _event_fields(draw(events()))
    # Most events are odd only in their payload, where they must be accepted.
    where = draw(st.sampled_from([*FIELDS_OR_EXTRA, "none", "none", *["odd payload"] * 12]))
    if where == "odd payload":
        where = "payload"
        value = draw(st.one_of(odd_json, odd_deep_json).map(lambda v: '{"k": ' + v + "}"))
    elif where == "payload":
        value = draw(st.one_of(broken_json, deep_json).map(lambda v: '{"k": ' + v + "}"))
    else:
        value = draw(st.one_of(odd_json, broken_json, deep_json))
    pairs = list(fields.items())
    if where == "extra":
        pairs.append((draw(st.sampled_from(["event_id", "payload", "extra", "\\u0000"])), value))
    elif where != "none":
        pairs = [(k, value if k == where else v) for k, v in pairs]
    pairs = draw(st.permutations(pairs))
    return "{" + ",".join(f'"{k}":{v}' for k, v in pairs) + "}"


FIELDS_OR_EXTRA = [
    "event_name",
    "payload",
    "event_datetime",
    "event_id",
    "installation_id",
    "extra",
]


@dataclass(frozen=True)
class HostileRequest:
    body: bytes
    headers: dict[str, str]

    def __repr__(self) -> str:  # a megabyte body would drown the report
        head = self.body[:300]
        return f"HostileRequest(headers={self.headers!r}, body={head!r}... {len(self.body)} bytes)"


def _gzip_bomb(_: bytes) -> bytes:
    return gzip.compress(b'{"events": [' + b" " * (8 * MAX_BODY) + b"]}", compresslevel=9)


@st.composite
def hostile_requests(draw: st.DrawFn) -> HostileRequest:
    batch = draw(st.lists(hostile_events(), min_size=1, max_size=3))
    top = '{"events": [' + ",".join(batch) + "]}"
    if draw(st.sampled_from([False] * 4 + [True])):
        # One event whose payload is a megabyte string: the body just under,
        # at, or just over the limit.
        fields = _event_fields(draw(events()))
        fields["payload"] = '{"pad": "PAD"}'
        top = '{"events": [{' + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}]}"
        unit = draw(st.sampled_from(["x", "é", "\\u0000", "\\ud800", "\\n", "😀"]))
        room = MAX_BODY - len(top.encode()) + 3 + draw(st.integers(-300, 40))
        top = top.replace("PAD", unit * (room // len(unit.encode())))
    top = draw(
        st.sampled_from(
            [
                top,
                top,
                top,
                top,
                top[:-1] + ', "events": []}',  # a duplicate "events" key
                top.replace('{"events": ', '{"events": ' + "[" * 300, 1) + "]" * 300,
            ]
        )
    )
    body = top.encode("utf-8", "surrogatepass")
    headers = {
        "Content-Type": draw(
            st.sampled_from(
                [
                    *["application/json"] * 20,
                    "application/json; charset=utf-8",
                    "application/vnd.api+json",
                    "text/json",
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "multipart/form-data",
                    "",
                    "application/json; charset=utf-16",
                    "*/*",
                ]
            )
        )
    }
    mangle = draw(
        st.sampled_from(
            [
                *["none"] * 8,
                *["gzip"] * 3,
                "gzip-truncated",
                "bomb",
                "deflate",
                "br",
                "truncate",
                "not-utf8",
            ]
        )
    )
    if mangle == "truncate":
        body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    elif mangle == "not-utf8":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + body[at:]
    elif mangle in ("gzip", "gzip-truncated", "bomb"):
        body = _gzip_bomb(body) if mangle == "bomb" else gzip.compress(body)
        if mangle == "gzip-truncated":
            body = body[: draw(st.integers(0, len(body) - 1))]
        headers["Content-Encoding"] = "gzip"
    elif mangle == "deflate":
        body = zlib.compress(body)
        headers["Content-Encoding"] = "deflate"
    elif mangle == "br":
        headers["Content-Encoding"] = "br"
    return HostileRequest(body, headers)
