"""Validation of Onside batches, without HTTP: bytes in, events or a 400/413 out."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import InvalidRequest, PayloadTooLarge
from app.onside.contract import FIELDS
from app.onside.validate import (
    COLUMNS,
    MAX_LISTED_ERRORS,
    _accept_columns,
    _accept_fast,
    parse_datetime,
    validate_batch,
    validate_events,
)
from app.policy import PartnerPolicy
from app.quality.clock import ClockGuard
from tests.strategies import batches, corruptions

VALID = {
    "event_name": "purchase_completed",
    "payload": {"currency": "USD", "amount": "9.99"},
    "event_datetime": "2026-05-05T12:00:00Z",
    "event_id": "550e8400-e29b-41d4-a716-446655440000",
    "installation_id": "550e8400-e29b-41d4-a716-446655440000",
}


def body(*events: Any) -> bytes:
    return orjson.dumps({"events": list(events)})


def problems(raw: bytes) -> list[dict[str, Any]]:
    with pytest.raises(InvalidRequest) as caught:
        validate_batch(raw, 1000)
    assert caught.value.errors is not None
    return caught.value.errors


def test_reference_example_is_valid() -> None:
    [event] = validate_batch(body(VALID), 1000)
    assert event == {
        "event_id": VALID["event_id"],
        "installation_id": VALID["installation_id"],
        "event_name": "purchase_completed",
        "event_datetime": "2026-05-05T12:00:00+00:00",
        "payload": {"currency": "USD", "amount": "9.99"},
    }


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        (b"{not json", None, "malformed JSON"),
        (b"", None, "malformed JSON"),
        (b"[]", "events", "is required"),
        (b'{"evnts": []}', "events", "is required"),
        (b'{"events": {}}', "events", "must be an array"),
        (b'{"events": []}', "events", "must not be empty"),
        (b'{"events": [1]}', None, "must be a JSON object"),
        (b'{"events": [{"a": NaN}]}', None, "malformed JSON"),
        (b'{"events": [{"a": 1e999}]}', None, "malformed JSON"),
        (b'{"events": ["\\ud800"]}', None, "malformed JSON"),
    ],
)
def test_document_level_problems(raw: bytes, field: str | None, fragment: str) -> None:
    [problem] = problems(raw)
    assert problem["field"] == field
    assert fragment in problem["message"]


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b'{"events": ["\xff"]}', "at byte offset 13 (invalid start byte)"),
        (b'{"events": ["\xe2\x82"]}', "at byte offset 13 (invalid continuation byte)"),
        (b'{"events": ["ok"]}\xc3', "at byte offset 18 (unexpected end of data)"),
    ],
)
def test_a_body_that_is_not_utf8_is_refused_naming_the_offset(raw: bytes, named: str) -> None:
    # orjson itself says "surrogates not allowed" at character 0 for every such byte.
    [problem] = problems(raw)
    assert problem == {
        "index": None,
        "field": None,
        "message": f"malformed JSON: not valid UTF-8 {named}",
    }


def test_more_events_than_the_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        validate_batch(body(*[VALID] * 1001), 1000)
    assert len(validate_batch(body(*[VALID] * 1000), 1000)) == 1000


@pytest.mark.parametrize("field", list(VALID))
def test_each_field_is_required(field: str) -> None:
    event = {k: v for k, v in VALID.items() if k != field}
    assert problems(body(VALID, event)) == [{"index": 1, "field": field, "message": "is required"}]


def test_every_problem_is_listed_with_its_index() -> None:
    bad = dict(VALID, event_id="nope", installation_id="also-nope", payload=[1])
    found = problems(body(VALID, bad, VALID, dict(VALID, event_name="")))
    assert [(p["index"], p["field"]) for p in found] == [
        (1, "payload"),
        (1, "event_id"),
        (1, "installation_id"),
        (3, "event_name"),
    ]


def test_the_listed_problems_are_capped_but_counted() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_batch(body(*[dict(VALID, event_id="x")] * 500), 1000)
    assert caught.value.errors is not None
    assert len(caught.value.errors) == MAX_LISTED_ERRORS
    assert "500 problems" in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-05-05T12:00:00Z", "2026-05-05T12:00:00+00:00"),
        ("2026-05-05T14:00:00+02:00", "2026-05-05T12:00:00+00:00"),
        ("2026-05-05T12:00:00", "2026-05-05T12:00:00+00:00"),  # naive means UTC
        ("2026-05-05T12:00:00.123456Z", "2026-05-05T12:00:00.123456+00:00"),
        ("2026-05-05 07:00:00-05:00", "2026-05-05T12:00:00+00:00"),
        ("2026-05-05t12:00:00z", "2026-05-05T12:00:00+00:00"),  # RFC 3339 allows lowercase
    ],
)
def test_datetimes_are_stored_as_utc(value: str, expected: str) -> None:
    parsed = parse_datetime(value)
    assert parsed is not None and parsed.isoformat() == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-05-05",
        "yesterday",
        "",
        "2026-02-30T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "z",
        "t",
        "2026-05-05tz",
        "2026-05-05T12:00:60Z",
    ],
)
def test_invalid_datetimes_are_refused(value: str) -> None:
    assert parse_datetime(value) is None


def test_uuids_are_accepted_in_either_case_and_stored_lowercase() -> None:
    upper = dict(
        VALID, event_id=VALID["event_id"].upper(), installation_id=VALID["event_id"].upper()
    )
    [event] = validate_batch(body(upper), 1000)
    assert event["event_id"] == VALID["event_id"]
    assert event["installation_id"] == VALID["installation_id"]


def test_nul_anywhere_in_the_payload_is_refused() -> None:
    nested = dict(VALID, payload={"a": [{"b": "x\x00y"}]})
    in_key = dict(VALID, payload={"k\x00": 1})
    found = problems(body(VALID, nested, in_key))
    assert [(p["index"], p["field"]) for p in found] == [(1, "payload"), (2, "payload")]
    assert "\\u0000" in found[0]["message"]


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    event = dict(VALID, payload={"path": "C:\\u0000"})
    [accepted] = validate_batch(body(event), 1000)
    assert accepted["payload"] == {"path": "C:\\u0000"}


def test_unknown_fields_are_ignored() -> None:
    [event] = validate_batch(body(dict(VALID, extra={"x": 1})), 1000)
    assert "extra" not in event


@given(batches)
def test_any_valid_batch_is_accepted_whole(events: list[dict[str, Any]]) -> None:
    accepted = validate_batch(body(*events), 1000)
    assert [e["event_id"] for e in accepted] == [e["event_id"].lower() for e in events]
    assert [e["payload"] for e in accepted] == [e["payload"] for e in events]


@given(batches, st.data(), corruptions)
def test_one_corruption_is_caught_at_its_index(
    events: list[dict[str, Any]], data: st.DataObject, corruption: tuple[str, Any]
) -> None:
    index = data.draw(st.integers(0, len(events) - 1))
    field, value = corruption
    broken = copy.deepcopy(events)
    broken[index][field] = value
    found = problems(body(*broken))
    assert found == [{"index": index, "field": field, "message": found[0]["message"]}]


@given(batches)
def test_the_fast_path_accepts_exactly_what_the_slow_path_does(
    events: list[dict[str, Any]],
) -> None:
    """validate_batch takes a fast path for valid batches; its output must be the slow path's."""
    raw = body(*events)
    assert validate_batch(raw, 1000) == validate_events(orjson.loads(raw)["events"])


