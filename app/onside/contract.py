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


class QueuedOnsideEvent(TypedDict):
    """One event of a queued batch, as the validator made it and the worker reads it."""

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


# In declaration order: the order in which a missing field is reported.
FIELDS: tuple[str, ...] = tuple(QueuedOnsideEvent.__annotations__)
