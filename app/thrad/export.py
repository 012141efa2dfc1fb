"""Thrad rows for ``inlet events export``, in the wire format's field names."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.db import thrad_events as t
from app.thrad.contract import ENRICHED_FIELDS, STRING_FIELDS


def thrad_query(partner_id: int) -> sa.Select[Any]:
    return sa.select(t).where(t.c.partner_id == partner_id).order_by(t.c.received_at, t.c.id)


def _number(value: float | None) -> float | int | None:
    # Stored as double precision; 1748275200 goes back out as sent, not 1748275200.0.
    if value is not None and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def thrad_export_row(row: Any, iso_utc: Callable[[datetime], str]) -> dict[str, Any]:
    out: dict[str, Any] = {"source": "thrad", "event_name": row.event_name}
    out.update((field, getattr(row, field)) for field in STRING_FIELDS)
    out.update(
        timestamp=_number(row.event_timestamp),
        view_time_ms=_number(row.view_time_ms),
        consent=row.consent,
        params=row.params,
    )
    out.update((field, getattr(row, field)) for field in ENRICHED_FIELDS)
    out.update(
        channel=row.channel,
        original_timestamp=_number(row.original_timestamp),
        violations=row.violations,
        received_at=iso_utc(row.received_at),
    )
    return out
