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
from collections import Counter
from collections.abc import Sequence
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
from worker.dedup import (
    by_period,
    fresh_keys_sql,
    key_params,
    lock_key_periods_sql,
    period_starts,
)
from worker.sql import Batch, require_owners_sql

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
    violations jsonb,
    batch integer NOT NULL DEFAULT 1
) ON COMMIT DELETE ROWS
"""
_STAGED = (
    "event_id, event_name, sent_event_name, event_datetime,"
    " installation_id, payload, original_event_datetime, violations"
)
_PG_COPY = f"COPY inlet_staging ({_STAGED}) FROM STDIN"
# A take's COPY (several jobs): each row also says which of its jobs it belongs to.
_PG_COPY_MANY = f"COPY inlet_staging ({_STAGED}, batch) FROM STDIN"
# The events whose key was new in its period and is in neither adjacent one
# (worker/dedup.py) are stored, the first of any repeats within the batch
# (ctid: the COPY's order, in a table emptied at every commit).
_STAGED_KEYS = "SELECT %(partner_id)s::integer AS partner_id, event_id FROM inlet_staging"
_PG_MOVE = f"""
WITH {fresh_keys_sql("event_keys", "event_id", _STAGED_KEYS)}
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

# The same for a take's jobs (worker/take.py), all received within one dedup
# period: each staged row takes its job's partner, receive time and id from
# the arrays (``batch`` is the 1-based position in them); an event is new
# under its own partner, and a repeat across the take's jobs lands once,
# under the first job that holds it.
_PG_MOVE_MANY = f"""
WITH jobs AS (
  SELECT *
  FROM unnest(%(partner_ids)s::integer[], %(received)s::timestamptz[], %(job_ids)s::text[])
       WITH ORDINALITY AS j (partner_id, received_at, job_id, batch)
),
staged AS (
  SELECT j.partner_id, j.received_at, j.job_id, s.batch, s.ctid AS position, s.event_id,
         s.event_name, s.sent_event_name, s.event_datetime, s.installation_id, s.payload,
         s.original_event_datetime, s.violations
  FROM inlet_staging AS s JOIN jobs AS j USING (batch)
),
{fresh_keys_sql("event_keys", "event_id", "SELECT partner_id, event_id FROM staged")}
INSERT INTO events (partner_id, event_id, event_name, sent_event_name, event_datetime,
                    installation_id, payload, original_event_datetime, violations,
                    received_at, job_id)
SELECT DISTINCT ON (s.partner_id, s.event_id)
       s.partner_id, s.event_id, s.event_name, s.sent_event_name, s.event_datetime,
       s.installation_id, s.payload, s.original_event_datetime, s.violations,
       s.received_at, s.job_id
FROM staged AS s JOIN fresh USING (partner_id, event_id)
ORDER BY s.partner_id, s.event_id, s.batch, s.position
RETURNING job_id
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


def insert_onside_batches(
    conn: Connection, batches: Sequence[Batch], *, dedup_days: int = DEFAULT_DEDUP_DAYS
) -> list[int]:
    """Insert several jobs' batches in the caller's transaction (a worker's
    take, worker/take.py); return each one's count of new rows.

    On PostgreSQL the jobs received in one dedup period share one COPY and
    one move (a take's jobs were received seconds apart: one group, but for
    a take across a period's boundary).
    """
    if conn.dialect.name == "sqlite":
        return [
            _insert_sqlite(conn, b.partner_id, b.received_at, b.events, b.job_id) for b in batches
        ]
    if conn.dialect.name != "postgresql":
        raise RuntimeError(f"unsupported database: {conn.dialect.name}")
    counts = [0] * len(batches)
    groups = by_period(batches, dedup_days)
    # Every key partition the take touches is locked before its first key,
    # and its partners checked (one round trip).
    conn.exec_driver_sql(
        lock_key_periods_sql("event_keys", groups, dedup_days)
        + ";\n"
        + require_owners_sql(b.partner_id for b in batches)
    )
    for group, (period, members) in enumerate(groups.items()):
        if group:
            # The staging table empties only at the commit.
            conn.exec_driver_sql("DELETE FROM inlet_staging")
        if len(members) == 1:
            b = batches[members[0]]
            counts[members[0]] = _insert_postgresql(
                conn, b.partner_id, b.received_at, b.events, b.job_id, dedup_days, locked=True
            )
            continue
        conn.exec_driver_sql(_PG_STAGING)
        _copy_to_staging(conn, [batches[n].events for n in members], numbered=True)
        moved = conn.exec_driver_sql(
            _PG_MOVE_MANY,
            {
                "partner_ids": [batches[n].partner_id for n in members],
                "received": [batches[n].received_at for n in members],
                "job_ids": [batches[n].job_id for n in members],
                **key_params(period, dedup_days),
            },
        )
        per_job = Counter(job_id for (job_id,) in moved)
        for n in members:
            counts[n] = per_job[batches[n].job_id]
    return counts


def _insert_postgresql(
    conn: Connection,
    partner_id: int,
    received_at: datetime,
    events: list[QueuedOnsideEvent],
    job_id: str | None,
    dedup_days: int,
    *,
    locked: bool = False,
) -> int:
    """One batch's COPY and move (``locked``: its key partitions already are
    locked and its partner checked, by the caller's take)."""
    period, _ = period_starts(received_at, dedup_days)
    prelude = _PG_STAGING
    if not locked:
        # In the staging statements' round trip.
        prelude += (
            ";\n"
            + lock_key_periods_sql("event_keys", [period], dedup_days)
            + ";\n"
            + require_owners_sql([partner_id])
        )
    conn.exec_driver_sql(prelude)
    _copy_to_staging(conn, [events])
    result = conn.exec_driver_sql(
        _PG_MOVE,
        {
            "partner_id": partner_id,
            "received_at": received_at,
            "job_id": job_id,
            **key_params(period, dedup_days),
        },
    )
    return int(result.rowcount)


def _copy_to_staging(
    conn: Connection, batches: Sequence[list[QueuedOnsideEvent]], *, numbered: bool = False
) -> None:
    """COPY the batches through the transaction's own psycopg connection
    (``numbered``: each row with its batch's 1-based position, for a take).

    SQLAlchemy has no COPY, so its error translation is done here: a lost
    connection must still surface as a (transient) OperationalError that
    invalidates the pooled connection, as it would from ``execute``.
    """
    dbapi_conn = conn.connection.dbapi_connection
    cursor = dbapi_conn.cursor()  # type: ignore[union-attr]
    statement = _PG_COPY_MANY if numbered else _PG_COPY
    try:
        # The validated events are already normalized (lowercase UUIDs, UTC
        # ISO datetimes, which PostgreSQL parses as it reads the COPY); only
        # the event name and the payload's JSON text are derived here.
        with cursor.copy(statement) as copy:
            write = copy.write_row
            for position, events in enumerate(batches, start=1):
                extra = (position,) if numbered else ()
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
                            *extra,
                        )
                    )
    except psycopg.Error as exc:
        # SQLAlchemy types the DB-API error as a protocol of its own; psycopg's is one.
        disconnected = conn.dialect.is_disconnect(cast(Any, exc), dbapi_conn, cursor)
        if disconnected:
            conn.invalidate(exc)
        raise sa_exc.DBAPIError.instance(
            statement,
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
