"""Scale: does the drain hold up once the events table is far bigger than memory?

PostgreSQL runs with ``shared_buffers`` of 128 MB, so at 20 million rows the
indexes of the events table (and of the dedup keys, where the schema has
them) cannot stay in PostgreSQL's own cache. The method:

1. the first million rows are drained through the real worker (RQ jobs of
   1,000-event batches, queued as the web tier queues them, the worker's
   idempotent insert) into an empty table: the clock runs as in ``drain``;
2. the middle is bulk-filled in SQL (``INSERT ... SELECT`` over
   ``generate_series``, random UUIDv4 event ids from ``gen_random_uuid()``,
   received times spread uniformly over the last ``days`` days: a year by
   default, the storage this layout is for), with the dedup keys filled
   alongside where the schema has a key table, each under its period as the
   worker would have written it; then the workers' own maintenance pass
   (``app.partitions.maintain``) drops the keys past the window, as it does
   every hour in a deployment (run here before each million, outside the
   clock, and kept from running again inside it); so the last million meet
   the same indexes a real year would leave;
3. the last million are drained exactly as the first.

``--scale-days 30`` puts all the rows within one dedup window instead: the
worst case for the keys, whose index then holds every row (bench/README.md
has both).

The figure is the drain rate of the last million over the first. The run
takes ten minutes or more, and this shared host's speed drifts by more than
the target's margin in that time; so right before and right after each end
is drained, a fixed workload whose cost does not grow with the table (the
drain bench's COPY floor: 100,000 rows into a fresh unlogged table) is
timed too. Its rate at the last million over its rate at the first is the
host's drift, shown beside the figure, with the figure divided by it: what
the table's growth cost, the host's drift taken out. Filling
the middle through the worker would take hours on a 2-core machine and
measures nothing the first and last million don't.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from redis import Redis

from app import partitions
from app.db import make_engine
from app.onside.validate import validate_batch
from app.partitions import period_starts
from bench import drain
from bench.services import Stack
from bench.workload import make_batches
from worker.dedup import bench_fill_sql
from worker.runner import PARTITIONS_INTERVAL, PARTITIONS_LOCK

# Small on purpose: the indexes of 20 million rows must not fit.
SCALE_CONFIG = {"shared_buffers": "128MB"}

FILL_PAYLOAD = orjson.dumps(
    {
        "currency": "USD",
        "amount": "12.34",
        "sku": "sku-00012345",
        "campaign": "spring-sale-042",
        "country": "US",
        "items": 3,
        "app_version": "4.12.1",
        "first_purchase": False,
    }
).decode()


@dataclass
class ScaleConfig:
    rows: int = 20_000_000
    # Drained through the worker at each end: the figure compares these two.
    measure_rows: int = 1_000_000
    events_per_batch: int = 1000
    # The bulk fill's received times are spread over this many past days.
    days: int = 365
    # Rows per bulk-fill transaction.
    fill_chunk: int = 2_000_000
    workers: int = 1
    # Batches of the COPY floor timed around each end (the host's drift).
    floor_batches: int = 100


def _log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _drain_batches(stack: Stack, cfg: ScaleConfig, seed: int) -> float:
    """Queue ``measure_rows`` fresh events and drain them; return rows/s."""
    count = cfg.measure_rows // cfg.events_per_batch
    redis = Redis.from_url(stack.settings.redis_url)
    try:
        redis.flushall()
        # run() has just run the partition maintenance pass. Emptying Redis
        # dropped its hourly lock, so the worker would run it again inside
        # the clock: once an hour in a deployment, at every million here,
        # and at the last one it walks a year of day partitions.
        redis.set(PARTITIONS_LOCK, _BENCH_HOLDS_IT, ex=PARTITIONS_INTERVAL)
        # Queued in slices, so the bodies never sit in memory all at once.
        for start in range(0, count, 100):
            bodies = make_batches(
                min(100, count - start), seed=seed + start, size=cfg.events_per_batch
            )
            drain.enqueue(stack, [validate_batch(body, cfg.events_per_batch) for body in bodies])
        # A million rows on a busy 2-core machine can take far longer than
        # the drain part's 10 minutes.
        seconds = drain.drain(stack.settings, cfg.workers, timeout=4 * 3600)
        # A worker takes the lock only where none is held (SET NX), so any
        # other value here means a worker ran the pass while it was timed.
        if redis.get(PARTITIONS_LOCK) != _BENCH_HOLDS_IT.encode():
            raise AssertionError("a worker ran the partition maintenance pass inside the clock")
    finally:
        redis.close()
    return cfg.measure_rows / seconds


# The value the bench's own hold on the maintenance pass's lock carries.
_BENCH_HOLDS_IT = "scale-bench"


def _has_table(engine: sa.Engine, name: str) -> bool:
    return sa.inspect(engine).has_table(name)


def _index_ddl(conn: sa.Connection, table: str) -> list[tuple[str, str]]:
    """(DROP, CREATE) statements of the table's unique keys and indexes, foreign keys aside."""
    out: list[tuple[str, str]] = []
    constraints = conn.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u')"
        ),
        {"t": table},
    ).all()
    for name, definition in constraints:
        out.append(
            (
                f'ALTER TABLE {table} DROP CONSTRAINT "{name}"',
                f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}',
            )
        )
    names = [name for name, _ in constraints]
    for name, definition in conn.execute(
        sa.text(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = 'public' AND tablename = :t"
        ),
        {"t": table},
    ).all():
        if name not in names:
            # A partitioned index: without ONLY, building it builds every partition's.
            out.append((f'DROP INDEX "{name}"', definition.replace(" ON ONLY ", " ON ", 1)))
    return out


