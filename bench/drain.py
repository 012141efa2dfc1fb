"""Drain: queued batches -> PostgreSQL, against a psycopg COPY floor.

The batches are validated and queued exactly as the web tier does it, then
worker processes are started, each builds its RQ worker, and all wait at a
barrier; the clock runs from their release until the last job is done (its
transaction committed), and the row count is checked: every event once.

Single events are measured too: the same events, one per request, queued
through the web tier's group commit by 16 concurrent senders that each wait
for their answer (as 16 keep-alive connections would), so a job holds what
one group of such a load holds.

The floor is psycopg ``COPY`` of the same rows (built beforehand, outside
the clock) into an unlogged table of the same shape, created with
``LIKE events INCLUDING ALL``: the same columns, primary key, unique
(partner_id, event_id) index (added by hand on the partitioned layout,
whose key lives in event_keys) and the received_at index.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa

from app import queue as q
from app.db import make_engine
from app.groupcommit import Coalescer
from app.onside.contract import QueuedOnsideEvent
from app.onside.names import normalize_event_name
from app.onside.validate import validate_batch
from app.runtime import collector_tuned
from app.settings import Settings
from bench.services import Stack
from bench.workload import make_batches

FLOOR_TABLE = "bench_copy_floor"
COLUMNS = (
    "partner_id",
    "event_id",
    "event_name",
    "sent_event_name",
    "event_datetime",
    "installation_id",
    "payload",
    "received_at",
    "job_id",
)


@dataclass
class DrainConfig:
    batches: int = 60
    events_per_batch: int = 1000
    # Single events: this many of the batches' events, one per request.
    single_events: int = 20_000
    single_senders: int = 16


def _worker(settings: Settings, ready: Any, go: Any, ends: Any) -> None:
    from worker import context
    from worker.runner import build_worker

    context.open_context(settings)
    worker = build_worker(settings)
    # The clock stops when the last job is done (its rows committed), not
    # when the worker has finished tidying up after it.
    last_done = [time.time()]

    def timed(done: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            result = done(*args, **kwargs)
            last_done[0] = time.time()
            return result

        return run

    # A job run alone ends in handle_job_success; a take's jobs in finish_take.
    worker.handle_job_success = timed(worker.handle_job_success)  # type: ignore[method-assign]
    worker.finish_take = timed(worker.finish_take)  # type: ignore[method-assign]
    ready.wait(timeout=120)
    go.wait()
    with collector_tuned():  # as run_worker runs it
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    ends.put(last_done[0])
    context.close_context()


def drain(settings: Settings, workers: int, timeout: float = 600) -> float:
    """Seconds from the workers' release until the last job is done."""
    ctx = mp.get_context("spawn")
    ready, go, ends = ctx.Barrier(workers + 1), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(settings, ready, go, ends)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    ready.wait(timeout=120)  # a worker that died on start breaks the barrier
    started = time.time()
    go.set()
    finished = [ends.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(30)
    return max(finished) - started


def enqueue(stack: Stack, events_batches: list[list[QueuedOnsideEvent]]) -> None:
    redis = q.make_redis(stack.settings.redis_url)
    queue = q.make_queue(stack.settings, redis)
    try:
        for events in events_batches:
            q.enqueue_batch(
                queue,
                stack.settings,
                endpoint="onside",
                partner_id=stack.partner.id,
                partner_name=stack.partner.name,
                events=events,
                received_at=datetime.now(UTC),
            )
    finally:
        redis.close()


def enqueue_singles(stack: Stack, events: list[QueuedOnsideEvent], senders: int) -> int:
    """Queue one event per request through group commit; return the jobs made."""
    settings = stack.settings
    redis = q.make_redis(settings.redis_url)
    queue = q.make_queue(settings, redis)
    group_commit: Coalescer[q.Submission, str] = Coalescer(
        functools.partial(q.enqueue_group, queue, settings),
        max_size=settings.group_max_events,
        wait_seconds=settings.group_wait_ms / 1000,
        size=lambda submission: len(submission.events),
    )
    partner_id, name = stack.partner.id, stack.partner.name

    async def sender(mine: list[QueuedOnsideEvent]) -> None:
        for event in mine:
            submission = q.Submission("onside", partner_id, name, [event], datetime.now(UTC), "")
            await group_commit.submit(submission)

    async def send_all() -> None:
        await asyncio.gather(*(sender(events[i::senders]) for i in range(senders)))

    try:
        asyncio.run(send_all())
        return int(queue.count)
    finally:
        redis.close()


def count_rows(engine: sa.Engine, table: str = "events") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def truncate(engine: sa.Engine, table: str = "events") -> None:
    """Empty the table, and its dedup keys where the schema keeps them apart
    (PostgreSQL's partitioned layout, worker/dedup.py): else a fresh drain
    would find every event already seen."""
    keys = {"events": "event_keys", "thrad_events": "thrad_event_keys"}.get(table)
    with engine.begin() as conn:
        if keys and sa.inspect(conn).has_table(keys):
            conn.execute(sa.text(f"TRUNCATE {table}, {keys}"))
        else:
            conn.execute(sa.text(f"TRUNCATE {table}"))


def floor_rows(partner_id: int, events: list[QueuedOnsideEvent]) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    return [
        (
            partner_id,
            e["event_id"],
            normalize_event_name(e["event_name"]),
            e["event_name"],
            datetime.fromisoformat(e["event_datetime"]),
            e["installation_id"],
            orjson.dumps(e["payload"]).decode(),
            now,
            "bench-floor",
        )
        for e in events
    ]


def copy_floor(dsn: str, batches: list[list[tuple[Any, ...]]]) -> float:
    """Seconds to COPY every batch, one transaction per batch, into the floor table."""
    with psycopg.connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        conn.execute(f"CREATE UNLOGGED TABLE {FLOOR_TABLE} (LIKE events INCLUDING ALL)")
        kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass")
        if kind.fetchone() == ("p",):
            # Partitioned events keep their unique key in event_keys: the floor
            # keeps one on itself, so it stays the floor it always was.
            conn.execute(f"CREATE UNIQUE INDEX ON {FLOOR_TABLE} (partner_id, event_id)")
        conn.commit()
        statement = f"COPY {FLOOR_TABLE} ({', '.join(COLUMNS)}) FROM STDIN"
        started = time.perf_counter()
        for rows in batches:
            with conn.cursor() as cur, cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - started
        count = conn.execute(f"SELECT count(*) FROM {FLOOR_TABLE}").fetchone()
        assert count is not None and count[0] == sum(len(b) for b in batches)
        conn.execute(f"DROP TABLE {FLOOR_TABLE}")
        conn.commit()
    return elapsed


def libpq_dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def run(stack: Stack, cfg: DrainConfig, seed: int = 2) -> dict[str, Any]:
    """One round: fresh (1 worker), its all-duplicate replay (1 worker), single events
    (1 worker), fresh (2 workers), COPY floor."""
    bodies = make_batches(cfg.batches, seed=seed, size=cfg.events_per_batch)
    batches = [validate_batch(body, cfg.events_per_batch) for body in bodies]
    total = sum(len(b) for b in batches)
    engine = make_engine(stack.settings.database_url)
    redis = q.make_redis(stack.settings.redis_url)
    results: dict[str, Any] = {"rows": total}
    try:

        def measure(name: str, workers: int, fresh: bool) -> None:
            if fresh:
                truncate(engine)
            elif count_rows(engine) != total:
                raise AssertionError(f"{name}: a replay needs every row already stored")
            redis.flushall()
            enqueue(stack, batches)
            seconds = drain(stack.settings, workers)
            rows = count_rows(engine)
            if rows != total:
                raise AssertionError(f"{name}: {rows} rows in the table, expected {total}")
            results[name] = {"seconds": seconds, "rows_per_s": total / seconds, "workers": workers}

        measure("fresh_1", 1, fresh=True)
        # Right after it, on the rows it left: every event a duplicate.
        measure("replay_1", 1, fresh=False)
        singles = [e for b in batches for e in b][: cfg.single_events]
        truncate(engine)
        redis.flushall()
        jobs = enqueue_singles(stack, singles, cfg.single_senders)
        seconds = drain(stack.settings, 1)
        if count_rows(engine) != len(singles):
            raise AssertionError(f"single_1: {count_rows(engine)} rows, expected {len(singles)}")
        results["single_1"] = {
            "seconds": seconds,
            "rows_per_s": len(singles) / seconds,
            "workers": 1,
            "jobs": jobs,
            "events_per_job": len(singles) / max(jobs, 1),
        }
        measure("fresh_2", 2, fresh=True)
        rows = [floor_rows(stack.partner.id, b) for b in batches]
        seconds = copy_floor(libpq_dsn(stack.settings.database_url), rows)
        results["copy_floor"] = {"seconds": seconds, "rows_per_s": total / seconds}
    finally:
        redis.close()
        engine.dispose()
    return results
