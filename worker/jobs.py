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
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from rq import get_current_job
from rq.timeouts import JobTimeoutException
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from worker import context, store, thrad_store

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


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, TRANSIENT_ERRORS)


BatchBody = Callable[[Connection, int, datetime, list[dict[str, Any]], str | None], int]


def batch_job(body: BatchBody) -> Callable[[int, str, list[dict[str, Any]]], dict[str, int]]:
    """Wrap a batch insert into a job: transaction, log line, retry policy."""

    @functools.wraps(body)
    def run(partner_id: int, received_at: str, events: list[dict[str, Any]]) -> dict[str, int]:
        job = get_current_job()
        job_id = job.id if job else None
        started = time.perf_counter()
        try:
            with context.current().engine.begin() as conn:
                inserted = body(conn, partner_id, datetime.fromisoformat(received_at), events, job_id)
        except Exception as exc:
            # (A SystemExit from a cold shutdown passes through untouched: the
            # job is then retried as abandoned, like a killed worker's.)
            if job is not None and not is_transient(exc):
                # RQ retries whatever has retries left; a permanent failure
                # goes straight to the failed registry instead.
                job.retries_left = 0
            log.warning(orjson.dumps({
                "job_id": job_id, "partner_id": partner_id, "events": len(events),
                "status": "failed", "transient": is_transient(exc),
                "error": type(exc).__name__,
            }).decode())
            raise
        result = {"inserted": inserted, "duplicates": len(events) - inserted}
        log.info(orjson.dumps({
            "job_id": job_id, "partner_id": partner_id, "events": len(events), **result,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }).decode())
        return result

    return run


@batch_job
def ingest_onside(
    conn: Connection,
    partner_id: int,
    received_at: datetime,
    events: list[dict[str, Any]],
    job_id: str | None,
) -> int:
    return store.insert_onside_events(
        conn, partner_id=partner_id, received_at=received_at, events=events, job_id=job_id
    )


@batch_job
def ingest_thrad(
    conn: Connection,
    partner_id: int,
    received_at: datetime,
    events: list[dict[str, Any]],
    job_id: str | None,
) -> int:
    return thrad_store.insert_thrad_events(
        conn, partner_id=partner_id, received_at=received_at, events=events, job_id=job_id,
        geoip_database=context.current().settings.geoip_database,
    )
