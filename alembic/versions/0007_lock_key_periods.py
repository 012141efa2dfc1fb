"""The dedup keys' period locks: each key written once, adjacent periods read.

Until this revision a worker wrote each event's dedup key twice, under the
period of its receipt and the period before, and the unique index decided.
At scale those are two random insertions into indexes larger than the
cache an event (bench/README.md, "Scale"). From here a key is written once,
under its own period, and the two adjacent periods are read
(worker/dedup.py). Reading is not enough on its own between two concurrent
transactions of adjacent periods, which would each miss the other's
uncommitted key; this function takes the table locks that make them wait
for each other:

- ``ROW EXCLUSIVE`` on the partition a transaction writes keys into (as the
  INSERT itself would), ``SHARE`` on the partitions it reads. The two
  conflict, so a writer of period Q and a reader of Q (a writer of Q - 1 or
  Q + 1) run one after the other; writers of one period do not conflict
  with each other (the unique index orders them), nor readers.
- A partition both written and read (a take spanning a period boundary)
  gets ``SHARE ROW EXCLUSIVE``: taking ROW EXCLUSIVE and SHARE one after
  the other could deadlock two such takes.
- The parent first (``ROW EXCLUSIVE``, as the INSERT would), then the
  partitions in one order (by oid): every transaction takes its locks up
  front and in the same order, so no two can wait on each other in a cycle.
- A period's partition is found by its name, as pg_partman makes it (the
  parent's name, ``_p`` and the day in the set's ``datetime_string``, in the
  session's time zone, as pg_partman formats it); a period without one (not
  yet made, or dropped) lives in the table's default partition, which is
  locked instead. pg_partman's own ``show_partition_name`` gives the same
  answer by walking every partition of the set: 7 ms a call, 22 ms a job.

Keys written two a receipt before this revision stay valid: a key under
the period before its receipt's makes a receipt in that period a repeat, as
the rule wants, and one two periods before the original's a repeat too,
which the rule would store; only a job run more than a period after its
receipt could meet that, and such keys are dropped with their partitions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LOCK_KEY_PERIODS = """
CREATE FUNCTION inlet_lock_key_periods(parent text, written timestamptz[], read timestamptz[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    suffix text;
    target record;
BEGIN
    EXECUTE format('LOCK TABLE ONLY public.%I IN ROW EXCLUSIVE MODE', parent);
    SELECT datetime_string INTO STRICT suffix
    FROM partman.part_config WHERE parent_table = 'public.' || parent;
    FOR target IN
        SELECT part, bool_or(writes) AS writes, bool_or(NOT writes) AS reads
        FROM (
            SELECT coalesce(
                       to_regclass(format('public.%I',
                                          parent || '_p' || to_char(wanted.at, suffix))),
                       to_regclass(format('public.%I', parent || '_default'))
                   ) AS part,
                   wanted.writes
            FROM (SELECT unnest(written) AS at, true AS writes
                  UNION ALL
                  SELECT unnest(read), false) AS wanted
        ) AS parts
        WHERE part IS NOT NULL
        GROUP BY part
        ORDER BY part::oid
    LOOP
        EXECUTE format(
            'LOCK TABLE %s IN %s MODE',
            target.part,
            CASE WHEN target.writes AND target.reads THEN 'SHARE ROW EXCLUSIVE'
                 WHEN target.writes THEN 'ROW EXCLUSIVE'
                 ELSE 'SHARE' END
        );
    END LOOP;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(LOCK_KEY_PERIODS)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION inlet_lock_key_periods(text, timestamptz[], timestamptz[])")
