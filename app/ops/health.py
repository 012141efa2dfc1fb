"""``GET /readyz`` (Redis and the database answer) and ``GET /metrics``."""

from __future__ import annotations

import logging

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


def _check_database(state: AppState) -> None:
    with state.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


async def readyz(request: Request) -> Response:
    """200 when Redis and the database both answer; 503 naming each that doesn't."""
    state: AppState = request.app.state.inlet
    checks: dict[str, str] = {}
    problems = []
    for name, check in (("redis", _check_redis), ("database", _check_database)):
        try:
            await run_in_threadpool(check, state)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready", and says which part
            # The exception's type only: its text may hold a host name or a URL.
            log.warning("readiness: %s failed: %s", name, type(exc).__name__)
            checks[name] = "unavailable"
            problems.append(
                {"index": None, "field": name, "message": f"does not answer ({type(exc).__name__})"}
            )
    if problems:
        names = " and ".join(p["field"] for p in problems)
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
