"""``GET /readyz`` (Redis answers, the database could take a write) and ``GET /metrics``."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from app import errors
from app.ops import metrics
from app.ops.failed import queue_state
from app.state import AppState

log = logging.getLogger("inlet.health")


def _check_redis(state: AppState) -> None:
    state.redis.ping()


# How long the probe waits for SQLite's write lock: a worker holds it for the
# milliseconds of one batch, a stuck transaction for ever.
SQLITE_WRITE_PROBE_MS = 500


class NotWritable(Exception):
    """The database answers, but a batch could not be stored now."""


def _check_database(state: AppState) -> None:
    """Ready means a write could happen, not only that the database answers.

    SQLite: take the write lock (BEGIN IMMEDIATE, then ROLLBACK: nothing is
    written) with a short busy timeout. PostgreSQL: one query that fails on a
    read-only session (a hot standby, or a database set read-only).
    """
    with state.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            _sqlite_write_probe(conn.connection.dbapi_connection)
            return
        read_only = conn.execute(sa.text("SELECT current_setting('transaction_read_only')"))
        if read_only.scalar() == "on":
            raise NotWritable("read-only")


def _sqlite_write_probe(raw: Any) -> None:
    cursor = raw.cursor()
    try:
        (previous,) = cursor.execute("PRAGMA busy_timeout").fetchone()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_WRITE_PROBE_MS}")
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # "database is locked", read-only file
            raise NotWritable(str(exc)) from exc
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(previous)}")
        cursor.execute("ROLLBACK")
    finally:
        cursor.close()


def failure_message(exc: BaseException) -> str:
    """What ``/readyz`` (and the admin page's health panel) says of a failed check.

    The exception's type only: its text may hold a host name or a URL.
    """
    if isinstance(exc, NotWritable):
        return f"does not accept writes ({exc})"
    return f"does not answer ({type(exc).__name__})"


# The readiness checks, by the name /readyz reports; each raises when not ready.
CHECKS = (("redis", _check_redis), ("database", _check_database))


async def readyz(request: Request) -> Response:
    """200 when Redis answers and the database could take a write; else 503 naming each."""
    state: AppState = request.app.state.inlet
    checks: dict[str, str] = {}
    problems = []
    for name, check in CHECKS:
        try:
            await run_in_threadpool(check, state)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready", and says which part
            log.warning("readiness: %s failed: %s", name, type(exc).__name__)
            checks[name] = "unavailable"
            problems.append({"index": None, "field": name, "message": failure_message(exc)})
    if problems:
        names = " and ".join(str(p["field"]) for p in problems)
        raise errors.NotReady(
            f"Not ready: {names} unavailable", errors=problems, headers={"Retry-After": "5"}
        )
    return errors.json_response(200, {"status": "ready", "checks": checks})


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format: every process's counters plus the queue's gauges.

    The queue gauges are left out (not zeroed) when Redis doesn't answer, so a
    dashboard shows a gap instead of a false "empty queue".
    """
    state: AppState = request.app.state.inlet

    def build() -> bytes:
        try:
            current = queue_state(state.queue)
        except Exception as exc:
            log.warning("metrics: queue state unavailable: %s", type(exc).__name__)
            return metrics.render(None)
        return metrics.render(lambda: current)

    body = await run_in_threadpool(build)
    return Response(body, media_type=metrics.CONTENT_TYPE)
