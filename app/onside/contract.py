"""What crosses the queue for Onside: one validated event of a batch.

The one place Onside's event fields are declared. The validator
(``app/onside/validate.py``) requires them in this order, the OpenAPI
schema (``app/onside/openapi.py``) lists them, the worker
(``worker/onside.py``) stores them, and ``tests/test_contract.py`` checks
that the ``events`` table and the export row agree with them.

A TypedDict costs nothing at run time: the request path builds plain dicts,
which RQ's JSON serializer writes as they are.
"""

from __future__ import annotations

from typing import Any, TypedDict


class SentOnsideEvent(TypedDict):
    """The fields a partner sends, all required, as the validator normalized them."""

    # Case-insensitive, but queued as sent: the worker stores the normalized
    # name (``event_name``) beside the one sent (``sent_event_name``).
    event_name: str
    payload: dict[str, Any]
    # ISO 8601 in UTC, e.g. ``2026-05-05T12:00:00+00:00``.
    event_datetime: str
    # UUID version 4, lowercased: the idempotency key, per partner.
    event_id: str
    # UUID, lowercased.
    installation_id: str


class QueuedOnsideEvent(SentOnsideEvent, total=False):
    """One event of a queued batch, as the validator made it and the worker reads it.

    The optional fields are there only when they say something.
    """

    # The time as sent (ISO 8601 UTC) when a clock guard clamped
    # ``event_datetime`` to the receive time (app/quality/clock.py). Anything
    # keyed on event time (deduplication) must use this where present: it is
    # what a resend of the same event carries again.
    original_event_datetime: str
    # What the partner's event schemas found wrong in warn mode, or the
    # unknown-events policy's flag: [{"field": "payload.amount", "message": ...}].
    violations: list[dict[str, Any]]


# In declaration order: the order in which a missing field is reported.
FIELDS: tuple[str, ...] = tuple(SentOnsideEvent.__annotations__)
# Added by the server when they apply; a column each, NULL when absent.
OPTIONAL_FIELDS: tuple[str, ...] = ("original_event_datetime", "violations")
