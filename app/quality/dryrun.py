"""``?dry_run=true``: everything a real request goes through, then nothing queued.

Authentication, the rate limit (a dry run counts like any request), the
body's limits, the shape, the clock guards and the schemas run exactly as
for real; a refusal is the usual 4xx. What passes gets 200 with
``{"valid": true, "events": N, "warnings": [...]}``, where each warning is
what a real request would have stored silently: a warned schema violation,
an unknown event name under ``warn``, a clamped time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.errors import InvalidRequest, json_response

TRUE, FALSE = ("true", "1"), ("false", "0")
# What the 400 says is accepted: exactly TRUE and FALSE, compared lower-cased.
ACCEPTED = "true, false, 1 or 0 (in any case)"


def wants_dry_run(request: Request) -> bool:
    """The ``dry_run`` query parameter: absent or false -> False; true -> True; else 400."""
    if not request.scope.get("query_string"):
        return False  # the common case, without parsing an empty query
    values = request.query_params.getlist("dry_run")
    if not values:
        return False
    if len(values) == 1 and values[0].lower() in TRUE + FALSE:
        return values[0].lower() in TRUE
    raise InvalidRequest(
        f"The dry_run query parameter must be {ACCEPTED}, given once",
        errors=[{"index": None, "field": "dry_run", "message": f"must be {ACCEPTED}, given once"}],
    )


def warnings(
    events: Sequence[Mapping[str, Any]],
    *,
    time_field: str,
    original_field: str,
    indexed: bool = True,
) -> list[dict[str, Any]]:
    """What a real request would store flagged, one entry per flag, by event index
    (None for the single-event endpoint)."""
    found: list[dict[str, Any]] = []
    for position, event in enumerate(events):
        index = position if indexed else None
        if original_field in event:
            found.append(
                {
                    "index": index,
                    "field": time_field,
                    "message": f"is outside the accepted time range: it would be stored as "
                    f"the receive time, the time sent kept in {original_field}",
                }
            )
        for violation in event.get("violations") or ():
            found.append({"index": index, **violation})
    return found


def dry_run_response(count: int, found: list[dict[str, Any]]) -> Response:
    return json_response(200, {"valid": True, "events": count, "warnings": found})
