"""Everything that talks to Redis and RQ, for the web tier and the CLI."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import orjson
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.job import Job

from app.onside.contract import QueuedOnsideEvent
from app.ops import metrics, stats
from app.settings import Settings
from app.thrad.contract import QueuedThradEvent

log = logging.getLogger("inlet.queue")

Endpoint = Literal["onside", "thrad"]

# The job function of each endpoint. Queued and failed jobs in Redis name
# these paths (and `inlet failed requeue` runs them long after), so they stay
# importable under these names whatever the worker's modules become.
JOB_FUNCTIONS: dict[Endpoint, str] = {
    "onside": "worker.jobs.ingest_onside",
    "thrad": "worker.jobs.ingest_thrad",
}


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


class PlainJob(Job):
    """RQ's Job, with its data written as the serializer made it, and only once.

    RQ zlib-compresses every job's data, and a worker writes the whole job
    back to Redis when it finishes it (only to delete it, with result_ttl=0):
    for a 1,000-event batch that was ~4.5 ms of compression in the web
    process, a third of its time, and again in the worker, plus 350 KB sent
    back and appended to the AOF per job.

    - Reading needs nothing special: RQ's ``Job.restore`` tries to
      decompress and falls back to the bytes as they are, and JSON can never
      pass for a zlib stream (its first byte is ``[``, not a zlib header),
      so stock workers and the ``rq`` tools read these jobs as any other.
    - A job read from Redis whose data has not changed leaves the ``data``
      field out when it is saved again: ``Job.save`` is an HSET of the
      fields given, so the stored batch stays as it is (and stays intact in
      the failed registry).
    """

    _stored_data: bytes | None = None

    def restore(self, raw_data: Any) -> Any:
        result = super().restore(raw_data)
        self._stored_data = self._data  # type: ignore[has-type]
        return result

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
        data = self.data
        # Job.to_dict compresses self.data unconditionally: hand it nothing
        # to compress, then put the real bytes in (or leave them out).
        self._data = b""
        try:
            obj = super().to_dict(include_meta=include_meta, include_result=include_result)
        finally:
            self._data = data
        if data is self._stored_data:
            del obj["data"]  # already in Redis, byte for byte
        else:
            obj["data"] = data
        return obj


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
    return Queue(
        settings.queue_name, connection=redis, serializer=JSONSerializer, job_class=PlainJob
    )


def retry_policy(settings: Settings) -> Retry | None:
    delays = list(settings.retry_delays)
    if not delays:
        return None
    return Retry(max=len(delays), interval=delays)


def enqueue_batch(
    queue: Queue,
    settings: Settings,
    *,
    endpoint: Endpoint,
    partner_id: int,
    partner_name: str,
    events: Sequence[QueuedOnsideEvent] | Sequence[QueuedThradEvent],
    received_at: datetime,
    extra_meta: dict[str, Any] | None = None,
    count_accepted: bool = False,
) -> str:
    """Queue one batch as one job of ``endpoint``'s job function; return the job id.

    The job, its id pushed on the queue and the queue's registration all go
    in one MULTI/EXEC (one round trip, one fsync: left to itself RQ sends the
    registration in a write of its own first), so a failure (connection
    lost, out of memory) leaves nothing half-queued. The caller answers 204
    only after this returns.

    With ``count_accepted`` the per-partner count of accepted events
    (app/ops/stats.py) is added in the same transaction, so it costs no round
    trip of its own. A failure of only those counting commands (which EXEC
    runs regardless) is logged and ignored: the job is queued all the same.
    """
    meta = {"partner": partner_name, "endpoint": endpoint, "events": len(events)}
    if extra_meta:
        meta.update(extra_meta)
    started = time.perf_counter()
    job_id = str(uuid.uuid4())
    with queue.connection.pipeline(transaction=True) as pipe:
        job = queue.enqueue_call(
            JOB_FUNCTIONS[endpoint],
            args=(partner_id, received_at.isoformat(), events),
            timeout=settings.job_timeout,
            # Successful jobs leave nothing behind in Redis; failed ones stay a year.
            result_ttl=0,
            retry=retry_policy(settings),
            # RQ's default description is the repr of every argument: a whole batch.
            description=f"{endpoint} batch of {len(events)} events for {partner_name}",
            meta=meta,
            job_id=job_id,
            pipeline=pipe,
        )
        counting = (
            stats.add(pipe, partner_name, stats.ACCEPTED, len(events)) if count_accepted else 0
        )
        try:
            results = pipe.execute(raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError):
            # The reply is lost, not necessarily the write. MULTI/EXEC is all
            # or nothing, so the job's own key says which: queued means 204
            # (a 503 would make the partner send it again), absent means 503.
            if not queue.connection.exists(queue.job_class.key_for(job_id)):
                raise
            results = []
    # An aborted EXEC (OOM, lost connection) raised above: nothing was queued.
    # Runtime errors come back in the results instead; the job's must raise.
    job_results = results[: max(len(results) - counting, 0)]
    for result in job_results:
        if isinstance(result, Exception):
            raise result
    if any(isinstance(result, Exception) for result in results[len(job_results) :]):
        log.debug("stats not recorded with job %s", job.id)
    m = metrics.get()
    m.enqueue_seconds.labels(endpoint).observe(time.perf_counter() - started)
    m.batch_size.labels(endpoint).observe(len(events))
    return job.id
