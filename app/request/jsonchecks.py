"""Checks on decoded JSON shared by both ingest formats: parsing, U+0000, depth, times.

PostgreSQL's jsonb can't store U+0000 and orjson can't write more than 254
levels of nesting, so an event holding either would be accepted and then
fail in the worker: both formats refuse them at the door instead.

The work a body costs is bounded before it is parsed: parsing and checking
cost per object and array far more than per byte (1 MiB of ``[],[],...``
took 266 ms where a 1,000-event batch takes 7 ms), so the number of
containers is capped, counted at C speed as the ``[`` and ``{`` bytes: an
upper bound (brackets inside strings count too), which a normal body stays
far below.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from app.errors import InvalidRequest, TooManyJsonContainers

# How deep objects and arrays may nest inside a payload. orjson (the job
# serializer) refuses to write more than 254 levels, and the job wraps the
# payload in five more; past that an accepted batch could not be queued.
# 64 is far beyond any real event and well inside every limit downstream.
MAX_PAYLOAD_DEPTH = 64
DEPTH_MESSAGE = f"must not nest objects and arrays more than {MAX_PAYLOAD_DEPTH} levels deep"
NUL_MESSAGE = "must not contain the character \\u0000"


# How much of a refused value an error message echoes.
ECHO_CHARS = 40
_UNPRINTABLE = {c: "?" for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def kind(value: Any) -> str:
    """A JSON value's type, as an error message names it: "a string", "an array"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def echo(value: Any) -> str:
    """A short, safe rendering of a refused value for an error message.

    A string is shown quoted, cut to ``ECHO_CHARS`` characters, its control
    characters (and line separators) as ``?``, so that a log line or a
    terminal showing the message cannot be split or rewritten by it. A number
    or literal is shown as JSON; an object or array only by its kind. Only
    identifiers and dates are echoed (event ids, names, times), never a
    payload, and never a credential (the validator sees none).
    """
    if isinstance(value, str):
        text = value.translate(_UNPRINTABLE)
        if len(text) > ECHO_CHARS:
            text = text[: ECHO_CHARS - 1] + "…"
        return f'"{text}"'
    if value is None or isinstance(value, bool | int | float):
        return orjson.dumps(value).decode()[:ECHO_CHARS]
    return kind(value)


# INLET_MAX_JSON_CONTAINERS's default, for callers that don't pass their own.
DEFAULT_MAX_CONTAINERS = 10_000


def count_containers(body: bytes) -> int:
    """An upper bound on the JSON objects and arrays in ``body``, without parsing it."""
    return body.count(b"{") + body.count(b"[")


def check_containers(body: bytes, limit: int, setting: str | None = None) -> int:
    """``count_containers(body)``, or a 413 naming the cap if it is over ``limit``."""
    count = count_containers(body)
    if count > limit:
        named = f" ({setting})" if setting else ""
        raise TooManyJsonContainers(
            f"The body holds more than {limit:,} JSON objects and arrays{named}: it has "
            f"{count:,} '{{' and '[' characters, counted before parsing, inside strings too"
        )
    return count


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = str(exc)
        if "UTF-8" in problem:
            problem = _utf8_problem(body) or problem
        raise InvalidRequest(
            f"The body is not valid JSON: {problem}",
            errors=[{"index": None, "field": None, "message": f"malformed JSON: {problem}"}],
        ) from None


def _utf8_problem(body: bytes) -> str | None:
    """Where ``body`` stops being UTF-8, or None if it is UTF-8 throughout.

    orjson reports any invalid byte as "str is not valid UTF-8: surrogates
    not allowed" at character 0, wherever it is: a partner looking for it
    needs the offset (of the decompressed body, if it came compressed). The
    byte itself is not named: it may be a payload's.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 at byte offset {exc.start} ({exc.reason})"
    return None


def parse_datetime(value: str) -> datetime | None:
    """ISO 8601 with a time; ``Z`` or an offset; naive means UTC. None if invalid."""
    # RFC 3339 (OpenAPI's date-time) allows a lowercase separator and zone.
    if value[10:11] == "t":
        value = value[:10] + "T" + value[11:]
    if value.endswith("z"):
        value = value[:-1] + "Z"
    if "T" not in value and " " not in value:
        return None  # a date alone is not an event time
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def beyond_utc_years(value: str) -> bool:
    """True for a date-time that parse_datetime refuses only because, in UTC,
    it falls outside the years 0001 to 9999 (``0001-01-01T00:00:00+02:00``):
    valid RFC 3339, but no time Inlet (or Python) can hold."""
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    if parsed.tzinfo is None:
        return False
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        return True
    return False


def contains_nul(value: Any) -> bool:
    """True if any string (or key) inside a decoded JSON value holds U+0000."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def nested_deeper_than(value: Any, limit: int) -> bool:
    """True if objects and arrays inside ``value`` nest more than ``limit`` levels."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
