"""Thrad's event object: the shape check, and what the server adds before queueing.

Thrad checks types, not values ("no per-event validation feedback beyond the
basic shape check"): only ``event_name`` is required, every other known
field is optional and must have its documented type, and unknown fields are
ignored. A ``null`` counts as the field being absent. The few value checks
here only keep out what could not be stored (U+0000, which PostgreSQL
refuses), so that an accepted event always lands. The fields and their
types are declared in ``app/thrad/contract.py``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

from app.errors import InvalidRequest
from app.quality.clock import ClockGuard
from app.quality.schemas import SchemaCheck
from app.request.jsonchecks import (
    DEPTH_MESSAGE,
    MAX_PAYLOAD_DEPTH,
    NUL_MESSAGE,
    check_containers,
    contains_nul,
    decode_json,
    kind,
    nested_deeper_than,
)
from app.thrad.contract import (
    KEY_FIELDS,
    NUMBER_FIELDS,
    OBJECT_FIELDS,
    STRING_FIELDS,
    QueuedThradEvent,
)

INTEGRATION = "partner_s2s"
# Most schema violations stored with one warned event.
MAX_LISTED_VIOLATIONS = 100
# The dedup key's parts (KEY_FIELDS) are held in a unique index:
# PostgreSQL's btree entries stop at ~2.7 KB, so each is kept to 256
# characters (1 KB of UTF-8 at most) and a longer one is refused, not lost.
MAX_KEY_CHARS = 256
# The longest host name DNS allows; a longer "host" is no host.
MAX_HOST_CHARS = 253
# Most JSON objects and arrays in one event's body, counted from its bytes
# before parsing: the reference event holds 2.
MAX_EVENT_CONTAINERS = 1000


def _problem(field: str | None, message: str) -> dict[str, Any]:
    return {"index": None, "field": field, "message": message}


def validate_event(
    body: bytes, clock: ClockGuard | None = None, schemas: SchemaCheck | None = None
) -> dict[str, Any]:
    """The known fields of the event, type-checked; a 400 naming each bad field.

    With a ``clock``, a ``timestamp`` outside its bounds is accepted, clamped
    (the original kept in ``original_timestamp``) or refused, as the
    partner's policy says. With ``schemas``, the params are checked against
    the event's schema (app/quality/schemas.py): an enforced violation is a
    problem, a warned one goes into ``violations``.
    """
    # Bounded before parsing: with at most this many containers in 64 KiB,
    # checking an event stays well under a millisecond, on the event loop.
    check_containers(body, MAX_EVENT_CONTAINERS)
    document = decode_json(body)
    if not isinstance(document, dict):
        raise InvalidRequest(
            "The body must be one JSON object (an event)",
            errors=[_problem(None, "must be a JSON object")],
        )
    may_hold_nul = b"\\u0000" in body
    problems: list[dict[str, Any]] = []
    event: dict[str, Any] = {}

    name = document.get("event_name")
    if name is None:
        problems.append(_problem("event_name", "is required"))
    elif not isinstance(name, str):
        problems.append(_problem("event_name", f"must be a string, not {kind(name)}"))
    elif not name.strip():
        problems.append(_problem("event_name", "must not be empty"))
    else:
        event["event_name"] = name

    for field in STRING_FIELDS:
        value = document.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(_problem(field, f"must be a string, not {kind(value)}"))
        elif field in KEY_FIELDS and len(value) > MAX_KEY_CHARS:
            problems.append(
                _problem(
                    field, f"must be at most {MAX_KEY_CHARS} characters (it is a deduplication key)"
                )
            )
        elif field in KEY_FIELDS and not value.strip():
            # An empty id is no id: such events are all stored, as without one.
            continue
        else:
            event[field] = value
    for field in NUMBER_FIELDS:
        value = document.get(field)
        if value is None:
            continue
        # bool is an int in Python, not a number in JSON.
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(_problem(field, f"must be a number, not {kind(value)}"))
        elif not math.isfinite(float(value)):
            problems.append(_problem(field, "must be a finite number"))
        else:
            event[field] = value
    for field in OBJECT_FIELDS:
        value = document.get(field)
        if value is None:
            continue
        if not isinstance(value, dict):
            problems.append(_problem(field, f"must be a JSON object, not {kind(value)}"))
        elif nested_deeper_than(value, MAX_PAYLOAD_DEPTH):
            problems.append(_problem(field, DEPTH_MESSAGE))
        else:
            event[field] = value

    timestamp = event.get("timestamp")
    off = clock.off_ts(float(timestamp)) if clock is not None and timestamp is not None else None
    if off is not None and off[0] == "reject":
        problems.append(_problem("timestamp", off[1]))
    elif off is not None and off[0] == "clamp":
        assert clock is not None
        event["original_timestamp"] = timestamp
        event["timestamp"] = clock.received_at.timestamp()

    if may_hold_nul:
        for field, value in event.items():
            if contains_nul(value):
                problems.append(_problem(field, NUL_MESSAGE))
    if schemas is not None and not problems:
        mode, found = schemas.check(event["event_name"], event.get("params") or {}, "params")
        if mode == "enforce":
            problems.extend(_problem(v["field"], v["message"]) for v in found)
        elif found:
            event["violations"] = found[:MAX_LISTED_VIOLATIONS]
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise InvalidRequest(
            f"The event has {len(problems)} {noun}; nothing was accepted", errors=problems
        )
    return event


def host_of(url: str | None) -> str | None:
    """The lowercased host of a URL, or None when there is none to be had."""
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    if not host or len(host) > MAX_HOST_CHARS:
        return None
    return host


def derive_tag_id(event: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """``tag_id`` as sent, else ``site:<host>`` of page_url, Origin, Referer, in turn."""
    if event.get("tag_id"):
        return str(event["tag_id"])
    for source in (event.get("page_url"), headers.get("origin"), headers.get("referer")):
        host = host_of(source)
        if host:
            return f"site:{host}"
    return "site:unknown"


def server_fields(
    event: dict[str, Any],
    *,
    headers: Mapping[str, str],
    ip_address: str | None,
    partner_id: int,
    api_key_id: int,
    key_label: str,
    received_at: datetime,
) -> QueuedThradEvent:
    """The event as queued: what the partner sent plus what the server stamps."""
    params = dict(event.get("params") or {})
    # The stamps are the server's facts and win over a partner's keys of the same names.
    params.update(integration=INTEGRATION, partner_id=partner_id, api_key_label=key_label)
    timestamp = event.get("timestamp")
    # ``event`` holds only sent fields of their declared types (validate_event).
    return cast(
        QueuedThradEvent,
        {
            **event,
            "tag_id": derive_tag_id(event, headers),
            "timestamp": received_at.timestamp() if timestamp is None else timestamp,
            "channel": "server",
            "params": params,
            "ip_address": ip_address,
            "ingest_id": str(uuid.uuid4()),
            "api_key_id": api_key_id,
        },
    )
