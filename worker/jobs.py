"""RQ job functions: module-level, plain JSON arguments, short and idempotent.

Every job runs inside ``batch_job``, which opens the transaction, logs one
JSON line per job, and tells transient failures (retried on the
INLET_RETRY_DELAYS schedule) from permanent ones (failed at once, kept in
RQ's failed registry with the batch intact for support to requeue).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from app.onside.contract import QueuedOnsideEvent
from app.ops import deletion, metrics, stats
from app.thrad.contract import QueuedThradEvent
from worker import context
from worker import onside as store
from worker import thrad as thrad_store
from worker.sql import Batch

log = logging.getLogger("inlet.jobs")

# Failures that a later attempt can get past: the database unreachable or
# restarting, a lock or statement timeout, a serialization conflict. Anything
# else (a bug, data the database refuses) would fail the same way again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    JobTimeoutException,
    ConnectionError,
    TimeoutError,
)


# SQLSTATE classes that say the data or the statement is at fault, whatever
# the exception class the driver chose (psycopg raises "index row size
# exceeds maximum", class 54, as an OperationalError): retrying can't help.
PERMANENT_SQLSTATE_CLASSES = ("22", "23", "42", "54")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate[:2] in PERMANENT_SQLSTATE_CLASSES:
        return False
    return isinstance(exc, TRANSIENT_ERRORS)


# The wrapper reads only the batch's length; each body's own type says what its events are.
BatchBody = Callable[[Connection, int, datetime, list[Any], str | None], int]

MAX_ERROR_CHARS = 300


def describe_error(exc: BaseException) -> str:
    """``Type: first line of the message``: for SQLAlchemy errors the later
    lines hold the statement's parameters, i.e. event data, which stays out."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:MAX_ERROR_CHARS]


def note_failure(job: Job, exc: BaseException, when: datetime) -> None:
    """Record the attempt in the job's meta: RQ keeps no result for an attempt it retries,
    and ``inlet failed list`` shows first and last failure and the attempts made."""
    meta = job.meta
    meta["attempts"] = int(meta.get("attempts") or 0) + 1
    meta.setdefault("first_failed_at", when.isoformat())
    meta["last_failed_at"] = when.isoformat()
    meta["last_error"] = describe_error(exc)
    try:
        job.save_meta()
    except RedisError:
        log.warning("job %s: failure not noted in its meta (Redis unavailable)", job.id)


