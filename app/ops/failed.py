"""Failed jobs: list, show, requeue, delete. Shared by ``inlet failed`` and ``/admin``.

A failed job is a batch in RQ's failed registry, intact (its events are the
job's arguments). When and how often it failed comes from two places: the
meta that ``worker.jobs.batch_job`` records on every failed attempt (RQ keeps
no result for attempts it retries) and RQ's own results (the only trace of a
job whose worker was killed). Requeueing is safe whatever part of the batch
landed before: the insert skips every (partner, event_id) already stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.worker import Worker

MAX_ERROR_LINE = 300
_FAILURE_TYPES = {"FAILED", "STOPPED", "MAX_RETRIES_EXCEEDED"}


class FailedJobError(Exception):
    """The job is unknown or not failed (e.g. someone requeued it already)."""


@dataclass(frozen=True)
class FailedJob:
    job_id: str
    partner: str | None
    endpoint: str | None
    events: int | None
    first_failure: datetime | None
    last_failure: datetime | None
    attempts: int
    error: str
    traceback: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "partner": self.partner,
            "endpoint": self.endpoint,
            "events": self.events,
            "first_failure": _iso(self.first_failure),
            "last_failure": _iso(self.last_failure),
            "attempts": self.attempts,
            "error": self.error,
        }


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def error_line(traceback: str) -> str:
    """The exception's own line: the first line after the last stack frame.

    The very last line is no good: SQLAlchemy ends with a link, and its
    "[parameters: ...]" lines hold event data, which a one-line summary must
    not show.
    """
    lines = traceback.rstrip().splitlines()
    start = 0
    for index, line in enumerate(lines):
        if line.startswith("  File "):
            start = index + 1
    for line in lines[start:]:
        if line and not line.startswith(" "):
            return line[:MAX_ERROR_LINE]
    return (lines[-1] if lines else "")[:MAX_ERROR_LINE]


def _describe(job: Job, with_traceback: bool = False) -> FailedJob:
    meta = dict(job.meta or {})
    times = [
        datetime.fromisoformat(t)
        for t in (meta.get("first_failed_at"), meta.get("last_failed_at"))
        if t
    ]
    traceback = ""
    failures = [r for r in job.results() if r.type.name in _FAILURE_TYPES]
    for result in failures:
        times.append(_aware(result.created_at))
    if failures:
        traceback = failures[0].exc_string or ""  # results() is newest first
    if not traceback:
        traceback = meta.get("last_error") or ""
    return FailedJob(
        job_id=job.id,
        partner=meta.get("partner"),
        endpoint=meta.get("endpoint"),
        events=meta.get("events"),
        first_failure=min(times) if times else None,
        last_failure=max(times) if times else None,
        # Attempts the job wrapper saw fail; at least 1 for a job killed mid-run.
        attempts=max(int(meta.get("attempts") or 0), 1),
        error=error_line(traceback) if traceback else "(no error recorded)",
        traceback=traceback if with_traceback else "",
        meta=meta,
    )


def describe(job: Job) -> FailedJob:
    """A failed job's summary (its error line, attempts, times), without the traceback."""
    return _describe(job)


def list_failed(
    queue: Queue, partner: str | None = None, limit: int | None = None
) -> list[FailedJob]:
    """The jobs in the failed registry, newest failure first (the newest ``limit`` only).

    The registry is ordered by expiry, i.e. failure time plus a constant TTL,
    in whole seconds, so its last entries are the most recent failures (to
    the second: which of several failures in the same second are kept is
    arbitrary).
    """
    registry = FailedJobRegistry(queue=queue)
    ids = registry.get_job_ids(0, limit - 1, desc=True) if limit else registry.get_job_ids()
    jobs = Job.fetch_many(ids, connection=queue.connection, serializer=queue.serializer)
    found = [_describe(job) for job in jobs if job is not None]
    if partner is not None:
        found = [job for job in found if job.partner == partner]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda job: job.last_failure or epoch, reverse=True)


def _fetch_failed(queue: Queue, job_id: str) -> Job:
    if job_id not in FailedJobRegistry(queue=queue):
        raise FailedJobError(f"no failed job {job_id!r} (requeued or deleted already?)")
    job = queue.fetch_job(job_id)
    if job is None:
        raise FailedJobError(f"failed job {job_id!r} has expired from Redis")
    return job


