"""Onside batches: bytes -> validated events, or every problem with its index.

Validation is complete before anything is queued: a batch is accepted whole
or refused whole, and a refusal lists each problem (up to a cap) so that a
partner can fix its batch in one round trip.
"""

from __future__ import annotations

import functools
import operator
import re
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.errors import InvalidRequest, PayloadTooLarge
from app.onside.contract import FIELDS, QueuedOnsideEvent
from app.onside.names import normalize_event_name
from app.quality.clock import ClockGuard
from app.quality.schemas import SchemaCheck
from app.request.jsonchecks import (
    DEFAULT_MAX_CONTAINERS,
    DEPTH_MESSAGE,
    MAX_PAYLOAD_DEPTH,
    NUL_MESSAGE,
    beyond_utc_years,
    check_containers,
    contains_nul,
    decode_json,
    echo,
    kind,
    nested_deeper_than,
    parse_datetime,
)

MAX_LISTED_ERRORS = 100
MAX_EVENT_NAME_CHARS = 256

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_UUID4_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
)

# A body this small, with this few objects and arrays, is validated on the
# event loop (well under a millisecond); a bigger one in a worker thread, so
# that it never holds the loop, and every other client, for long.
INLINE_MAX_BYTES = 64 * 1024
INLINE_MAX_CONTAINERS = 1000


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.count = 0

    def add(self, index: int | None, field: str | None, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_LISTED_ERRORS:
            self.items.append({"index": index, "field": field, "message": message})


async def validate_batch_off_loop(
    body: bytes,
    max_events: int,
    max_containers: int = DEFAULT_MAX_CONTAINERS,
    clock: ClockGuard | None = None,
    schemas: SchemaCheck | None = None,
) -> list[QueuedOnsideEvent]:
    """``validate_batch``, in a worker thread unless the body is small and simple.

    The containers are counted once, here on the loop (C speed), so an
    over-cap body is refused without a thread hop and the count also decides
    where the rest runs.
    """
    containers = check_containers(body, max_containers, "INLET_MAX_JSON_CONTAINERS")
    if len(body) <= INLINE_MAX_BYTES and containers <= INLINE_MAX_CONTAINERS:
        return _validate_counted(body, max_events, containers, clock, schemas)
    return await run_in_threadpool(_validate_counted, body, max_events, containers, clock, schemas)


def validate_batch(
    body: bytes,
    max_events: int,
    max_containers: int = DEFAULT_MAX_CONTAINERS,
    clock: ClockGuard | None = None,
    schemas: SchemaCheck | None = None,
) -> list[QueuedOnsideEvent]:
    """Return the batch's events, ready for the job; raise a 400 or 413 otherwise.

    With a ``clock``, event times outside its bounds are accepted, clamped
    (the original kept in ``original_event_datetime``) or refused, as the
    partner's policy says. With ``schemas``, each payload is checked against
    its event's schema (app/quality/schemas.py) once the batch's shape is right.
    """
    # Before any parsing: the work per body is bounded by its containers.
    containers = check_containers(body, max_containers, "INLET_MAX_JSON_CONTAINERS")
    return _validate_counted(body, max_events, containers, clock, schemas)


def _validate_counted(
    body: bytes,
    max_events: int,
    containers: int,
    clock: ClockGuard | None = None,
    schemas: SchemaCheck | None = None,
) -> list[QueuedOnsideEvent]:
    """``validate_batch`` for a body holding at most ``containers`` objects and arrays."""
    events = _validate_shape(body, max_events, containers, clock)
    if schemas is not None:
        check_schemas(events, schemas)
    return events


def _validate_shape(
    body: bytes, max_events: int, containers: int, clock: ClockGuard | None
) -> list[QueuedOnsideEvent]:
    """``validate_batch`` for a body whose containers were already checked."""
    document = decode_json(body)
    if not isinstance(document, dict) or "events" not in document:
        raise InvalidRequest(
            'The body must be a JSON object with an "events" array',
            errors=[{"index": None, "field": "events", "message": "is required"}],
        )
    raw_events = document["events"]
    if not isinstance(raw_events, list):
        raise InvalidRequest(
            '"events" must be an array',
            errors=[{"index": None, "field": "events", "message": "must be an array"}],
        )
    if not raw_events:
        raise InvalidRequest(
            '"events" must hold at least one event',
            errors=[{"index": None, "field": "events", "message": "must not be empty"}],
        )
    if len(raw_events) > max_events:
        raise PayloadTooLarge(
            f"The batch holds {len(raw_events)} events; the limit is {max_events}"
        )

    # U+0000 can only be in the document as the escape \u0000: if the bytes
    # don't hold that, no string does, and the deep scan is skipped. Most
    # bodies hold no backslash at all, which a one-byte search (memchr)
    # tells fifty times faster than a search for the whole escape.
    may_hold_nul = b"\\" in body and b"\\u0000" in body
    if not may_hold_nul:
        # The batch's object, its array, and an event's object and payload
        # each: nothing else in the body (counted as '{' and '[' bytes, an
        # upper bound), so no payload nests anything to measure.
        flat = containers == 2 + 2 * len(raw_events)
        accepted = _accept_columns(raw_events, clock) if flat else None
        if accepted is None:
            accepted = _accept_fast(raw_events, clock, flat)
        if accepted is not None:
            return accepted
    return validate_events(raw_events, may_hold_nul, clock)


def validate_events(
    raw_events: list[Any], may_hold_nul: bool = True, clock: ClockGuard | None = None
) -> list[QueuedOnsideEvent]:
    """The slow path: check every event and collect every problem with its index."""
    problems = _Problems()
    events: list[QueuedOnsideEvent] = []
    for index, raw in enumerate(raw_events):
        event = _validate_event(index, raw, problems, may_hold_nul, clock)
        if event is not None:
            events.append(event)
    if problems.count:
        listed = len(problems.items)
        more = f" (the first {listed} are listed)" if listed < problems.count else ""
        noun = "problem" if problems.count == 1 else "problems"
        raise InvalidRequest(
            f"The batch has {problems.count} {noun}{more}; nothing was accepted",
            errors=problems.items,
        )
    return events


def check_schemas(events: list[QueuedOnsideEvent], schemas: SchemaCheck) -> None:
    """Check each payload against its event's schema; raise the 400 of an enforced
    violation (all of them, by index and JSON path), else flag the warned ones
    (``violations``, stored with the event)."""
    problems = _Problems()
    items = [(event["event_name"], event["payload"]) for event in events]
    for index, mode, found in schemas.check_many(items, "payload"):
        event = events[index]
        if mode == "enforce":
            for violation in found:
                problems.add(index, violation["field"], violation["message"])
        else:
            event["violations"] = found[:MAX_LISTED_ERRORS]
    if problems.count:
        listed = len(problems.items)
        more = f" (the first {listed} are listed)" if listed < problems.count else ""
        noun = "violation" if problems.count == 1 else "violations"
        raise InvalidRequest(
            f"The batch has {problems.count} schema {noun}{more}; nothing was accepted",
            errors=problems.items,
        )


@functools.lru_cache(maxsize=4096)
def _is_valid_name(name: str) -> bool:
    # Batches repeat a handful of names: check each once, as the slow path would.
    return (
        "\x00" not in name
        and len(name) <= MAX_EVENT_NAME_CHARS
        and bool(normalize_event_name(name))
    )


# The columns of a batch as one ASCII string each, one value a line, their
# characters classed by ``bytes.translate``: each check below is one C loop
# over a column, not a thousand calls (``_accept_columns``).
# A class's own letter becomes "!", so that a literal "x" or "d" is not
# taken for a hex digit or a digit.
_HEX_CLASS = bytes.maketrans(b"0123456789abcdefABCDEFx", b"x" * 22 + b"!")
_DIGIT_CLASS = bytes.maketrans(b"0123456789d", b"d" * 10 + b"!")
_UUID_SHAPE = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_UUID4_VARIANTS = b"89abAB"
# The UTC shapes partners' serializers write (JavaScript's toISOString is
# the second), and what turns one into its stored form: the suffix to
# replace, and the zeros that pad its fraction to microseconds.
_TIME_SHAPES = {
    b"dddd-dd-ddTdd:dd:ddZ": ("Z", ""),
    b"dddd-dd-ddTdd:dd:dd.dddZ": ("Z", "000"),
    b"dddd-dd-ddTdd:dd:dd.ddddddZ": ("Z", ""),
    b"dddd-dd-ddTdd:dd:dd+dd:dd": ("+00:00", ""),
    b"dddd-dd-ddTdd:dd:dd.ddd+dd:dd": ("+00:00", "000"),
    b"dddd-dd-ddTdd:dd:dd.dddddd+dd:dd": ("+00:00", ""),
}
_UTC = "+00:00"
_TZINFO = operator.attrgetter("tzinfo")
# The contract's fields (FIELDS), in the order _accept_columns unpacks them.
COLUMNS = ("event_name", "payload", "event_datetime", "event_id", "installation_id")
_FIELD_GETTERS = tuple(operator.itemgetter(field) for field in COLUMNS)


def _column(values: list[Any]) -> bytes | None:
    """The values, one a line, as ASCII bytes; None if one is not a str or holds
    a character that no field checked here may hold (so none holds a line break)."""
    try:
        return "\n".join(values).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return None


def _is_uuid_column(column: bytes, count: int) -> bool:
    return column.translate(_HEX_CLASS) == b"\n".join([_UUID_SHAPE] * count)


def _accept_columns(
    raw_events: list[Any], clock: ClockGuard | None = None
) -> list[QueuedOnsideEvent] | None:
    """``_accept_fast``'s output for the commonest batch, a column at a time; None
    whenever the batch is anything else, and ``_accept_fast`` decides.

    The batch it takes: every event a dict of exactly the contract's fields,
    of their types, payloads flat (the caller knows), ids in any case, and
    every time in one of ``_TIME_SHAPES``, the same for the whole batch,
    inside the clock's bounds. Per event, ``_accept_fast`` spends ~3 µs in
    the interpreter; here each check is one call over a whole column (a
    ``map`` of a C function, or one pass of ``bytes.translate`` over the
    column joined into one string), so a batch costs a fraction of that.
    tests/test_batch.py checks that the two agree.
    """
    count = len(raw_events)
    if set(map(type, raw_events)) != {dict} or set(map(len, raw_events)) != {len(FIELDS)}:
        return None
    try:
        names, payloads, whens, event_ids, installation_ids = (
            list(map(get, raw_events)) for get in _FIELD_GETTERS
        )
    except KeyError:
        return None
    if set(map(type, payloads)) != {dict} or set(map(type, names)) != {str}:
        return None
    if not all(map(_is_valid_name, set(names))):
        return None
    ids = _column(event_ids)
    installations = _column(installation_ids)
    times = _column(whens)
    if ids is None or installations is None or times is None:
        return None
    if not (_is_uuid_column(ids, count) and _is_uuid_column(installations, count)):
        return None
    # Version 4: the 15th character of each id, and the variant the 20th.
    if ids[14::37] != b"4" * count or ids[19::37].translate(None, _UUID4_VARIANTS):
        return None
    shape = times.partition(b"\n")[0].translate(_DIGIT_CLASS)  # the first time's
    if shape not in _TIME_SHAPES or times.translate(_DIGIT_CLASS) != b"\n".join([shape] * count):
        return None
    if b"T24" in times:
        return None  # hour 24, which some Pythons' fromisoformat reads as the next day
    suffix, padding = _TIME_SHAPES[shape]
    try:
        # The calendar's and the clock's ranges; the offset must be zero.
        moments = list(map(datetime.fromisoformat, whens))
    except ValueError:
        return None
    if set(map(_TZINFO, moments)) != {UTC}:
        return None
    if clock is not None and (
        (clock.latest is not None and max(moments) > clock.latest)
        or (clock.earliest is not None and min(moments) < clock.earliest)
    ):
        return None  # _accept_fast clamps or refuses what the clock says
    # isoformat's form: the fraction in microseconds, none when it is zero.
    utc = times.decode().replace(suffix, padding + _UTC).replace(".000000+", "+").split("\n")
    for event, value in zip(raw_events, utc, strict=True):
        event["event_datetime"] = value
    for field, column in (("event_id", ids), ("installation_id", installations)):
        lowered = column.lower()
        if lowered != column:
            for event, value in zip(raw_events, lowered.decode().split("\n"), strict=True):
                event[field] = value
    # Checked above: the contract's fields, of their types.
    return raw_events


def _accept_fast(
    raw_events: list[Any], clock: ClockGuard | None = None, flat: bool = False
) -> list[QueuedOnsideEvent] | None:
    """The events of a batch where every event is valid; None at the first doubt.

    The common case, tight: the same checks as ``_validate_event`` and the
    same output, without collecting problems. Whenever an event fails a
    check (or the body may hold a NUL, which the caller rules out), the
    batch goes through the slow path, which lists every problem. ``flat``:
    the caller knows that no payload holds an object or array.
    """
    out: list[QueuedOnsideEvent] = []
    append = out.append
    uuid4_match = _UUID4_RE.fullmatch
    uuid_match = _UUID_RE.fullmatch
    fromisoformat = datetime.fromisoformat
    field_count = len(FIELDS)
    # The clock's bounds, as locals: two comparisons per event.
    latest = clock.latest if clock else None
    earliest = clock.earliest if clock else None
    for raw in raw_events:
        if type(raw) is not dict:
            return None
        try:
            name = raw["event_name"]
            payload = raw["payload"]
            when = raw["event_datetime"]
            event_id = raw["event_id"]
            installation_id = raw["installation_id"]
        except KeyError:
            return None
        if (
            type(name) is not str
            or type(payload) is not dict
            or type(when) is not str
            or type(event_id) is not str
            or type(installation_id) is not str
            or not uuid4_match(event_id)
            or not uuid_match(installation_id)
            or not _is_valid_name(name)
            or ("T" not in when and " " not in when)
        ):
            return None
        if not flat:
            for value in payload.values():
                # A nested payload is measured against the slow path's depth limit.
                if type(value) is dict or type(value) is list:
                    if nested_deeper_than(payload, MAX_PAYLOAD_DEPTH):
                        return None
                    break
        try:
            moment = fromisoformat(when)
        except ValueError:
            return None
        if (
            moment.tzinfo is UTC
            and len(when) >= 20
            and when[10] == "T"
            and when[4] == when[7] == "-"
            and when[13] == when[16] == ":"
            and when[11:13] != "24"
        ):
            # Already UTC and written YYYY-MM-DDTHH:MM:SS: the date and time
            # are those very characters, and only the fraction needs
            # formatting. The same string as parse_datetime(when).isoformat()
            # (tests/test_batch.py checks the two paths agree), at a third
            # of the cost: isoformat was most of the time spent per event.
            micro = moment.microsecond
            utc = f"{when[:19]}.{micro:06d}+00:00" if micro else when[:19] + "+00:00"
        else:
            parsed = parse_datetime(when)
            if parsed is None:
                return None
            moment = parsed
            utc = parsed.isoformat()
        original = None
        if clock is not None and (
            (latest is not None and moment > latest) or (earliest is not None and moment < earliest)
        ):
            off = clock.off(moment)
            if off is not None and off[0] == "reject":
                return None  # the slow path lists it
            if off is not None and off[0] == "clamp":
                original, utc = utc, clock.received_iso
        if len(raw) == field_count and original is None:
            # Exactly the contract's fields: normalize the decoded event in place
            # rather than copy it (the document is ours, decoded for this
            # call). Should a later event send the batch to the slow path,
            # this one is still valid there, normalized to the same values.
            raw["event_id"] = event_id.lower()
            raw["installation_id"] = installation_id.lower()
            raw["event_datetime"] = utc
            # Checked above: the contract's fields, of their types. (No
            # cast: a call per event, on the hottest loop of the request.)
            append(raw)  # type: ignore[arg-type]
        else:
            # A new dict, the sent event left as it was: should a later event
            # send the batch to the slow path, a clamped one is clamped again.
            event: QueuedOnsideEvent = {
                "event_id": event_id.lower(),
                "installation_id": installation_id.lower(),
                "event_name": name,
                "event_datetime": utc,
                "payload": payload,
            }
            if original is not None:
                event["original_event_datetime"] = original
            append(event)
    return out


def _uuid_version_note(value: Any) -> str:
    """ " (a version 1 UUID)" for a UUID of another version: it reads like a good one."""
    if isinstance(value, str) and _UUID_RE.fullmatch(value):
        return f" (a version {value[14]} UUID)"
    return ""


def _validate_event(
    index: int, raw: Any, problems: _Problems, may_hold_nul: bool, clock: ClockGuard | None
) -> QueuedOnsideEvent | None:
    if not isinstance(raw, dict):
        problems.add(index, None, f"must be a JSON object, not {kind(raw)}")
        return None
    before = problems.count
    for field in FIELDS:
        if field not in raw or raw[field] is None:
            problems.add(index, field, "is required")

    name = raw.get("event_name")
    if name is not None:
        if not isinstance(name, str):
            problems.add(index, "event_name", f"must be a string, not {echo(name)}")
        elif "\x00" in name:
            problems.add(index, "event_name", NUL_MESSAGE)
        elif len(name) > MAX_EVENT_NAME_CHARS:
            problems.add(index, "event_name", f"must be at most {MAX_EVENT_NAME_CHARS} characters")
        elif not normalize_event_name(name):
            problems.add(index, "event_name", "must not be empty")

    payload = raw.get("payload")
    if payload is not None:
        if not isinstance(payload, dict):
            # Only the kind: a payload's content is never echoed.
            problems.add(index, "payload", f"must be a JSON object, not {kind(payload)}")
        elif may_hold_nul and contains_nul(payload):
            problems.add(index, "payload", NUL_MESSAGE)
        elif nested_deeper_than(payload, MAX_PAYLOAD_DEPTH):
            problems.add(index, "payload", DEPTH_MESSAGE)

    when = raw.get("event_datetime")
    parsed_when = None
    if when is not None:
        parsed_when = parse_datetime(when) if isinstance(when, str) else None
        if parsed_when is None and isinstance(when, str) and beyond_utc_years(when):
            problems.add(
                index,
                "event_datetime",
                f"must fall between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC,"
                f" not {echo(when)}",
            )
        elif parsed_when is None:
            problems.add(
                index,
                "event_datetime",
                f"must be an ISO 8601 date and time, e.g. 2026-05-05T12:00:00Z, not {echo(when)}",
            )
    original = None
    off = clock.off(parsed_when) if clock is not None and parsed_when is not None else None
    if off is not None and off[0] == "reject":
        problems.add(index, "event_datetime", off[1])
    elif off is not None and off[0] == "clamp":
        assert clock is not None and parsed_when is not None
        original, parsed_when = parsed_when.isoformat(), clock.received_at

    event_id = raw.get("event_id")
    if event_id is not None and not (isinstance(event_id, str) and _UUID4_RE.fullmatch(event_id)):
        problems.add(
            index,
            "event_id",
            "must be a UUID version 4, e.g. 550e8400-e29b-41d4-a716-446655440000, "
            f"not {echo(event_id)}{_uuid_version_note(event_id)}",
        )

    installation_id = raw.get("installation_id")
    if installation_id is not None and not (
        isinstance(installation_id, str) and _UUID_RE.fullmatch(installation_id)
    ):
        problems.add(
            index,
            "installation_id",
            "must be a UUID, e.g. 550e8400-e29b-41d4-a716-446655440000, "
            f"not {echo(installation_id)}",
        )

    if problems.count != before:
        return None
    # No problem: every field is present and of its type.
    assert isinstance(name, str) and isinstance(payload, dict) and parsed_when is not None
    assert isinstance(event_id, str) and isinstance(installation_id, str)
    event: QueuedOnsideEvent = {
        "event_id": event_id.lower(),
        "installation_id": installation_id.lower(),
        "event_name": name,
        "event_datetime": parsed_when.isoformat(),
        "payload": payload,
    }
    if original is not None:
        event["original_event_datetime"] = original
    return event
