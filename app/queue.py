"""Everything that talks to Redis and RQ, for the web tier and the CLI."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Retry
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job

from app.onside.contract import QueuedOnsideEvent
from app.ops import metrics, stats
from app.redis_client import ReplicasNotConfirmed, one_connection, wait_for_replicas
from app.redis_client import make_redis as make_redis  # the factory, where it always was
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


class ExecutionIndex(ExecutionRegistry):
    """RQ's index of a job's executions, skipping executions whose record is gone.

    RQ keeps an execution's id in the index until its TTL + 60 s but the
    execution's own hash only for the TTL, and raises ValueError when it
    meets such an id. A job run again within that minute (taken over from a
    worker that died or lost Redis, or retried) then fails while finishing,
    after its rows were stored. A Redis failover can lose the hash too
    (replication is asynchronous). A missing record has nothing left to
    clean up: skip it.
    """

    def get_executions(self, start: int = 0, end: int = -1) -> list[Execution]:
        executions = []
        for execution_id in self.get_execution_ids(start, end):
            try:
                executions.append(
                    Execution.fetch(id=execution_id, job_id=self.job_id, connection=self.connection)
                )
            except ValueError:
                log.info("job %s: execution %s has expired", self.job_id, execution_id)
        return executions


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
        data = self._data
        self._stored_data = data if isinstance(data, bytes) else None
        return result

    @property
    def execution_registry(self) -> ExecutionIndex:
        return ExecutionIndex(self.id, connection=self.connection)

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


def make_queue(settings: Settings, redis: Redis) -> Queue:
    return Queue(
        settings.queue_name, connection=redis, serializer=JSONSerializer, job_class=PlainJob
    )


def retry_policy(settings: Settings) -> Retry | None:
    delays = list(settings.retry_delays)
    if not delays:
        return None
    return Retry(max=len(delays), interval=delays)


@dataclass(frozen=True)
class Submission:
    """One request's validated events, as they join a group."""

    endpoint: Endpoint
    partner_id: int
    partner_name: str
    events: Sequence[QueuedOnsideEvent] | Sequence[QueuedThradEvent]
    received_at: datetime
    request_id: str


def _jobs_of(submissions: Sequence[Submission]) -> dict[tuple[Endpoint, int], list[Submission]]:
    by_job: dict[tuple[Endpoint, int], list[Submission]] = {}
    for submission in submissions:
        by_job.setdefault((submission.endpoint, submission.partner_id), []).append(submission)
    return by_job


def enqueue_group(
    queue: Queue,
    settings: Settings,
    submissions: Sequence[Submission],
    *,
    extra_meta: dict[str, Any] | None = None,
    count_accepted: bool = True,
) -> list[str]:
    """Write a group: one job per (format, partner), all in one MULTI/EXEC.
    Return, for each submission, the id of the job that carries it.

    Each job's rows are stamped with the earliest receive time of the
    requests it holds (true to within the group's wait); its meta lists each
    request's id, receive time and event count, which ``inlet failed show``
    prints. The per-partner accepted counts go in the same transaction.

    Raises RedisError when nothing was queued. A lost reply (connection
    dropped after EXEC was sent) is told apart by the first job's key:
    MULTI/EXEC is all or nothing, so that key says whether the whole group
    was queued.
    """
    started = time.perf_counter()
    retry = retry_policy(settings)
    job_of: dict[tuple[Endpoint, int], str] = {}
    # One connection for the MULTI/EXEC, the lost-reply check and the WAIT
    # (see app/redis_client.py: WAIT counts what its own connection wrote).
    with one_connection(queue.connection) as redis:
        with redis.pipeline(transaction=True) as pipe:
            accepted: dict[str, int] = {}
            for (endpoint, partner_id), parts in _jobs_of(submissions).items():
                partner_name = parts[0].partner_name
                events = (
                    parts[0].events if len(parts) == 1 else [e for p in parts for e in p.events]
                )
                received_at = min(part.received_at for part in parts)
                meta: dict[str, Any] = {
                    "partner": partner_name,
                    "endpoint": endpoint,
                    "events": len(events),
                    "requests": [
                        {
                            "request_id": part.request_id,
                            "received_at": part.received_at.isoformat(),
                            "events": len(part.events),
                        }
                        for part in parts
                    ],
                }
                if extra_meta:
                    meta.update(extra_meta)
                job_id = str(uuid.uuid4())
                noun = "request" if len(parts) == 1 else "requests"
                queue.enqueue_call(
                    JOB_FUNCTIONS[endpoint],
                    args=(partner_id, received_at.isoformat(), events),
                    timeout=settings.job_timeout,
                    # Successful jobs leave nothing behind in Redis; failed ones stay a year.
                    result_ttl=0,
                    retry=retry,
                    # RQ's default description is the repr of every argument: a whole batch.
                    description=(
                        f"{endpoint} batch of {len(events)} events for {partner_name}"
                        f" ({len(parts)} {noun})"
                    ),
                    meta=meta,
                    job_id=job_id,
                    pipeline=pipe,
                )
                job_of[endpoint, partner_id] = job_id
                accepted[partner_name] = accepted.get(partner_name, 0) + len(events)
            job_commands = len(pipe.command_stack)
            if count_accepted:
                for partner_name, amount in accepted.items():
                    stats.add(pipe, partner_name, stats.ACCEPTED, amount)
            try:
                results = pipe.execute(raise_on_error=False)
            except (RedisConnectionError, RedisTimeoutError):
                # The reply is lost, not necessarily the write: the first job's
                # key says which (all of the group was written, or none of it).
                first_job = next(iter(job_of.values()))
                if not redis.exists(queue.job_class.key_for(first_job)):
                    raise
                results = []
        # An aborted EXEC (OOM, lost connection) raised above: nothing was queued.
        # Runtime errors come back in the results instead; the jobs' must raise.
        # (The command stack holds MULTI's commands without MULTI and EXEC.)
        for result in results[:job_commands]:
            if isinstance(result, Exception):
                raise result
        if any(isinstance(result, Exception) for result in results[job_commands:]):
            log.debug("stats not recorded with jobs %s", list(job_of.values()))
        if settings.redis_min_replicas:
            if not results:
                # The reply was lost and the check above ran on a new
                # connection, whose WAIT would vouch for nothing it wrote.
                raise ReplicasNotConfirmed("the write's reply was lost; replicas unconfirmed")
            wait_for_replicas(redis, settings.redis_min_replicas, settings.redis_replica_timeout_ms)
    m = metrics.get()
    seconds = time.perf_counter() - started
    for endpoint in {endpoint for endpoint, _ in job_of}:
        m.enqueue_seconds.labels(endpoint).observe(seconds)
    for submission in submissions:
        m.batch_size.labels(submission.endpoint).observe(len(submission.events))
    return [job_of[s.endpoint, s.partner_id] for s in submissions]


def enqueue_batch(
    queue: Queue,
    settings: Settings,
    *,
    endpoint: Endpoint,
    partner_id: int,
    partner_name: str,
    events: Sequence[QueuedOnsideEvent] | Sequence[QueuedThradEvent],
    received_at: datetime,
    request_id: str = "",
    extra_meta: dict[str, Any] | None = None,
    count_accepted: bool = False,
) -> str:
    """Queue one batch as one job, in one MULTI/EXEC, without waiting for a
    group (replay, the CLI and the benches); return the job id."""
    submission = Submission(endpoint, partner_id, partner_name, events, received_at, request_id)
    (job_id,) = enqueue_group(
        queue, settings, [submission], extra_meta=extra_meta, count_accepted=count_accepted
    )
    return job_id
