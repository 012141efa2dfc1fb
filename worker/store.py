"""The idempotent insert: one transaction per batch, ON CONFLICT DO NOTHING."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from app.db import events as events_table
from app.names import normalize_event_name


def _insert(conn: Connection, table: sa.Table) -> Any:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database: {dialect}")


def insert_onside_events(
    conn: Connection,
    *,
    partner_id: int,
    received_at: datetime,
    events: list[dict[str, Any]],
    job_id: str | None,
) -> int:
    """Insert a batch; return how many rows were new (the rest were duplicates).

    Duplicates inside the batch and against earlier batches are both absorbed
    by the unique (partner_id, event_id) key, so running a batch again, whole
    or after a partial earlier attempt, lands each event once.
    """
    rows = [
        {
            "partner_id": partner_id,
            "event_id": event["event_id"],
            "event_name": normalize_event_name(event["event_name"]),
            "sent_event_name": event["event_name"],
            "event_datetime": datetime.fromisoformat(event["event_datetime"]),
            "installation_id": event["installation_id"],
            "payload": event["payload"],
            "received_at": received_at,
            "job_id": job_id,
        }
        for event in events
    ]
    stmt = (
        _insert(conn, events_table)
        .on_conflict_do_nothing(index_elements=["partner_id", "event_id"])
        .returning(events_table.c.event_id)
    )
    return len(conn.execute(stmt, rows).all())