def resolve_prefix(queue: Queue, prefix: str) -> str:
    """The failed job whose id is ``prefix`` or starts with it, if exactly one does.

    Job ids are UUIDs: the first 8 characters, as a person copies them from
    ``inlet failed list``, almost always name one job.
    """
    registry = FailedJobRegistry(queue=queue)
    if prefix in registry:  # a whole id: no need to read the registry
        return prefix
    ids = registry.get_job_ids()
    matches = [job_id for job_id in ids if job_id.startswith(prefix)] if prefix else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise FailedJobError(f"no failed job {prefix!r} (requeued or deleted already?)")
    shown = ", ".join(sorted(matches)[:5]) + (", ..." if len(matches) > 5 else "")
    raise FailedJobError(
        f"{len(matches)} failed jobs start with {prefix!r} ({shown}): give more of the id"
    )


def show_failed(queue: Queue, job_id: str, first_events: int = 5) -> tuple[FailedJob, list[Any]]:
    """The job (``job_id`` may be an unambiguous prefix) with its full traceback, and
    the first events of its batch."""
    job = _fetch_failed(queue, resolve_prefix(queue, job_id))
    events = job.args[2] if len(job.args) > 2 and isinstance(job.args[2], list) else []
    return _describe(job, with_traceback=True), events[:first_events]


def requeue(queue: Queue, job_id: str, retries: int | None) -> None:
    """Put a failed job back on the queue, with a fresh set of retries."""
    job = _fetch_failed(queue, job_id)
    # Its retries were spent; give it the whole INLET_RETRY_DELAYS schedule again.
    job.retries_left = retries or None
    job.meta["requeued"] = int(job.meta.get("requeued") or 0) + 1
    registry = FailedJobRegistry(queue=queue)
    # RQ's own requeue removes the job from the registry, then enqueues it in
    # a second step: a Redis failure in between loses the batch from both.
    # Here both happen in one MULTI/EXEC, watched so that two people
    # requeueing the same job at once queue it once.
    for _ in range(10):
        with queue.connection.pipeline() as pipe:
            try:
                pipe.watch(registry.key)
                if pipe.zscore(registry.key, job.id) is None:
                    raise FailedJobError(f"failed job {job_id!r} was requeued by someone else")
                pipe.multi()
                pipe.zrem(registry.key, job.id)
                job.started_at = job.ended_at = None
                queue._enqueue_job(job, pipeline=pipe)
                pipe.execute()
                return
            except WatchError:
                continue  # the registry changed (another job failed, say): look again
    raise FailedJobError(f"failed job {job_id!r} could not be requeued: the registry kept changing")


def requeue_all(queue: Queue, retries: int | None, partner: str | None = None) -> list[str]:
    """Requeue every failed job (of one partner); return the ids requeued."""
    done = []
    for failed in list_failed(queue, partner):
        try:
            requeue(queue, failed.job_id, retries)
        except FailedJobError:
            continue  # someone else got to it first
        done.append(failed.job_id)
    return done


def delete(queue: Queue, job_id: str) -> None:
    """Drop a failed job and its batch for good."""
    job = _fetch_failed(queue, job_id)
    FailedJobRegistry(queue=queue).remove(job, delete_job=True)


@dataclass(frozen=True)
class QueueState:
    depth: int
    oldest_age_seconds: float | None
    scheduled: int
    failed: int
    workers: int


def queue_state(queue: Queue, now: datetime | None = None) -> QueueState:
    """What is waiting, since when, what failed, and who is working on it."""
    now = now or datetime.now(UTC)
    oldest_age = None
    # (offset, length): the first job is (0, 1). RQ 3 answers [] to a length of 0.
    oldest = queue.get_job_ids(0, 1)
    if oldest:
        job = queue.fetch_job(oldest[0])
        if job is not None and job.enqueued_at is not None:
            oldest_age = max((now - _aware(job.enqueued_at)).total_seconds(), 0.0)
    redis: Redis = queue.connection
    return QueueState(
        depth=queue.count,
        oldest_age_seconds=oldest_age,
        scheduled=ScheduledJobRegistry(queue=queue).count,
        failed=FailedJobRegistry(queue=queue).count,
        workers=Worker.count(connection=redis, queue=queue),
    )