def _make_days(conn: sa.Connection, table: str, days: int) -> None:
    """pg_partman's partitions for each of the last ``days`` days (the fill's range)."""
    conn.execute(
        sa.text(
            "SELECT partman.create_partition_time(:parent, ARRAY(SELECT date_trunc('day', now())"
            " - make_interval(days => g) FROM generate_series(0, :days) AS g))"
        ),
        {"parent": f"public.{table}", "days": days},
    )


def _make_periods(conn: sa.Connection, table: str, days: int, dedup_days: int) -> None:
    """The key partitions of the periods the fill's last ``days`` days fall in
    (a key partition is the day its period starts: worker/dedup.py)."""
    now = datetime.now(UTC)
    first, _ = period_starts(now - timedelta(days=days), dedup_days)
    current, _ = period_starts(now, dedup_days)
    starts: list[datetime] = []
    while first <= current:
        starts.append(first)
        first += timedelta(days=dedup_days)
    conn.execute(
        sa.text("SELECT partman.create_partition_time(:parent, :starts)"),
        {"parent": f"public.{table}", "starts": starts},
    )


def fill(engine: sa.Engine, partner_id: int, rows: int, cfg: ScaleConfig, dedup_days: int) -> float:
    """Bulk-insert ``rows`` events (and their dedup keys); return seconds taken.

    The tables' indexes are dropped for the fill and built again after it
    (by sorting: much faster than 18 million random insertions on 2 cores).
    A sorted build packs the leaf pages to the fill factor where random
    insertions leave them about two-thirds full: the last million then split
    more pages than they would in a table grown one insert at a time.
    """
    keyed = _has_table(engine, "event_keys")
    tables = ["events", "event_keys"] if keyed else ["events"]
    with engine.begin() as conn:
        if keyed:
            _make_days(conn, "events", cfg.days)
            _make_periods(conn, "event_keys", cfg.days, dedup_days)
        ddl = [pair for table in tables for pair in _index_ddl(conn, table)]
        for drop, _ in ddl:
            conn.execute(sa.text(drop))
    started = time.perf_counter()
    done = 0
    while done < rows:
        n = min(cfg.fill_chunk, rows - done)
        params = {"pid": partner_id, "n": n, "days": cfg.days, "payload": FILL_PAYLOAD}
        with engine.begin() as conn:
            if keyed:
                conn.execute(sa.text(bench_fill_sql(dedup_days)), params)
            else:
                conn.execute(sa.text(_FILL_EVENTS), params)
        done += n
        _log(f"filled {done:,}/{rows:,} rows ({time.perf_counter() - started:.0f} s)")
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL maintenance_work_mem = '512MB'"))
        for _, create in ddl:
            conn.execute(sa.text(create))
            _log(f"built: {create[:90]}")
    return time.perf_counter() - started