def batch_job(body: BatchBody) -> Callable[[int, str, list[Any]], dict[str, int]]:
    """Wrap a batch insert into a job: transaction, log line, metrics, retry policy."""

    @functools.wraps(body)
    def run(partner_id: int, received_at: str, events: list[Any]) -> dict[str, int]:
        job = get_current_job()
        job_id = job.id if job else None
        meta = job.meta if job else {}
        partner, endpoint = meta.get("partner"), meta.get("endpoint") or body.__name__
        m = metrics.get()
        started = time.perf_counter()
        received = datetime.fromisoformat(received_at)
        try:
            with context.current().engine.begin() as conn:
                inserted = body(conn, partner_id, received, events, job_id)
        except Exception as exc:
            # (A SystemExit from a cold shutdown passes through untouched: the
            # job is then retried as abandoned, like a killed worker's.)
            transient = is_transient(exc)
            final = job is None or not transient or not job.retries_left
            if job is not None:
                if not transient:
                    # RQ retries whatever has retries left; a permanent failure
                    # goes straight to the failed registry instead.
                    job.retries_left = 0
                note_failure(job, exc, datetime.now(UTC))
                if final:
                    stats.record(job.connection, partner, stats.FAILED, len(events))
            m.jobs_failed.labels(partner or "(unknown)", str(final).lower()).inc()
            m.job_seconds.labels(endpoint, "failed").observe(time.perf_counter() - started)
            log.warning(
                orjson.dumps(
                    {
                        "job_id": job_id,
                        "partner": partner,
                        "partner_id": partner_id,
                        "endpoint": endpoint,
                        "events": len(events),
                        "status": "failed",
                        "transient": transient,
                        "final": final,
                        "error": type(exc).__name__,
                        "attempt": meta.get("attempts"),
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                ).decode()
            )
            raise
        return record_success(
            job_id, meta, partner_id, endpoint, len(events), inserted, received, started
        )

    return run


def record_success(
    job_id: str | None,
    meta: dict[str, Any],
    partner_id: int,
    endpoint: str,
    events: int,
    inserted: int,
    received: datetime,
    started: float,
    *,
    jobs_in_take: int = 1,
) -> dict[str, int]:
    """The metrics and the JSON log line of a job whose rows are committed."""
    m = metrics.get()
    partner = meta.get("partner")
    seconds = time.perf_counter() - started
    lag = (datetime.now(UTC) - received).total_seconds()
    result = {"inserted": inserted, "duplicates": events - inserted}
    # A job that shared its transaction counts its share of the take's time.
    m.job_seconds.labels(endpoint, "ok").observe(seconds / jobs_in_take)
    m.rows_inserted.labels(partner or "(unknown)").inc(inserted)
    m.rows_duplicate.labels(partner or "(unknown)").inc(events - inserted)
    m.receive_to_insert_seconds.labels(endpoint).observe(max(lag, 0.0))
    line: dict[str, Any] = {
        "job_id": job_id,
        "partner": partner,
        "partner_id": partner_id,
        "endpoint": endpoint,
        "events": events,
        **result,
        "status": "ok",
        "duration_ms": round(seconds * 1000, 2),
        "lag_ms": round(lag * 1000, 1),
    }
    if jobs_in_take > 1:
        line["jobs_in_take"] = jobs_in_take
    log.info(orjson.dumps(line).decode())
    return result


def run_together(jobs: Sequence[Job]) -> list[dict[str, int]]:
    """Run several jobs' inserts in one transaction: one commit for all, and
    on PostgreSQL one COPY and one move for all the Onside jobs.

    Only for the worker's takes (worker/take.py), and only for jobs that
    name one of Inlet's job functions. Raises whatever the insert raised,
    with nothing committed: the caller then runs each job on its own, so
    that a failure is recorded, retried and kept (in the failed registry,
    naming one partner) exactly as if the take had never been.
    """
    started = time.perf_counter()
    current = context.current()
    onside: list[tuple[Job, Batch]] = []
    thrad: list[tuple[Job, Batch]] = []
    # Each partner's deleted identifiers, read once for the take.
    tombstones: dict[int, frozenset[str]] = {}
    for job in jobs:
        partner_id, received_at, events = job.args
        endpoint = ENDPOINTS.get(job.func_name or "")
        if endpoint is None:
            raise ValueError(f"job {job.id}: {job.func_name!r} can't run in a take")
        if partner_id not in tombstones:
            tombstones[partner_id] = read_tombstones(job.connection, partner_id)
        kept = drop_deleted(job.id, partner_id, events, endpoint, tombstones[partner_id])
        batch = Batch(partner_id, datetime.fromisoformat(received_at), kept, job.id)
        (onside if endpoint == "onside" else thrad).append((job, batch))
    dedup_days = current.settings.dedup_days
    with current.engine.begin() as conn:
        counts = (
            store.insert_onside_batches(conn, [b for _, b in onside], dedup_days=dedup_days)
            if onside
            else []
        )
        if thrad:
            counts += thrad_store.insert_thrad_batches(
                conn,
                [b for _, b in thrad],
                geoip_database=current.settings.geoip_database,
                dedup_days=dedup_days,
            )
    return [
        record_success(
            job.id,
            job.meta,
            batch.partner_id,
            job.meta.get("endpoint") or function_name(job),
            len(job.args[2]),
            inserted,
            batch.received_at,
            started,
            jobs_in_take=len(jobs),
        )
        for (job, batch), inserted in zip([*onside, *thrad], counts, strict=True)
    ]


def function_name(job: Job) -> str:
    return (job.func_name or "").rsplit(".", 1)[-1]


class TombstonesUnavailable(ConnectionError):
    """Redis did not answer for the deleted identifiers: retried, as a lost database is."""


def read_tombstones(redis: Redis, partner_id: int) -> frozenset[str]:
    try:
        return deletion.live_tombstones(redis, partner_id)
    except RedisError as exc:
        raise TombstonesUnavailable(f"tombstones not read: {type(exc).__name__}") from None


def not_deleted(partner_id: int, events: list[Any], endpoint: str) -> list[Any]:
    """The events that carry no identifier deleted on request (app/ops/deletion.py)."""
    job = get_current_job()
    if job is None or not events:
        return events
    tombstones = read_tombstones(job.connection, partner_id)
    return drop_deleted(job.id, partner_id, events, endpoint, tombstones)


def drop_deleted(
    job_id: str, partner_id: int, events: list[Any], endpoint: str, tombstones: frozenset[str]
) -> list[Any]:
    kept = deletion.drop_tombstoned(
        events, endpoint, tombstones, context.current().settings.secret_key, partner_id
    )
    if len(kept) < len(events):
        # They count as duplicates in the job's result: they were never to land.
        log.info(
            "job %s: %d events of deleted identifiers dropped", job_id, len(events) - len(kept)
        )
    return kept


# The job function each endpoint's jobs name (app/queue.py), for a take.
ENDPOINTS = {"worker.jobs.ingest_onside": "onside", "worker.jobs.ingest_thrad": "thrad"}

# The job functions. app/queue.py's JOB_FUNCTIONS names them, and so does every
# job stored in Redis (queued, scheduled for a retry, failed): they must stay
# importable as worker.jobs.ingest_onside and worker.jobs.ingest_thrad.


@batch_job
def ingest_onside(
    conn: Connection,
    partner_id: int,
    received_at: datetime,
    events: list[QueuedOnsideEvent],
    job_id: str | None,
) -> int:
    kept = not_deleted(partner_id, events, "onside")
    if not kept:
        return 0
    return store.insert_onside_events(
        conn,
        partner_id=partner_id,
        received_at=received_at,
        events=kept,
        job_id=job_id,
        dedup_days=context.current().settings.dedup_days,
    )


@batch_job
def ingest_thrad(
    conn: Connection,
    partner_id: int,
    received_at: datetime,
    events: list[QueuedThradEvent],
    job_id: str | None,
) -> int:
    return thrad_store.insert_thrad_events(
        conn,
        partner_id=partner_id,
        received_at=received_at,
        events=not_deleted(partner_id, events, "thrad"),
        job_id=job_id,
        geoip_database=context.current().settings.geoip_database,
        dedup_days=context.current().settings.dedup_days,
    )
