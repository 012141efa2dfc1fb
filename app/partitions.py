"""The partitions of PostgreSQL's event tables: made ahead, expired, pruned.

pg_partman (migration 0006) owns the partition sets: one partition per day
of ``received_at`` for ``events`` and ``thrad_events``, one per day of
``period_start`` for the dedup keys, each with a default partition for
whatever falls outside. Its ``run_maintenance()`` makes the days ahead. It is
called from here rather than by pg_partman's background worker, which needs
``shared_preload_libraries`` and a server restart: something a managed
database or a shared cluster may not allow, while every Inlet worker already
runs a maintenance pass (worker/runner.py). The same pass drops key
partitions that no resend can meet any more, and, with INLET_RETENTION_DAYS,
days of events older than that. Whole partitions are dropped, never rows
deleted. SQLite has no partitions: nothing here applies to it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from app.settings import Settings

log = logging.getLogger("inlet.partitions")

EVENT_TABLES = ("events", "thrad_events")
KEY_TABLES = ("event_keys", "thrad_event_keys")
DAY = 86400


def period_starts(received_at: datetime, days: int) -> tuple[datetime, datetime]:
    """The start of ``received_at``'s dedup period of ``days`` days (periods are
    counted from 1970-01-01 UTC), and the start of the one before (worker/dedup.py)."""
    span = days * DAY
    start = math.floor(received_at.timestamp() / span) * span
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start - span, UTC)


@dataclass(frozen=True)
class Partition:
    table: str  # the partitioned table
    name: str
    start: datetime
    end: datetime  # exclusive
    approximate_rows: int  # PostgreSQL's estimate: counting a day of events is a scan

    def describe(self) -> str:
        what = "received" if self.table in EVENT_TABLES else "keys of periods starting"
        rows = (
            f"about {self.approximate_rows:,} rows"
            if self.approximate_rows >= 0
            else "not yet counted"
        )
        return f"{self.name}  ({self.table}, {what} {self.start:%Y-%m-%d}, {rows})"


def is_partitioned(conn: Connection) -> bool:
    """Whether this database has the partitioned layout (PostgreSQL, migrated)."""
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(
        sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass('public.events')")
    ).scalar()
    return found == "p"


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The table's day partitions, oldest first (its default partition is not one)."""
    rows = conn.execute(
        sa.text(
            "SELECT p.partition_tablename, i.child_start_time, i.child_end_time, c.reltuples"
            " FROM partman.show_partitions(:parent) AS p"
            " CROSS JOIN LATERAL partman.show_partition_info("
            "   p.partition_schemaname || '.' || p.partition_tablename,"
            "   p_parent_table := :parent) AS i"
            " JOIN pg_class AS c"
            "   ON c.oid = to_regclass(p.partition_schemaname || '.' || p.partition_tablename)"
            " ORDER BY i.child_start_time"
        ),
        {"parent": f"public.{table}"},
    ).all()
    return [Partition(table, name, start, end, int(tuples)) for name, start, end, tuples in rows]


def expired(conn: Connection, tables: tuple[str, ...], before: datetime) -> list[Partition]:
    """Partitions of ``tables`` holding only times before ``before``."""
    return [p for table in tables for p in partitions(conn, table) if p.end <= before]


def drop(conn: Connection, doomed: list[Partition]) -> None:
    for partition in doomed:
        # Quoted from the catalog's own name; DROP takes the whole day at once.
        conn.exec_driver_sql(f'DROP TABLE public."{partition.name}"')
        log.info("dropped partition %s", partition.name)


def prune(engine: Engine, before: datetime, *, dry_run: bool = False) -> list[Partition]:
    """Drop every day of events received before ``before`` (whole days only).

    Returns the partitions dropped, or with ``dry_run`` those that would be.
    """
    with engine.begin() as conn:
        if not is_partitioned(conn):
            raise NotPartitioned()
        doomed = expired(conn, EVENT_TABLES, before)
        if not dry_run:
            drop(conn, doomed)
    return doomed


class NotPartitioned(Exception):
    """The database has no partitions (SQLite): nothing can be dropped whole."""


def retention_cutoff(settings: Settings, now: datetime) -> datetime | None:
    """Midnight UTC of the oldest day INLET_RETENTION_DAYS keeps, or None (keep all)."""
    if settings.retention_days is None:
        return None
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=settings.retention_days)


# How long a maintenance pass waits for a table lock before giving up (retried later).
MAINTENANCE_LOCK_TIMEOUT_MS = 2000


def maintain(engine: Engine, settings: Settings, now: datetime | None = None) -> list[Partition]:
    """Make the days ahead, drop keys past the window, apply retention; return what was dropped."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        if not is_partitioned(conn):
            return []
        # Making and dropping partitions takes strong locks on the event
        # tables. Waiting behind a long transaction would queue every insert
        # behind this pass too: give up instead, and let the next pass retry.
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{MAINTENANCE_LOCK_TIMEOUT_MS}ms'"))
        conn.execute(sa.text("SELECT partman.run_maintenance()"))
        # Keys under a period before the previous one: no resend can meet them
        # (worker/dedup.py).
        _, previous = period_starts(now, settings.dedup_days)
        doomed = expired(conn, KEY_TABLES, previous)
        cutoff = retention_cutoff(settings, now)
        if cutoff is not None:
            doomed += expired(conn, EVENT_TABLES, cutoff)
        drop(conn, doomed)
    return doomed
