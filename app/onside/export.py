"""Onside rows for ``inlet events export``, in the wire format's field names."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.db import events as t
from app.onside.contract import FIELDS, OPTIONAL_FIELDS


def onside_query(partner_id: int) -> sa.Select[Any]:
    # The contract's fields, the name as sent beside the normalized one, and
    # what the export orders and merges by.
    return (
        sa.select(
            *(t.c[field] for field in (*FIELDS, *OPTIONAL_FIELDS)),
            t.c.sent_event_name,
            t.c.received_at,
            t.c.id,
        )
        .where(t.c.partner_id == partner_id)
        .order_by(t.c.received_at, t.c.id)
    )


def onside_export_row(row: Any, iso_utc: Callable[[datetime], str]) -> dict[str, Any]:
    return {
        "source": "onside",
        "event_id": str(row.event_id),
        "event_name": row.event_name,
        "sent_event_name": row.sent_event_name,
        "event_datetime": iso_utc(row.event_datetime),
        "installation_id": str(row.installation_id),
        "payload": row.payload,
        # Null unless a clock guard clamped event_datetime, or a schema warned.
        "original_event_datetime": (
            iso_utc(row.original_event_datetime) if row.original_event_datetime else None
        ),
        "violations": row.violations,
        "received_at": iso_utc(row.received_at),
    }