@pytest.mark.parametrize(
    "value",
    [
        "2026-05-05T12:00:00Z",
        "2026-05-05T12:00:00.000Z",
        "2026-05-05T12:00:00.5Z",
        "2026-05-05T12:00:00.123Z",
        "2026-05-05T12:00:00.123456Z",
        "2026-05-05T12:00:00.1234567Z",
        "2026-05-05T12:00:00+00:00",
        "2026-05-05T12:00:00-00:00",
        "2026-05-05T12:00:00,5Z",
        "2026-05-05 12:00:00Z",
        "2026-05-05T12:00Z",
        "2026-05-05T12Z",
        "20260505T120000Z",
        "2026-W19-2T12:00:00Z",
        "2026-125T12:00:00Z",
        "2026-05-05T23:59:59.999999+01:00",
        "2026-05-05T12:00:00",
        "2026-05-05T24:00:00Z",
        "2026-05-05T12:00:00+0000",
        "2026-05-05T1:00:00Z",
        "2026-05-05T12:00:0Z",
        "2026-05-05T12:00:00.Z",
        "2026-05-05t12:00:00z",
        "2026-05-05T12:00:00 Z",
        "2026-05-05T12:00:00+00",
    ],
)
def test_both_paths_store_the_same_utc_datetime(value: str) -> None:
    raw = body(dict(VALID, event_datetime=value))
    expected = parse_datetime(value)
    if expected is None:
        [problem] = problems(raw)
        assert problem["field"] == "event_datetime"
    else:
        [event] = validate_batch(raw, 1000)
        assert event["event_datetime"] == expected.isoformat()
        assert [event] == validate_events(orjson.loads(raw)["events"])


