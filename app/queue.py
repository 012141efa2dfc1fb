"""Everything that talks to Redis and RQ, for the web tier and the CLI."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import orjson
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry

from app import metrics
from app.settings import Settings

INGEST_ONSIDE = "worker.jobs.ingest_onside"
INGEST_THRAD = "worker.jobs.ingest_thrad"


class JSONSerializer:
    """RQ serializer: JSON through orjson. No pickle ever reaches Redis.

    Workers and `rq` command-line tools must use the same one:
    ``--serializer app.queue.JSONSerializer``.
    """

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)


def make_redis(url: str, timeout: float | None = None) -> Redis:
    """A Redis client whose every call is bounded in time.

    The web tier passes a short timeout: when Redis is down or stuck the
    partner gets a quick 503 instead of a hung request.
    """
    options: dict[str, Any] = {"health_check_interval": 30}
    if timeout is not None:
        options.update(
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=RedisRetry(NoBackoff(), 1),
        )
    return Redis.from_url(url, **options)


def make_queue(settings: Settings, redis: Redis) -> Queue:
    return Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)


def retry_policy(settings: Settings) -> Retry | None:
    delays = list(settings.retry_delays)
    if not delays:
        return None
    return Retry(max=len(delays), interval=delays)


def enqueue_batch(
    queue: Queue,
    settings: Settings,
    *,
    func: str,
    partner_id: int,
    partner_name: str,
    events: list[dict[str, Any]],
    received_at: datetime,
    extra_meta: dict[str, Any] | None = None,
) -> str:
    """Queue one batch as one job; return the job id.

    RQ writes the job and pushes its id in one MULTI/EXEC, so a failure
    (connection lost, out of memory) leaves nothing half-queued. The caller
    answers 204 only after this returns.
    """
    endpoint = func.rsplit("_", 1)[-1]
    meta = {"partner": partner_name, "endpoint": endpoint, "events": len(events)}
    if extra_meta:
        meta.update(extra_meta)
    started = time.perf_counter()
    job = queue.enqueue_call(
        func,
        args=(partner_id, received_at.isoformat(), events),
        timeout=settings.job_timeout,
        # Successful jobs leave nothing behind in Redis; failed ones stay a year.
        result_ttl=0,
        retry=retry_policy(settings),
        # RQ's default description is the repr of every argument: a whole batch.
        description=f"{endpoint} batch of {len(events)} events for {partner_name}",
        meta=meta,
    )
    m = metrics.get()
    m.enqueue_seconds.labels(endpoint).observe(time.perf_counter() - started)
    m.batch_size.labels(endpoint).observe(len(events))
    return job.id
