"""The worker process: an RQ worker tuned for small, fast, idempotent jobs."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import SimpleWorker, worker_registration
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.registry import clean_registries
from rq.utils import current_timestamp, now

from app import partitions
from app.ops import metrics
from app.queue import JOB_FUNCTIONS as QUEUE_JOB_FUNCTIONS
from app.queue import JSONSerializer, PlainJob, make_queue, make_redis
from app.runtime import collector_tuned
from app.settings import Settings
from worker import context, take
from worker.enrich import open_geo_database

log = logging.getLogger("inlet.worker")

# How long after a job's timeout its StartedJobRegistry entry expires. A job
# that overruns its timeout is stopped by its own worker, so an entry still
# there past timeout + grace belongs to a worker that died (SIGKILL, OOM,
# lost host), and the next maintenance pass of any live worker retries it.
ABANDONED_GRACE_SECONDS = 5
# An idle worker wakes every WORKER_TTL - 15 = 1 s (RQ's dequeue timeout) and
# runs maintenance when MAINTENANCE_INTERVAL has passed.
WORKER_TTL = 16
MAINTENANCE_INTERVAL = 2
# How long a worker whose loop stopped on a Redis error waits before a new loop.
RESTART_DELAY = 1.0
# Partition maintenance (app/partitions.py): at most once an hour across all
# workers, and again a minute after a failed pass. Days are made a week ahead,
# so an hour's pace (or a day without workers) loses nothing.
PARTITIONS_LOCK = "inlet:maintenance:partitions"
PARTITIONS_INTERVAL = 3600
PARTITIONS_RETRY = 60


# The only functions a worker runs. A job names its function as a string,
# and stock RQ imports and calls whatever it names: anyone who can write to
# Redis could otherwise run os.system on the worker (the JSON serializer
# keeps pickle out, but not that).
ALLOWED_FUNCTIONS = frozenset(QUEUE_JOB_FUNCTIONS.values())


class ForeignJob(Exception):
    """A job Inlet did not make: refused, not run."""


def refusal(job: Job) -> str | None:
    """Why the worker must not run ``job``, or None if it is one of Inlet's own.

    Callbacks name functions to import and call too, and webhooks make the
    worker send requests to any address: Inlet never sets either, so a job
    that asks for one did not come from Inlet.
    """
    try:
        func_name, instance = job.func_name, job.instance
    except Exception as exc:  # the job's data can't even be read
        return f"its data can't be read ({type(exc).__name__})"
    if func_name not in ALLOWED_FUNCTIONS or instance is not None:
        allowed = ", ".join(sorted(ALLOWED_FUNCTIONS))
        return f"{func_name!r} is not one of Inlet's job functions ({allowed})"
    callbacks = [
        name
        for name in (
            job._success_callback_name,
            job._failure_callback_name,
            job._stopped_callback_name,
        )
        if name
    ]
    if callbacks:
        return f"it asks for callbacks ({', '.join(map(repr, callbacks))}), which Inlet never sets"
    if job.webhooks:
        return "it asks for webhooks, which Inlet never sets"
    return None


class _QuietMaintenance(logging.Filter):
    """Maintenance runs every few seconds; its INFO lines would drown the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "cleaning" not in record.getMessage() or record.levelno > logging.INFO


