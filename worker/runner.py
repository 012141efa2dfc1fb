"""The worker process: an RQ worker tuned for small, fast, idempotent jobs."""

from __future__ import annotations

import logging

from rq import SimpleWorker
from rq.job import Job

from app.queue import JSONSerializer, PlainJob, make_queue, make_redis
from app.settings import Settings
from worker import context

log = logging.getLogger("inlet.worker")

# How long after a job's timeout its StartedJobRegistry entry expires. A job
# that overruns its timeout is stopped by its own worker, so an entry still
# there past timeout + grace belongs to a worker that died (SIGKILL, OOM,
# lost host), and the next maintenance pass of any live worker retries it.
ABANDONED_GRACE_SECONDS = 5
# Idle workers heartbeat every WORKER_TTL - 15 s and run maintenance (which
# is where abandoned jobs are found) at most every MAINTENANCE_INTERVAL.
WORKER_TTL = 20
MAINTENANCE_INTERVAL = 5


class _QuietMaintenance(logging.Filter):
    """Maintenance runs every few seconds; its INFO lines would drown the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "cleaning" not in record.getMessage() or record.levelno > logging.INFO


class InletWorker(SimpleWorker):
    """Runs jobs in-process: no fork per job (a fork costs milliseconds, and
    keeps no connection pool), one engine for the worker's whole life.

    RQ's stock abandoned-job detection waits the job monitoring interval plus
    a hard-coded 60 s after the last heartbeat, then up to ten minutes for a
    maintenance pass: a killed worker's batch sat for ten minutes or more.
    Here it waits the job timeout plus a few seconds.
    """

    # RQ saves a job back when it finishes; PlainJob skips zlib-compressing
    # the whole batch again only for the job to be deleted.
    job_class = PlainJob

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        timeout = job.timeout if job.timeout and job.timeout > 0 else 180
        return int(timeout) + ABANDONED_GRACE_SECONDS


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
    )


def run_worker(settings: Settings, *, burst: bool = False, with_scheduler: bool = True) -> bool:
    """Run a worker until stopped (or, with ``burst``, until the queue is empty)."""
    context.open_context(settings)
    logging.getLogger("rq.worker").addFilter(_QuietMaintenance())
    try:
        worker = build_worker(settings)
        return worker.work(
            burst=burst,
            with_scheduler=with_scheduler,
            logging_level=settings.log_level,
        )
    finally:
        context.close_context()
