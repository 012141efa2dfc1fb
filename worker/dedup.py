"""Exact deduplication within a window, on PostgreSQL's partitioned event tables.

The event tables are partitioned by day of receipt, and a unique index must
hold the partition key, so no index can say "this event id was stored on any
day". The keys live in their own tables (``event_keys``, ``thrad_event_keys``)
instead, keyed on (partner, key, period_start), where time is cut into
periods of INLET_DEDUP_DAYS days from 1970-01-01 UTC.

A job received at ``t`` writes each event's key once, under the period of
``t``, ``ON CONFLICT DO NOTHING``, and reads the two adjacent periods' keys:
an event is new, and stored, only if its key was new in its period and is
in neither neighbour. Two receipts less than a window apart fall in the
same or adjacent periods, so one meets the other's key: in the same period
the primary key's unique index makes the second wait for the first and then
conflict; in adjacent periods the table locks that ``lock_key_periods_sql``
takes first (migration 0007: ROW EXCLUSIVE on the partition written, SHARE
on those read) make the second transaction wait for the first to commit,
and its read, a later statement, then sees the first's key. Exact, across
partitions and between concurrent workers, with one random index write an
event (and one read) where writing the key under two periods made two
writes, and no index over more than two periods of keys. Keys older than
the previous period are dropped with their partitions (app/partitions.py).
What happens to a resend after the window is spelled out in docs/storage.md.

The period is taken from the job's ``received_at`` (the web tier's receipt
time), never from the event's own time, which a partner's clock sets: a job
run again computes the same periods and lands nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from app.partitions import DAY, period_starts
from worker.sql import Batch

__all__ = [
    "bench_fill_sql",
    "by_period",
    "fresh_keys_sql",
    "key_params",
    "lock_key_periods_sql",
    "period_starts",
]


def fresh_keys_sql(table: str, key_column: str, source: str) -> str:
    """The CTEs ``new_keys`` and ``fresh`` of a move statement: the keys of
    ``source`` (a query of ``partner_id`` and the key column) written under
    ``%(period)s``, and of those new there, the ones in neither adjacent
    period (``%(before)s``, ``%(after)s``). Run after ``lock_key_periods_sql``'s statement."""
    return f"""
new_keys AS (
  INSERT INTO {table} (partner_id, {key_column}, period_start)
  SELECT partner_id, {key_column}, %(period)s::timestamptz FROM ({source}) AS source
  ON CONFLICT DO NOTHING
  RETURNING partner_id, {key_column}
),
fresh AS (
  SELECT partner_id, {key_column} FROM new_keys AS n
  WHERE NOT EXISTS (
    SELECT FROM {table} AS k
    WHERE k.partner_id = n.partner_id AND k.{key_column} = n.{key_column}
      AND k.period_start IN (%(before)s::timestamptz, %(after)s::timestamptz)
  )
)"""


def key_params(period: datetime, days: int) -> dict[str, datetime]:
    """The periods a move statement of ``fresh_keys_sql`` writes and reads."""
    span = timedelta(days=days)
    return {"period": period, "before": period - span, "after": period + span}


def lock_key_periods_sql(table: str, periods: Iterable[datetime], days: int) -> str:
    """The statement that locks ``table``'s partitions for a transaction that
    writes keys under ``periods`` and reads their neighbours (migration 0007).

    A literal, so that it can travel in one simple-protocol round trip with
    other statements: the table is one of two names, the times are Inlet's.
    """
    written = sorted(set(periods))
    # The very periods the move statement reads (key_params): a lock that
    # missed one would let two adjacent periods' transactions miss each other.
    read = sorted({key_params(p, days)[side] for p in written for side in ("before", "after")})
    return f"SELECT inlet_lock_key_periods('{table}', {_array(written)}, {_array(read)})"


def _array(moments: list[datetime]) -> str:
    return "ARRAY[" + ", ".join(f"'{m.isoformat()}'" for m in moments) + "]::timestamptz[]"


def by_period(batches: Sequence[Batch], days: int) -> dict[datetime, list[int]]:
    """The positions of the batches, grouped by the start of their key period:
    the batches of one group can share one key insert (a worker's take)."""
    groups: dict[datetime, list[int]] = {}
    for n, batch in enumerate(batches):
        groups.setdefault(period_starts(batch.received_at, days)[0], []).append(n)
    return groups


def bench_fill_sql(dedup_days: int) -> str:
    """The scale benchmark's bulk fill on this schema (bench/scale.py): events
    spread over the last ``:days`` days, each with its key under its period
    of ``dedup_days``, as the worker would have written it."""
    span = dedup_days * DAY
    return f"""
WITH e AS (
  INSERT INTO events (partner_id, event_id, event_name, sent_event_name, event_datetime,
                      installation_id, payload, received_at, job_id)
  SELECT :pid, gen_random_uuid(), 'purchase_completed', 'purchase_completed', t,
         gen_random_uuid(), CAST(:payload AS jsonb), t, 'bench-fill'
  FROM (SELECT now() - random() * make_interval(days => :days) AS t
        FROM generate_series(1, :n)) AS s
  RETURNING partner_id, event_id, received_at
)
INSERT INTO event_keys (partner_id, event_id, period_start)
SELECT partner_id, event_id, to_timestamp(floor(extract(epoch FROM received_at) / {span}) * {span})
FROM e
"""