_FILL_EVENTS = """
INSERT INTO events (partner_id, event_id, event_name, sent_event_name, event_datetime,
                    installation_id, payload, received_at, job_id)
SELECT :pid, gen_random_uuid(), 'purchase_completed', 'purchase_completed', t,
       gen_random_uuid(), CAST(:payload AS jsonb), t, 'bench-fill'
FROM (SELECT now() - random() * make_interval(days => :days) AS t
      FROM generate_series(1, :n)) AS s
"""


def run(stack: Stack, cfg: ScaleConfig) -> dict[str, Any]:
    engine = make_engine(stack.settings.database_url)
    try:
        floor = _host_floor(stack, cfg)
        drain.truncate(engine)
        _maintain(stack, engine)
        floors_first = [floor()]
        _log(f"draining the first {cfg.measure_rows:,} rows through the worker")
        first = _drain_batches(stack, cfg, seed=1_000_000)
        floors_first.append(floor())
        _log(f"first million: {first:,.0f} rows/s; COPY floor {floors_first}")
        middle = cfg.rows - 2 * cfg.measure_rows
        fill_seconds = fill(engine, stack.partner.id, middle, cfg, stack.settings.dedup_days)
        # What the workers' hourly pass would have done by now: drop the keys
        # no resend can meet any more (nothing, on a schema without them).
        dropped, maintained_at, maintenance_seconds = _maintain(stack, engine)
        # What a table grown over a year has had, and what the fill would
        # otherwise leave to run during the last million: a vacuum (which
        # sets the pages' visibility), statistics, and a checkpoint.
        _log("vacuum, analyze and checkpoint after the fill")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM (ANALYZE)"))
            conn.execute(sa.text("CHECKPOINT"))
        floors_last = [floor()]
        _log(f"draining the last {cfg.measure_rows:,} rows through the worker")
        last = _drain_batches(stack, cfg, seed=2_000_000)
        floors_last.append(floor())
        _log(f"last million: {last:,.0f} rows/s; COPY floor {floors_last}")
        rows = drain.count_rows(engine)
        if rows != cfg.rows:
            raise AssertionError(f"{rows} rows in the table, expected {cfg.rows}")
        with engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
        keys = (
            _checked_keys(engine, stack.settings.dedup_days, maintained_at)
            if _has_table(engine, "event_keys")
            else None
        )
    finally:
        engine.dispose()
    drift = statistics.mean(floors_last) / statistics.mean(floors_first)
    return {
        "rows": cfg.rows,
        "measure_rows": cfg.measure_rows,
        "first_rows_per_s": first,
        "last_rows_per_s": last,
        "last_vs_first": last / first,
        "floor_first_rows_per_s": floors_first,
        "floor_last_rows_per_s": floors_last,
        "host_drift": drift,
        "last_vs_first_drift_out": last / first / drift,
        "fill_seconds": fill_seconds,
        "fill_days": cfg.days,
        "dedup_days": stack.settings.dedup_days,
        "maintenance_dropped": [p.name for p in dropped],
        "maintenance_seconds": maintenance_seconds,
        # The rows the dedup index covers at the end (None: the schema has no
        # key table, and its unique index covers every row).
        "dedup_keys": None if keys is None else sum(keys.values()),
        # Keys per period start: how full the current period was is the
        # day of the run, and sets how large the index written is.
        "dedup_keys_by_period": keys,
        "database_mb": size / 2**20,
        "config": vars(cfg),
    }


def _maintain(
    stack: Stack, engine: sa.Engine
) -> tuple[list[partitions.Partition], datetime, float]:
    """The workers' partition maintenance pass, run here, outside the clock:
    what it dropped, when it ran and how long it took."""
    at = datetime.now(UTC)
    started = time.perf_counter()
    dropped = partitions.maintain(engine, stack.settings, at)
    seconds = time.perf_counter() - started
    names = ", ".join(p.describe() for p in dropped) or "nothing"
    _log(f"maintenance pass ({seconds:.1f} s) dropped: {names}")
    return dropped, at, seconds


