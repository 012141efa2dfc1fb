"""The idempotent insert: one transaction per batch, ON CONFLICT DO NOTHING.

On PostgreSQL a batch is ``COPY``-ed into a temporary staging table, then
moved with one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: COPY is the
cheapest way to hand PostgreSQL a thousand rows, and COPY alone has no ON
CONFLICT. The staging table belongs to the session and empties itself at
every commit or rollback, so nothing of one batch can leak into the next.
SQLite keeps SQLAlchemy's portable multi-row insert.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

import orjson
import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from app.db import events as events_table
from app.onside.contract import QueuedOnsideEvent
from app.onside.names import normalize_event_name
from app.settings import DEFAULT_DEDUP_DAYS
from worker.dedup import ONSIDE_KEYS, period_starts

# A batch repeats a handful of event names; normalizing each once is enough.
_normalized_name = functools.lru_cache(maxsize=4096)(normalize_event_name)

# Made once per database session; IF NOT EXISTS makes it safe to run in every
# job (a rolled-back job takes a table it created with it). The NOTICE that
# an existing table causes is silenced for this transaction only.
_PG_STAGING = """
SET LOCAL client_min_messages TO warning;
CREATE TEMPORARY TABLE IF NOT EXISTS inlet_staging (
    event_id uuid NOT NULL,
    event_name text NOT NULL,
    sent_event_name text NOT NULL,
    event_datetime timestamptz NOT NULL,
    installation_id uuid NOT NULL,
    payload jsonb NOT NULL,
    original_event_datetime timestamptz,
    violations jsonb
) ON COMMIT DELETE ROWS
"""
_PG_COPY = (
    "COPY inlet_staging (event_id, event_name, sent_event_name, event_datetime,"
    " installation_id, payload, original_event_datetime, violations) FROM STDIN"
)
# The events whose two dedup keys were both new (worker/dedup.py) are stored,
# the first of any repeats within the batch (ctid: the COPY's order, in a
# table emptied at every commit).
_PG_MOVE = f"""
WITH new_keys AS ({ONSIDE_KEYS}),
fresh AS (SELECT event_id FROM new_keys GROUP BY event_id HAVING count(*) = 2)
INSERT INTO events (partner_id, event_id, event_name, sent_event_name, event_datetime,
                    installation_id, payload, original_event_datetime, violations,
                    received_at, job_id)
SELECT DISTINCT ON (s.event_id)
       %(partner_id)s, s.event_id, s.event_name, s.sent_event_name, s.event_datetime,
       s.installation_id, s.payload, s.original_event_datetime, s.violations,
       %(received_at)s, %(job_id)s
FROM inlet_staging AS s JOIN fresh USING (event_id)
ORDER BY s.event_id, s.ctid
"""


def insert_onside_events(
    conn: Connection,
    *,
    partner_id: int,
    received_at: datetime,
    events: list[QueuedOnsideEvent],
    job_id: str | None,
    dedup_days: int = DEFAULT_DEDUP_DAYS,
) -> int:
    """Insert a batch; return how many rows were new (the rest were duplicates).

    Duplicates inside the batch and against earlier batches are both absorbed
    by the (partner_id, event_id) key (on PostgreSQL within ``dedup_days``,
    see worker/dedup.py), so running a batch again, whole or after a partial
    earlier attempt, lands each event once.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return _insert_postgresql(conn, partner_id, received_at, events, job_id, dedup_days)
    if dialect == "sqlite":
        return _insert_sqlite(conn, partner_id, received_at, events, job_id)
    raise RuntimeError(f"unsupported database: {dialect}")


def _insert_postgresql(
    conn: Connection,
    partner_id: int,
    received_at: datetime,
    events: list[QueuedOnsideEvent],
    job_id: str | None,
    dedup_days: int,
) -> int:
    conn.exec_driver_sql(_PG_STAGING)
    _copy_to_staging(conn, events)
    period, previous = period_starts(received_at, dedup_days)
    result = conn.exec_driver_sql(
        _PG_MOVE,
        {
            "partner_id": partner_id,
            "received_at": received_at,
            "job_id": job_id,
            "period": period,
            "previous": previous,
        },
    )
    return int(result.rowcount)


def _copy_to_staging(conn: Connection, events: list[QueuedOnsideEvent]) -> None:
    """COPY the batch through the transaction's own psycopg connection.

    SQLAlchemy has no COPY, so its error translation is done here: a lost
    connection must still surface as a (transient) OperationalError that
    invalidates the pooled connection, as it would from ``execute``.
    """
    dbapi_conn = conn.connection.dbapi_connection
    cursor = dbapi_conn.cursor()  # type: ignore[union-attr]
    try:
        # The validated events are already normalized (lowercase UUIDs, UTC
        # ISO datetimes, which PostgreSQL parses as it reads the COPY); only
        # the event name and the payload's JSON text are derived here.
        with cursor.copy(_PG_COPY) as copy:
            write = copy.write_row
            for event in events:
                name = event["event_name"]
                violations = event.get("violations")
                write(
                    (
                        event["event_id"],
                        _normalized_name(name),
                        name,
                        event["event_datetime"],
                        event["installation_id"],
                        orjson.dumps(event["payload"]).decode(),
                        event.get("original_event_datetime"),
                        None if violations is None else orjson.dumps(violations).decode(),
                    )
                )
    except psycopg.Error as exc:
        # SQLAlchemy types the DB-API error as a protocol of its own; psycopg's is one.
        disconnected = conn.dialect.is_disconnect(cast(Any, exc), dbapi_conn, cursor)
        if disconnected:
            conn.invalidate(exc)
        raise sa_exc.DBAPIError.instance(
            _PG_COPY,
            None,
            exc,
            psycopg.Error,
            connection_invalidated=disconnected,
            dialect=conn.dialect,
        ) from exc
    finally:
        cursor.close()


def _insert_sqlite(
    conn: Connection,
    partner_id: int,
    received_at: datetime,
    events: list[QueuedOnsideEvent],
    job_id: str | None,
) -> int:
    rows = [
        {
            "partner_id": partner_id,
            "event_id": event["event_id"],
            "event_name": _normalized_name(event["event_name"]),
            "sent_event_name": event["event_name"],
            "event_datetime": datetime.fromisoformat(event["event_datetime"]),
            "installation_id": event["installation_id"],
            "payload": event["payload"],
            "original_event_datetime": _optional_datetime(event.get("original_event_datetime")),
            "violations": event.get("violations"),
            "received_at": received_at,
            "job_id": job_id,
        }
        for event in events
    ]
    stmt = (
        sqlite.insert(events_table)
        .on_conflict_do_nothing(index_elements=["partner_id", "event_id"])
        .returning(events_table.c.event_id)
    )
    return len(conn.execute(stmt, rows).all())


def _optional_datetime(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