class InletWorker(SimpleWorker):
    """Runs jobs in-process: no fork per job (a fork costs milliseconds, and
    keeps no connection pool), one engine for the worker's whole life.

    Two parts of RQ's maintenance are replaced, because both made a killed
    worker's batch wait for minutes:

    - Abandoned jobs. Stock RQ waits the job monitoring interval plus a
      hard-coded 60 s after the last heartbeat, then up to ten minutes for a
      maintenance pass, under a lock that lives 15 minutes if its holder
      dies. Here an entry expires INLET_JOB_TIMEOUT + 5 s after the job
      started, and any live worker's pass (every 2 s, under a lock that
      simply expires) retries it.
    - Retry delays. RQ's scheduler runs in a forked process under a lock
      that outlives a killed worker by 60 s (and the fork outlives it
      altogether). Here the maintenance pass moves due retries back to the
      queue itself.
    """

    # RQ saves a job back when it finishes; PlainJob skips zlib-compressing
    # the whole batch again only for the job to be deleted.
    job_class = PlainJob
    # Set by SIGTERM/SIGINT: RQ records a stop only when one comes mid-job.
    stop_asked = False

    def request_stop(self, signum: int, frame: Any) -> None:
        self.stop_asked = True
        super().request_stop(signum, frame)

    def __init__(self, *args: Any, take_events: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Takes (worker/take.py) need the intermediate queue, i.e. one queue.
        self.taker = (
            take.Taker(self.connection, take_events)
            if take_events > 1 and len(self.queues) == 1
            else None
        )

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run ``job`` in a take (worker/take.py), with the small jobs waiting
        behind it when it is small; a job that can't share, RQ's own way."""
        if self.taker is not None and take.can_share(job):
            take.execute_take(self, job, queue)
        else:
            self.execute_single(job, queue)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's heartbeat (three commands), in one round trip instead of three."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipeline=pipe)
            pipe.execute()

    def execute_single(self, job: Job, queue: Queue) -> None:
        super().execute_job(job, queue)

    def finish_take(
        self, shared: Sequence[Job], executions: Sequence[Execution], started: datetime
    ) -> None:
        take.finish(self, shared, executions, started)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        reason = refusal(job)
        if reason is None:
            return bool(super().perform_job(job, queue, execution))
        self.refuse_job(job, queue, execution, reason)
        return False

    def refuse_job(self, job: Job, queue: Queue, execution: Execution, reason: str) -> None:
        """Straight to the failed registry: no function, no callback, no webhook, no retry."""
        log.error("job %s refused, not run: %s", job.id, reason)
        job.webhooks = []
        job.retries_left = None
        self.prepare_job_execution(job, remove_from_intermediate_queue=len(self.queues) == 1)
        job.ended_at = now()
        error = ForeignJob(f"refused, not run: {reason}")
        self.handle_job_failure(
            job,
            queue,
            started_job_registry=queue.started_job_registry,
            exc_string="".join(traceback.format_exception_only(error)),
            execution=execution,
        )

    def teardown(self) -> None:
        if self.stop_asked:
            # The stop signal interrupts whatever Redis read was under way (RQ
            # raises from the handler), and redis-py's Sentinel connections
            # don't disconnect on that: the next command on the connection
            # would read the interrupted one's reply. Idle connections are
            # dropped, so teardown's own commands start clean.
            self.connection.connection_pool.disconnect(inuse_connections=False)
        try:
            super().teardown()
        except RedisError:
            # RQ's teardown unsubscribes only after registering the death in
            # Redis; when that fails its pub/sub thread would live on (and
            # retry forever) beside the next work loop's.
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()
                self.pubsub_thread.join(timeout=1)
            raise

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        timeout = job.timeout if job.timeout and job.timeout > 0 else 180
        return int(timeout) + ABANDONED_GRACE_SECONDS

    def clean_registries(self) -> None:
        for queue in self.queues:
            # Never released: its expiry paces maintenance across all workers,
            # and a worker killed mid-pass blocks the others for 2 s at most.
            lock = f"inlet:maintenance:{queue.name}"
            if self.connection.set(lock, self.name, nx=True, px=MAINTENANCE_INTERVAL * 1000):
                clean_registries(queue, self._exc_handlers)
                worker_registration.clean_worker_registry(queue)
                queue.intermediate_queue.cleanup(self, queue)
                promote_due_retries(queue)
        maintain_partitions(self.connection)
        # RQ declares it as None at first, so mypy infers that type for it.
        self.last_cleaned_at = now()  # type: ignore[assignment]


def maintain_partitions(redis: Redis) -> bool:
    """Run the hourly partition maintenance if it is due; return whether it ran.

    The first worker to start runs it at once; after that, whichever worker's
    pass finds the lock expired. A failure is logged and retried a minute
    later: a worker keeps draining the queue either way.
    """
    try:
        ctx = context.current()
    except RuntimeError:  # a worker without a database context runs no jobs either
        return False
    if ctx.engine.dialect.name != "postgresql":
        return False
    if not redis.set(PARTITIONS_LOCK, "1", nx=True, ex=PARTITIONS_INTERVAL):
        return False
    try:
        dropped = partitions.maintain(ctx.engine, ctx.settings)
    except Exception:
        log.exception("partition maintenance failed; retrying in %s s", PARTITIONS_RETRY)
        redis.set(PARTITIONS_LOCK, "1", ex=PARTITIONS_RETRY)
        return False
    for partition in dropped:
        log.info("partition maintenance dropped %s", partition.describe())
    return True


def promote_due_retries(queue: Queue) -> int:
    """Move jobs whose retry delay has passed back onto the queue."""
    registry = queue.scheduled_job_registry
    job_ids = registry.get_jobs_to_schedule(current_timestamp())
    if not job_ids:
        return 0
    jobs = Job.fetch_many(job_ids, connection=queue.connection, serializer=queue.serializer)
    with queue.connection.pipeline() as pipe:
        for job_id, job in zip(job_ids, jobs, strict=True):
            if job is not None:
                queue._enqueue_job(job, pipeline=pipe)
            registry.remove(job_id, pipeline=pipe)
        pipe.execute()
    return len(job_ids)


def build_worker(settings: Settings, *, name: str | None = None) -> InletWorker:
    redis = make_redis(settings.redis_url)
    queue = make_queue(settings, redis)
    return InletWorker(
        [queue],
        connection=redis,
        serializer=JSONSerializer,
        name=name,
        worker_ttl=WORKER_TTL,
        maintenance_interval=MAINTENANCE_INTERVAL,
        take_events=settings.take_max_events,
    )


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    """Run a worker until stopped (or, with ``burst``, until the queue is empty).

    RQ's work loop survives Redis trouble only while it waits for a job; a
    connection lost anywhere else (a heartbeat, maintenance, saving a job's
    outcome) makes it quit. When Redis restarts or fails over that would end
    the process, so the loop is started again here, on a new worker, until a
    stop is requested. A job whose outcome could not be saved is still in
    StartedJobRegistry: the maintenance pass retries it (ABANDONED_GRACE_SECONDS).
    """
    metrics.configure(settings.metrics_dir)
    context.open_context(settings)
    open_geo_database(settings.geoip_database)
    logging.getLogger("rq.worker").addFilter(_QuietMaintenance())
    try:
        with collector_tuned():
            return _work_until_stopped(settings, burst)
    finally:
        context.close_context()
        metrics.process_exited()


def _work_until_stopped(settings: Settings, burst: bool) -> bool:
    """RQ's work loop on a new worker each time it stops, until a stop is asked."""
    worked = False
    while True:
        worker: InletWorker | None = None
        try:
            worker = build_worker(settings)
            worked = worker.work(burst=burst, logging_level=settings.log_level) or worked
        except RedisError as exc:  # at start, or in RQ's teardown
            log.warning("worker: Redis unavailable: %s: %s", type(exc).__name__, exc)
        if burst or (worker is not None and worker.stop_asked):
            return worked
        log.warning("worker: the work loop stopped; starting it again in %s s", RESTART_DELAY)
        try:
            time.sleep(RESTART_DELAY)
        except StopRequested:  # SIGTERM while waiting, through RQ's handler
            return worked
