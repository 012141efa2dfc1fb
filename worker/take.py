"""Takes: a worker runs several waiting jobs in one transaction.

Group commit makes a job per partner and format of each group, and under
single-event load a group holds only as many events as there are senders
waiting (~16). Run one at a time, such a job cost ~18 ms: ~27 Redis round
trips of RQ's bookkeeping (several of them fsynced writes) and a PostgreSQL
commit, for 16 rows. So a worker that dequeues a small job also takes the
jobs waiting behind it, up to ``INLET_TAKE_MAX_EVENTS`` events in all, and:

- takes them off the queue in one script call that also enters each in
  StartedJobRegistry and marks it started (atomic: another worker never
  sees them, and no crash or Redis failover can leave one taken but
  unrecorded);
- writes the rest of what RQ records for a started job (execution records,
  heartbeat, worker) in one MULTI/EXEC;
- inserts every job's events in one SQL transaction (``run_together``);
- then finishes them all in one MULTI/EXEC: what RQ does for a successful
  job with ``result_ttl=0`` (delete the job and its execution records).

Exactly-once and failures stay as they were:

- The insert is idempotent, so a job run twice lands its rows once. A worker
  killed after the commit but before the jobs are finished leaves them in
  StartedJobRegistry, where maintenance retries them as it would one job.
- If the take's transaction fails, nothing of it was committed, and each job
  is run again on its own through RQ's normal path: a failure is recorded,
  retried and kept in the failed registry for its own job, naming one
  partner, as if the take had never been.
- A worker that dies (or loses its Redis to a failover) right after the
  take's script leaves its jobs in StartedJobRegistry, marked started:
  maintenance retries them as any killed worker's job, once their entry
  expires (INLET_JOB_TIMEOUT + 5 s). (Taken into RQ's intermediate queue
  instead, as a first version did, they would wait there a minute and then
  count as failures; the failover test lost sight of 67 acknowledged events
  that way.)

Only Inlet's own jobs, as app/queue.py makes them, are taken: one of the
job functions, no dependencies, group, repeat, rate limit or kept result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from redis import Redis
from redis.client import Pipeline
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.results import Result
from rq.timeouts import JobTimeoutException
from rq.utils import now

from worker import jobs

if TYPE_CHECKING:
    from worker.runner import InletWorker

log = logging.getLogger("inlet.worker")

# At most this many jobs in a take, whatever their size.
MAX_JOBS = 200

# Takes job ids from the head of the queue (where RQ's LMOVE takes them)
# while their events fit in the room left, and records each as started in
# the same atomic step: an entry "<job id>:<execution id>" in
# StartedJobRegistry (KEYS[2]) expiring at ARGV[4], and the job's status.
# It reads each job's "events" from its meta (JSON: the serializer is
# app.queue's); a job without it (not made by app/queue.py) ends the take
# and stays first. Execution ids are ARGV[5] followed by the job's number.
# The job RQ itself dequeued (ARGV[6]) is moved from RQ's intermediate
# queue (KEYS[3]) into the registry in the same step, as number 0.
_TAKE = """
local taken = {}
local room = tonumber(ARGV[2])
redis.call('LREM', KEYS[3], 1, ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[6] .. ':' .. ARGV[5] .. '0')
redis.call('HSET', ARGV[3] .. ARGV[6], 'status', 'started')
for n = 1, tonumber(ARGV[1]) do
  local id = redis.call('LINDEX', KEYS[1], 0)
  if not id then break end
  local meta = redis.call('HGET', ARGV[3] .. id, 'meta')
  if not meta then break end
  local ok, decoded = pcall(cjson.decode, meta)
  if not ok or type(decoded) ~= 'table' then break end
  local events = tonumber(decoded['events'])
  if not events or events > room then break end
  redis.call('LPOP', KEYS[1])
  redis.call('ZADD', KEYS[2], ARGV[4], id .. ':' .. ARGV[5] .. n)
  redis.call('HSET', ARGV[3] .. id, 'status', 'started')
  room = room - events
  taken[#taken + 1] = id
end
return taken
"""


def events_of(job: Job) -> int | None:
    events = job.meta.get("events")
    return events if isinstance(events, int) and not isinstance(events, bool) else None


def can_share(job: Job) -> bool:
    """Whether ``job`` may run in a take: one of Inlet's plain jobs."""
    from worker.runner import refusal

    return (
        refusal(job) is None
        and events_of(job) is not None
        and job.result_ttl == 0
        and not job._dependency_ids
        and not job.group_id
        and job.repeats_left is None
        and not job.has_rate_limit
    )


class Taker:
    """The take script of one worker's connection."""

    def __init__(self, connection: Redis, max_events: int) -> None:
        self.max_events = max_events
        self._script = connection.register_script(_TAKE)

    def take(self, job: Job, queue: Queue, ttl: int) -> list[tuple[str, str]]:
        """Record ``job`` (just dequeued by RQ) as started and take the waiting
        jobs that fit with it off the queue, recorded as started too (entries
        that expire in ``ttl`` s); return each one's (job id, execution id),
        ``job``'s first."""
        first = events_of(job)
        assert first is not None  # can_share(job)
        room = self.max_events - first
        prefix = uuid4().hex[:24]
        ids = self._script(
            keys=[queue.key, job.started_job_registry.key, queue.intermediate_queue_key],
            args=[
                MAX_JOBS - 1,
                room,
                Job.redis_job_namespace_prefix,
                time.time() + ttl,
                prefix,
                job.id,
            ],
        )
        return [
            (i.decode() if isinstance(i, bytes) else str(i), f"{prefix}{n}")
            for n, i in enumerate([job.id, *ids])
        ]


def execute_take(worker: InletWorker, first: Job, queue: Queue) -> None:
    """Run ``first`` and the jobs waiting behind it that fit: see the module."""
    connection = worker.connection
    ttl = worker.get_heartbeat_ttl(first)
    assert worker.taker is not None
    (_, first_execution), *more = worker.taker.take(first, queue, ttl)
    fetched = worker.job_class.fetch_many(
        [job_id for job_id, _ in more], connection=connection, serializer=worker.serializer
    )
    shared: list[tuple[Job, str]] = [(first, first_execution)]
    alone: list[Job] = []
    registry = first.started_job_registry.key
    with connection.pipeline() as pipe:
        for (job_id, execution_id), job in zip(more, fetched, strict=True):
            if job is not None and can_share(job):
                shared.append((job, execution_id))
                continue
            # Gone since it was taken (deleted by hand: nothing to run, as RQ
            # skips it), or not fit to share: run on its own, RQ's way.
            pipe.zrem(registry, f"{job_id}:{execution_id}")
            if job is not None:
                alone.append(job)
        executions: list[Execution] = []
        # What RQ's prepare_execution and prepare_job_execution write, for each
        # job. (Not RQ's job.heartbeat: prepare_for_execution's HSET sets the
        # same last_heartbeat.)
        for job, chosen in shared:
            execution = record_execution(job, chosen, ttl, pipe, worker.name)
            worker.executions[execution.id] = execution
            executions.append(execution)
            job.prepare_for_execution(worker.name, pipeline=pipe)
            pipe.persist(job.key)
        # The worker's index of its executions, all of the take's in one SADD.
        index = executions[0].worker_executions_key
        pipe.sadd(index, *(execution.composite_key for execution in executions))
        pipe.expire(index, ttl + 60)
        worker.set_state("busy", pipeline=pipe)
        worker.heartbeat(ttl, pipeline=pipe)
        pipe.execute()

    jobs_ = [job for job, _ in shared]
    started = now()
    timeout = max(int(job.timeout or Queue.DEFAULT_TIMEOUT) for job in jobs_)
    try:
        with worker.death_penalty_class(timeout, JobTimeoutException, job_id=first.id):
            jobs.run_together(jobs_)
    except Exception as exc:
        log.warning(
            "take of %d jobs failed (%s); running each on its own", len(jobs_), type(exc).__name__
        )
        run_alone(worker, jobs_, executions, queue, ttl)
    else:
        worker.finish_take(jobs_, executions, started)
    for job in alone:
        worker.execute_single(job, queue)


def record_execution(
    job: Job, execution_id: str, ttl: int, pipe: Pipeline, worker_name: str
) -> Execution:
    """RQ's ``Execution.create``, for an execution id the take's script chose:
    its StartedJobRegistry entry is already written, under that id, by the
    script, and the caller adds it to the worker's index with the take's others."""
    execution = Execution(
        id=execution_id, job_id=job.id, connection=job.connection, worker_name=worker_name
    )
    execution._job = job
    execution.save(ttl=ttl, pipeline=pipe)
    ExecutionRegistry(job_id=job.id, connection=pipe).add(
        execution=execution, ttl=ttl, pipeline=pipe
    )
    return execution


def run_alone(
    worker: InletWorker,
    shared: Sequence[Job],
    executions: Sequence[Execution],
    queue: Queue,
    ttl: int,
) -> None:
    pending = list(zip(shared, executions, strict=True))
    for n, (job, execution) in enumerate(pending):
        renew(worker, pending[n:], ttl)
        worker.perform_job(job, queue, execution)
    worker.set_state("idle")


def renew(worker: InletWorker, pending: Sequence[tuple[Job, Execution]], ttl: int) -> None:
    """Before the first of ``pending`` runs on its own: the take's records of
    the jobs still to run, good for ``ttl`` s from now.

    They were written ``ttl`` s long at the take, and the jobs before may
    have run for longer (a database that came back slowly). Every pending
    job's StartedJobRegistry entry is renewed (added again if it expired), so
    that no other worker's maintenance takes one for abandoned while it
    waits its turn. The first job's execution record is written whole
    again: RQ reads it back when the job finishes (``created_at`` included),
    and a heartbeat alone (an HSET of one field) would recreate an expired
    record as a hash RQ can't read, failing a job whose rows were stored.
    """
    job, execution = pending[0]
    execution.last_heartbeat = now()
    registry = job.started_job_registry
    with worker.connection.pipeline() as pipe:
        execution.save(ttl=ttl, pipeline=pipe)
        ExecutionRegistry(job_id=job.id, connection=pipe).add(
            execution=execution, ttl=ttl, pipeline=pipe
        )
        pipe.sadd(execution.worker_executions_key, execution.composite_key)
        pipe.expire(execution.worker_executions_key, ttl + 60)
        expires = time.time() + ttl
        pipe.zadd(registry.key, {e.composite_key: expires for _, e in pending})
        pipe.execute()


def finish(
    worker: InletWorker, shared: Sequence[Job], executions: Sequence[Execution], started: Any
) -> None:
    """What RQ writes for a successful job with result_ttl=0, for every job, in one MULTI/EXEC.

    RQ's own ``Job.delete`` reads each job's status and executions back
    first (several round trips a job); here they are known. What RQ does
    job by job (``Execution.delete``, the job's keys, the worker's count) is
    done once for the take: one DEL of every job's keys and execution, one
    ZREM of their StartedJobRegistry entries, one SREM of the worker's index,
    one HINCRBY. (An execution's ExecutionRegistry entry goes with the
    registry's key.)
    """
    ended = now()
    keys: list[str] = []
    for job, execution in zip(shared, executions, strict=True):
        job.ended_at = ended
        job._status = JobStatus.FINISHED
        keys += (
            job.key,
            job.dependents_key,
            job.dependencies_key,
            Result.get_key(job.id),
            ExecutionRegistry(job_id=job.id, connection=worker.connection).key,
            execution.key,
        )
        worker.executions.pop(execution.id, None)
    members = [execution.composite_key for execution in executions]
    with worker.connection.pipeline() as pipe:
        pipe.delete(*keys)
        pipe.zrem(shared[0].started_job_registry.key, *members)
        pipe.srem(executions[0].worker_executions_key, *members)
        # RQ's increment_successful_job_count, by the take's count at once.
        pipe.hincrby(worker.key, "successful_job_count", len(shared))
        worker.increment_total_working_time(ended - started, pipe)
        worker.set_state("idle", pipeline=pipe)
        pipe.execute()