@pytest.mark.parametrize(
    ("field", "value", "echoed"),
    [
        ("event_id", "not-a-uuid", 'not "not-a-uuid"'),
        (
            "event_id",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            'not "6ba7b810-9dad-11d1-80b4-00c04fd430c8" (a version 1 UUID)',
        ),
        ("installation_id", 42, "not 42"),
        ("event_datetime", "yesterday\r\nX-Injected: 1", 'not "yesterday??X-Injected: 1"'),
        ("event_name", ["a"], "not an array"),
        ("payload", "card=4111111111111111", "not a string"),
    ],
)
def test_messages_echo_a_short_safe_excerpt_of_the_bad_value(
    field: str, value: Any, echoed: str
) -> None:
    """Event 3 of 5 is index 2 (0-based, like the array); its message says what came."""
    events = [copy.deepcopy(VALID) for _ in range(5)]
    events[2][field] = value
    [problem] = problems(orjson.dumps({"events": events}))
    assert (problem["index"], problem["field"]) == (2, field)
    assert problem["message"].endswith(echoed), problem["message"]
    assert "4111" not in problem["message"]  # a payload's content is never echoed


def test_an_echoed_value_is_bounded_and_printable() -> None:
    events = [{**VALID, "event_id": "\x1b[31m" + "x" * 5000}]
    [problem] = problems(orjson.dumps({"events": events}))
    excerpt = problem["message"].split(", not ", 1)[1]
    assert len(excerpt) <= 42 and excerpt.endswith('…"')
    assert all(ch.isprintable() for ch in problem["message"])


# --- the columnar path (_accept_columns): the commonest batches, a column at a time

COLUMN_TIMES = [
    "2026-05-05T12:00:00Z",
    "2026-05-05T12:00:00.123Z",
    "2026-05-05T12:00:00.000Z",
    "2026-05-05T12:00:00.123456Z",
    "2026-05-05T12:00:00.000000Z",
    "2026-05-05T12:00:00+00:00",
    "2026-05-05T12:00:00.120+00:00",
    "2026-05-05T12:00:00.000001+00:00",
]


def test_the_columnar_path_checks_every_field_of_the_contract() -> None:
    """A field added to the contract must be checked by the columnar path too,
    which otherwise would take it unchecked."""
    assert sorted(COLUMNS) == sorted(FIELDS)


def _uniform_batch(when: str, n: int = 5) -> list[dict[str, Any]]:
    """n valid events in one time shape, ids in mixed case, flat payloads."""
    out = []
    for i in range(n):
        event_id = f"{i:08x}-e29b-41d4-a716-44665544000{i % 10}"
        out.append(
            dict(
                VALID,
                event_name=("Purchase Completed", "sign_up")[i % 2],
                event_datetime=when,
                event_id=event_id.upper() if i % 2 else event_id,
                installation_id=f"{i:08X}-9DAD-11D1-80B4-00C04FD430C8",
                payload={"i": i, "ok": True},
            )
        )
    return out


@pytest.mark.parametrize("when", COLUMN_TIMES)
def test_the_columnar_path_takes_common_batches_and_agrees_with_the_slow_path(
    when: str,
) -> None:
    events = _uniform_batch(when)
    taken = _accept_columns(copy.deepcopy(events))
    assert taken is not None  # the shape this path exists for is taken by it
    expected = validate_events(copy.deepcopy(events))
    assert taken == expected
    assert [e["event_datetime"] for e in taken] == [parse_datetime(when).isoformat()] * 5  # type: ignore[union-attr]
    assert validate_batch(body(*events), 1000) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_datetime", "2026-05-05T12:00:00+02:00"),  # an offset: converted elsewhere
        ("event_datetime", "2026-05-05T12:00:00-00:00"),
        ("event_datetime", "2026-05-05T12:00:00.1Z"),  # another shape than the batch's
        ("event_datetime", "2026-02-30T12:00:00.000Z"),  # no such day
        ("event_datetime", "0000-05-05T12:00:00.000Z"),
        ("event_datetime", "2026-05-05T24:00:00.000Z"),
        ("event_datetime", "2026-05-05t12:00:00.000z"),
        ("event_datetime", "2026-05-05T12:00:00.000Z\n"),
        ("event_id", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"),  # version 1
        ("event_id", "550e8400-e29b-41d4-c716-446655440000"),  # not the RFC variant
        ("event_id", "550e8400e29b41d4a716446655440000"),
        ("event_id", "550e8400-e29b-41d4-a716-44665544000\u0669"),  # a non-ASCII digit
        ("installation_id", "550e8400-e29b-41d4-a716-44665544000g"),
        # The letters the column classes use must not pass for what they stand for.
        ("event_id", "0000000x-0000-4000-8000-00000000000x"),
        ("event_id", "xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx"),
        ("installation_id", "12fea7ea-cfb1-x428-8000-000000000000"),
        ("event_datetime", "dddd-dd-ddTdd:dd:dd.dddZ"),
        ("installation_id", 42),
        ("event_name", ""),
        ("payload", [1]),
        ("extra", 1),
    ],
)
def test_the_columnar_path_leaves_anything_else_to_the_per_event_path(
    field: str, value: Any
) -> None:
    events = _uniform_batch("2026-05-05T12:00:00.123Z")
    events[3][field] = value
    assert _accept_columns(copy.deepcopy(events)) is None


