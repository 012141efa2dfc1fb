"""The idempotent insert of Thrad events, enriched on the way in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy.engine import Connection

from app.db import thrad_events
from app.settings import DEFAULT_DEDUP_DAYS
from app.thrad.contract import GEO_FIELDS, STRING_FIELDS, GeoFields, QueuedThradEvent
from worker.dedup import by_period, fresh_keys_sql, key_params, lock_key_periods_sql
from worker.enrich import geo_fields, ua_fields
from worker.sql import Batch, dialect_insert, require_owners_sql


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
    (inserted,) = insert_thrad_batches(
        conn,
        [Batch(partner_id, received_at, events, job_id)],
        geoip_database=geoip_database,
        dedup_days=dedup_days,
    )
    return inserted


def insert_thrad_batches(
    conn: Connection,
    batches: Sequence[Batch],
    *,
    geoip_database: Path | None,
    dedup_days: int = DEFAULT_DEDUP_DAYS,
) -> list[int]:
    """Insert several jobs' events (a worker's take, worker/take.py) in few
    statements; return each job's count of new rows."""
    rows = [
        [
            thrad_row(
                event,
                partner_id=batch.partner_id,
                received_at=batch.received_at,
                job_id=batch.job_id,
                geoip_database=geoip_database,
            )
            for event in batch.events
        ]
        for batch in batches
    ]
    if conn.dialect.name == "postgresql":
        fresh = _fresh_postgresql(conn, batches, rows, dedup_days)
    else:
        fresh = rows
    new_rows = [row for job_rows in fresh for row in job_rows]
    if not new_rows:
        return [0] * len(batches)
    if conn.dialect.name == "postgresql":
        conn.execute(thrad_events.insert(), new_rows)
        return [len(job_rows) for job_rows in fresh]
    stmt = (
        dialect_insert(conn, thrad_events).on_conflict_do_nothing().returning(thrad_events.c.job_id)
    )
    # One statement for all: SQLAlchemy sends the rows as multi-row INSERTs
    # ("insertmanyvalues") and RETURNING names only the new ones. A grouped
    # job holds many requests' events; a statement each was a round trip each.
    # (A row's job is told by its job id: a take is only of jobs that have one.)
    if len(batches) == 1:
        return [len(conn.execute(stmt, new_rows).all())]
    per_job = Counter(job_id for (job_id,) in conn.execute(stmt, new_rows))
    return [per_job[batch.job_id] for batch in batches]


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


# A group's keys, written under their period; the fresh ones are returned
# (worker/dedup.py).
_GIVEN_KEYS = (
    "SELECT * FROM unnest(%(partner_ids)s::integer[], %(keys)s::text[])"
    " AS k (partner_id, dedup_key)"
)
_PG_FRESH = f"""
WITH {fresh_keys_sql("thrad_event_keys", "dedup_key", _GIVEN_KEYS)}
SELECT partner_id, dedup_key FROM fresh
"""


def _fresh_postgresql(
    conn: Connection,
    batches: Sequence[Batch],
    rows: list[list[dict[str, Any]]],
    dedup_days: int,
) -> list[list[dict[str, Any]]]:
    """Each job's rows whose keys were new (the first of any repeats, in job
    order), the keys written in one statement a period."""
    keys = [[dedup_key(row) for row in job_rows] for job_rows in rows]
    fresh: list[list[dict[str, Any]]] = [[] for _ in batches]
    groups = by_period(batches, dedup_days)
    # Every key partition the take touches is locked before its first key,
    # and the partners and API keys its rows name checked (one round trip).
    conn.exec_driver_sql(
        lock_key_periods_sql("thrad_event_keys", groups, dedup_days)
        + ";\n"
        + require_owners_sql(
            (row["partner_id"] for job_rows in rows for row in job_rows),
            (row["api_key_id"] for job_rows in rows for row in job_rows),
        )
    )
    for period, members in groups.items():
        wanted = dict.fromkeys((batches[n].partner_id, key) for n in members for key in keys[n])
        if not wanted:
            continue
        found = conn.exec_driver_sql(
            _PG_FRESH,
            {
                "partner_ids": [partner_id for partner_id, _ in wanted],
                "keys": [key for _, key in wanted],
                **key_params(period, dedup_days),
            },
        )
        new = {(partner_id, key) for partner_id, key in found}
        for n in members:
            partner_id = batches[n].partner_id
            for key, row in zip(keys[n], rows[n], strict=True):
                if (partner_id, key) in new:
                    new.discard((partner_id, key))
                    fresh[n].append(row)
    return fresh
