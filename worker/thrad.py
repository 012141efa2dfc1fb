"""The idempotent insert of Thrad events, enriched on the way in."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from app.db import thrad_event_keys, thrad_events
from app.settings import DEFAULT_DEDUP_DAYS
from app.thrad.contract import GEO_FIELDS, STRING_FIELDS, GeoFields, QueuedThradEvent
from worker.dedup import period_starts
from worker.enrich import geo_fields, ua_fields
from worker.sql import dialect_insert


def thrad_row(
    event: QueuedThradEvent,
    *,
    partner_id: int,
    received_at: datetime,
    job_id: str | None,
    geoip_database: Path | None,
) -> dict[str, Any]:
    """One queued event (see app/thrad/contract.py) -> one row."""
    row: dict[str, Any] = {field: event.get(field) for field in STRING_FIELDS}
    view_time = event.get("view_time_ms")
    row.update(
        partner_id=partner_id,
        api_key_id=event["api_key_id"],
        ingest_id=event["ingest_id"],
        event_name=event["event_name"],
        event_timestamp=float(event["timestamp"]),
        view_time_ms=None if view_time is None else float(view_time),
        consent=event.get("consent"),
        params=event["params"],
        channel=event["channel"],
        ip_address=event.get("ip_address"),
        original_timestamp=_optional_float(event.get("original_timestamp")),
        violations=event.get("violations"),
        received_at=received_at,
        job_id=job_id,
        # Looked up by the web tier when the address was not queued in full
        # (app/privacy.py); else from the queued address.
        **_geo(event, geoip_database),
        **ua_fields(event.get("user_agent")),
    )
    return row


def _geo(event: QueuedThradEvent, geoip_database: Path | None) -> GeoFields:
    looked_up = event.get("geo")
    if looked_up is not None:
        return cast(GeoFields, {field: looked_up.get(field) for field in GEO_FIELDS})
    return geo_fields(event.get("ip_address"), geoip_database)


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def insert_thrad_events(
    conn: Connection,
    *,
    partner_id: int,
    received_at: datetime,
    events: list[QueuedThradEvent],
    job_id: str | None,
    geoip_database: Path | None,
    dedup_days: int = DEFAULT_DEDUP_DAYS,
) -> int:
    """Insert the events; return how many were new.

    Two keys absorb repeats: (partner_id, tag_id, event_id), Thrad's dedup
    key, for events that carry an event_id; and ingest_id, given to each
    accepted request, so a job that runs again after a commit whose
    acknowledgement was lost adds nothing, with or without event_id. On
    SQLite they are unique keys of the table; on PostgreSQL, keys in
    thrad_event_keys within ``dedup_days`` (worker/dedup.py).
    """
    rows = [
        thrad_row(
            event,
            partner_id=partner_id,
            received_at=received_at,
            job_id=job_id,
            geoip_database=geoip_database,
        )
        for event in events
    ]
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        return _insert_postgresql(conn, partner_id, received_at, rows, dedup_days)
    stmt = dialect_insert(conn, thrad_events).on_conflict_do_nothing().returning(thrad_events.c.id)
    # One statement for the whole job: SQLAlchemy sends the rows as multi-row
    # INSERTs ("insertmanyvalues") and RETURNING names only the new ones. A
    # grouped job holds many requests' events; a statement each was a round
    # trip each.
    return len(conn.execute(stmt, rows).all()) if rows else 0


def dedup_key(row: dict[str, Any]) -> str:
    """The row's key in thrad_event_keys (the same text migration 0006 builds in SQL).

    With an event_id: the tag_id's length, a colon, tag_id and event_id, so
    no two (tag_id, event_id) pairs give the same text. Without: "i:" and the
    ingest_id, which can't be mistaken for the other form (it starts with a digit).
    """
    event_id = row["event_id"]
    if event_id is None:
        return f"i:{row['ingest_id']}"
    tag_id = row["tag_id"]
    return f"{len(tag_id)}:{tag_id}{event_id}"


def _insert_postgresql(
    conn: Connection,
    partner_id: int,
    received_at: datetime,
    rows: list[dict[str, Any]],
    dedup_days: int,
) -> int:
    keys = [dedup_key(row) for row in rows]
    periods = period_starts(received_at, dedup_days)
    stmt = (
        postgresql.insert(thrad_event_keys)
        .on_conflict_do_nothing()
        .returning(thrad_event_keys.c.dedup_key)
    )
    key_rows = [
        {"partner_id": partner_id, "dedup_key": key, "period_start": period}
        for key in dict.fromkeys(keys)
        for period in periods
    ]
    written = Counter(key for (key,) in conn.execute(stmt, key_rows))
    # New only if new under both periods; the first of repeats within the job.
    fresh = {key for key, count in written.items() if count == 2}
    new_rows = []
    for key, row in zip(keys, rows, strict=True):
        if key in fresh:
            fresh.discard(key)
            new_rows.append(row)
    if new_rows:
        conn.execute(thrad_events.insert(), new_rows)
    return len(new_rows)
