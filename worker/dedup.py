"""Exact deduplication within a window, on PostgreSQL's partitioned event tables.

The event tables are partitioned by day of receipt, and a unique index must
hold the partition key, so no index can say "this event id was stored on any
day". The keys live in their own tables (``event_keys``, ``thrad_event_keys``)
instead, keyed on (partner, key, period_start), where time is cut into
periods of INLET_DEDUP_DAYS days from 1970-01-01 UTC.

A job received at ``t`` writes each event's key twice, under the period of
``t`` and under the period before, ``ON CONFLICT DO NOTHING``; an event is
new, and stored, only if both keys were new. Two receipts less than a
window apart fall in the same or adjacent periods, so their key sets share a
period, and the primary key's unique index makes the second wait for the
first and then conflict: exact, across partitions and between concurrent
workers, with no lock of Inlet's own and no index over more than two
periods of keys. Keys older than the previous period are dropped with their
partitions (app/partitions.py). What happens to a resend after the window
is spelled out in docs/storage.md.

The period is taken from the job's ``received_at`` (the web tier's receipt
time), never from the event's own time, which a partner's clock sets: a job
run again computes the same periods and lands nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from app.partitions import DAY, period_starts
from worker.sql import Batch

__all__ = ["ONSIDE_KEYS", "bench_fill_sql", "by_period", "period_starts"]


# Both formats' insert uses these: keys are written first; the rows whose two
# keys were both new are then stored, the first of any repeats in one job.
ONSIDE_KEYS = """
INSERT INTO event_keys (partner_id, event_id, period_start)
SELECT %(partner_id)s, event_id, p
FROM inlet_staging
CROSS JOIN (VALUES (%(period)s::timestamptz), (%(previous)s::timestamptz)) AS k (p)
ON CONFLICT DO NOTHING
RETURNING event_id
"""


def by_period(batches: Sequence[Batch], days: int) -> dict[tuple[datetime, datetime], list[int]]:
    """The positions of the batches, grouped by their two key periods: the
    batches of one group can share one key insert (a worker's take)."""
    groups: dict[tuple[datetime, datetime], list[int]] = {}
    for n, batch in enumerate(batches):
        groups.setdefault(period_starts(batch.received_at, days), []).append(n)
    return groups


def bench_fill_sql() -> str:
    """The scale benchmark's bulk fill on this schema (bench/scale.py): events
    spread over the last ``:days`` days, each with its two keys as the worker
    would have written them with the default window."""
    span = 30 * DAY
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
SELECT partner_id, event_id,
       to_timestamp((floor(extract(epoch FROM received_at) / {span}) - back) * {span})
FROM e CROSS JOIN (VALUES (0), (1)) AS b (back)
"""