def _checked_keys(engine: sa.Engine, dedup_days: int, maintained_at: datetime) -> dict[str, int]:
    """The keys left at the end, per period start, checked to be exactly those
    of the events received since the previous period began (at the time of
    the maintenance pass): the keys no resend can meet dropped, no other."""
    current, previous = period_starts(maintained_at, dedup_days)
    with engine.connect() as conn:
        by_period = {
            start.astimezone(UTC).date().isoformat(): count
            for start, count in conn.execute(
                sa.text(
                    "SELECT period_start, count(*) FROM event_keys"
                    " GROUP BY period_start ORDER BY period_start"
                )
            )
        }
        recent = conn.execute(
            sa.text("SELECT count(*) FROM events WHERE received_at >= :previous"),
            {"previous": previous},
        ).scalar_one()
        stray = conn.execute(sa.text("SELECT count(*) FROM event_keys_default")).scalar_one()
    expected = {previous.date().isoformat(), current.date().isoformat()}
    if set(by_period) - expected or sum(by_period.values()) != recent or stray:
        raise AssertionError(
            f"keys per period {by_period} ({stray} in the default partition), expected"
            f" {recent:,} under {sorted(expected)}: the events received since {previous:%Y-%m-%d}"
        )
    return by_period


def _host_floor(stack: Stack, cfg: ScaleConfig) -> Callable[[], float]:
    """A timer of the drain bench's COPY floor on rows built once, here: rows/s."""
    count = max(1, min(cfg.floor_batches, cfg.measure_rows // cfg.events_per_batch))
    bodies = make_batches(count, seed=3_000_000, size=cfg.events_per_batch)
    batches = [
        drain.floor_rows(stack.partner.id, validate_batch(body, cfg.events_per_batch))
        for body in bodies
    ]
    dsn = drain.libpq_dsn(stack.settings.database_url)
    rows = sum(len(batch) for batch in batches)
    return lambda: rows / drain.copy_floor(dsn, batches)


def markdown(figures: dict[str, Any]) -> str:
    ratio = figures["last_vs_first"]
    return "\n".join(
        [
            "| scale figure | value | wanted | holds |",
            "|---|---:|---:|:---:|",
            f"| rows at the end | {figures['rows']:,} | ≥ 20,000,000 | "
            f"{'yes' if figures['rows'] >= 20_000_000 else 'no'} |",
            f"| first million drained, rows/s | {figures['first_rows_per_s']:,.0f} | | |",
            f"| last million drained, rows/s | {figures['last_rows_per_s']:,.0f} | | |",
            f"| last million ÷ first million | {ratio:.2f} | ≥ 0.80 | "
            f"{'yes' if ratio >= 0.8 else 'no'} |",
            f"| the host's drift: COPY floor around the last million ÷ around the first"
            f" ({_rates(figures['floor_last_rows_per_s'])} vs"
            f" {_rates(figures['floor_first_rows_per_s'])} rows/s) |"
            f" {figures['host_drift']:.2f} | | |",
            f"| last ÷ first, the host's drift taken out |"
            f" {figures['last_vs_first_drift_out']:.2f} | | |",
            f"| the fill's received times span, days | {figures['fill_days']} | | |",
            f"| dedup window, days | {figures['dedup_days']} | | |",
            f"| dedup keys at the end | {_keys(figures['dedup_keys_by_period'])} | | |",
            f"| database size (MB) | {figures['database_mb']:,.0f} | | |",
        ]
    )


def _keys(by_period: dict[str, int] | None) -> str:
    if by_period is None:
        return "none: the unique index holds every row"
    periods = ", ".join(f"{count:,} under {start}" for start, count in by_period.items())
    return f"{sum(by_period.values()):,} ({periods})"


def _rates(values: list[float]) -> str:
    return " and ".join(f"{v:,.0f}" for v in values)