def test_an_id_with_the_letter_x_is_refused_at_its_index() -> None:
    """The columnar path classes hex digits as "x": a literal x is not one."""
    events = _uniform_batch("2026-05-05T12:00:00.123Z")
    events[2]["event_id"] = "0000000x-0000-4000-8000-00000000000x"
    [problem] = problems(body(*events))
    assert (problem["index"], problem["field"]) == (2, "event_id")


def test_values_split_across_lines_cannot_pass_for_a_column() -> None:
    """Two events whose ids, joined, look like two good ids: one holds a line break."""
    events = _uniform_batch("2026-05-05T12:00:00Z", 2)
    events[0]["event_id"] = events[0]["event_id"] + "\n" + events[1]["event_id"]
    events[1]["event_id"] = ""
    assert _accept_columns(copy.deepcopy(events)) is None


time_shapes = st.sampled_from(
    ["{}Z", "{}.{}Z", "{}+00:00", "{}.{}+00:00", "{}-00:00", "{}+01:00", "{} ", "{}.{}"]
)


@st.composite
def near_uniform_batches(draw: st.DrawFn) -> tuple[list[dict[str, Any]], bool]:
    """Batches in one time shape, ids in either case, and perhaps one event bent
    in one field; and whether the columnar path must take the batch."""
    shape = draw(time_shapes)
    digits = draw(st.sampled_from([1, 3, 6]))
    bent = False
    events = draw(batches)
    for event in events:
        moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
        fraction = f"{moment.microsecond:06d}"[:digits]
        seconds = moment.replace(microsecond=0).isoformat()
        event["event_datetime"] = shape.format(seconds, fraction)
        if draw(st.booleans()):
            event["event_id"] = event["event_id"].upper()
        if draw(st.integers(0, 9)) == 0:  # a class letter in place of a hex digit
            field = draw(st.sampled_from(["event_id", "installation_id"]))
            at = draw(st.sampled_from([0, 9, 24, 35]))
            event[field] = event[field][:at] + "x" + event[field][at + 1 :]
            bent = True
        event["payload"] = {
            k: v for k, v in event["payload"].items() if not isinstance(v, dict | list)
        }
    if draw(st.booleans()):
        bent = True
        index = draw(st.integers(0, len(events) - 1))
        field, value = draw(corruptions)
        events[index][field] = value
    # The shapes it takes: Z or +00:00, with no fraction, or of 3 or 6 digits.
    plain = "{}." not in shape[:3] or digits in (3, 6)
    return events, not bent and shape in ("{}Z", "{}.{}Z", "{}+00:00", "{}.{}+00:00") and plain


@given(near_uniform_batches(), st.booleans())
def test_the_columnar_path_agrees_with_the_per_event_path(
    drawn: tuple[list[dict[str, Any]], bool], with_clock: bool
) -> None:
    events, common = drawn
    received = datetime(2026, 5, 5, 12, tzinfo=UTC)
    clock = ClockGuard.for_request(PartnerPolicy(), received) if with_clock else None
    taken = _accept_columns(copy.deepcopy(events), clock)
    if common and clock is None:
        assert taken is not None
    if taken is not None:
        assert taken == _accept_fast(copy.deepcopy(events), clock, flat=True)
        # Both fast paths rely on their caller for NUL, which it screens in the bytes.
        if b"\\u0000" not in body(*events):
            assert taken == validate_events(copy.deepcopy(events), clock=clock)
