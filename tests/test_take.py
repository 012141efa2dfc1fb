"""Takes: a worker runs the small jobs waiting behind one in one transaction (worker/take.py)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from redis import Redis
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy.engine import Engine

from app import queue as q
from app.credentials.api_keys import ApiKeyStore, create_api_key
from app.credentials.partners import NewPartner, create_partner
from app.ops import deletion
from app.partitions import period_starts
from app.settings import Settings
from tests.events import onside_event, thrad_event
from tests.queued import RECEIVED_AT, enqueue, event_ids, onside_rows, queued_jobs, thrad_rows
from worker import context, jobs, take
from worker.runner import InletWorker, build_worker


def job_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "inlet.jobs"]


def test_small_jobs_of_two_partners_and_both_formats_land_in_one_take(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    drain: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each row under its own job's partner and job id; each job's counts its own."""
    other = create_partner(engine, settings.secret_key, "globex")
    created = create_api_key(engine, settings.secret_key, "globex", "k")
    key = ApiKeyStore(engine, settings.secret_key).check(created.api_key)
    assert key is not None
    jobs = {
        enqueue(settings, redis, partner, [onside_event(1), onside_event(2)]): (partner.id, 2),
        enqueue(settings, redis, other, [onside_event(1), onside_event(3)]): (other.id, 2),
        # A repeat of partner's event 2 (a duplicate inside the take) and a new one.
        enqueue(settings, redis, partner, [onside_event(2), onside_event(4)]): (partner.id, 1),
        enqueue(
            settings,
            redis,
            other,
            [thrad_event(api_key_id=key.api_key_id, event_id="e1", ingest_id=str(uuid.uuid4()))],
            endpoint="thrad",
        ): (other.id, 1),
    }
    with caplog.at_level(logging.INFO, logger="inlet.jobs"):
        drain()
    lines = job_lines(caplog)
    assert {line["jobs_in_take"] for line in lines} == {4}, "the jobs ran apart: no take"
    assert {line["job_id"]: (line["partner_id"], line["inserted"]) for line in lines} == jobs
    rows = onside_rows(engine)
    assert sorted((r.partner_id, str(r.event_id)[-1]) for r in rows) == sorted(
        [(partner.id, "1"), (partner.id, "2"), (partner.id, "4"), (other.id, "1"), (other.id, "3")]
    )
    for row in rows:
        assert jobs[row.job_id][0] == row.partner_id
    (thrad,) = thrad_rows(engine)
    assert thrad.partner_id == other.id and jobs[thrad.job_id][0] == other.id
    assert queued_jobs(redis) == 0  # every job finished and deleted, as RQ does with result_ttl=0


def test_a_take_leaves_rq_as_one_job_at_a_time_would(
    settings: Settings, redis: Redis, partner: NewPartner, drain: Callable[..., None]
) -> None:
    for n in range(5):
        enqueue(settings, redis, partner, [onside_event(n)])
    queue = q.make_queue(settings, redis)
    context.open_context(settings)
    worker = build_worker(settings)
    assert worker.work(burst=True, with_scheduler=False)
    assert queue.count == 0
    assert redis.llen(queue.intermediate_queue_key) == 0
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert redis.keys("rq:execution*") == []
    assert redis.keys("rq:job:*") == []
    assert int(redis.hget(worker.key, "successful_job_count") or 0) == 5


def test_a_take_holds_at_most_its_limit_of_events(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    small = settings.replace(take_max_events=5)
    for n in range(0, 6, 2):
        enqueue(small, redis, partner, [onside_event(n), onside_event(n + 1)])
    enqueue(small, redis, partner, [onside_event(n) for n in range(10, 15)])
    with caplog.at_level(logging.INFO, logger="inlet.jobs"):
        drain(small)
    takes = [line.get("jobs_in_take", 1) for line in job_lines(caplog)]
    # 2 + 2 events, then 2 (the next job's 5 would not fit), then 5 alone.
    assert takes == [2, 2, 1, 1]


def test_a_failing_job_fails_alone_and_the_rest_of_its_take_lands(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    drain: Callable[..., None],
) -> None:
    """The take's transaction fails; each job then runs on its own, as RQ would run it."""
    ghost = NewPartner(id=999_999, name="ghost", username="", password="")
    good = [enqueue(settings, redis, partner, [onside_event(n)]) for n in range(3)]
    bad = enqueue(settings.replace(retry_delays=()), redis, ghost, [onside_event(9)])
    good.append(enqueue(settings, redis, partner, [onside_event(3)]))
    drain()
    assert event_ids(engine) == [onside_event(n)["event_id"] for n in range(4)]
    registry = FailedJobRegistry(queue=q.make_queue(settings, redis))
    assert registry.get_job_ids() == [bad]
    job = registry.get_queue().fetch_job(bad)
    assert job is not None and job.meta["partner"] == "ghost"
    assert job.meta["attempts"] == 1  # the take's try is no attempt of its own
    assert "IntegrityError" in (job.latest_result().exc_string or "")
    assert job.args[2] == [onside_event(9)]


def test_jobs_run_alone_after_the_take_outlived_their_records_still_finish(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The take fails; its jobs then run one by one, and the first ones run
    longer than the take's records of the others last (a database that came
    back slowly). Each job still waits its turn recorded as started, so that
    no other worker's maintenance takes it for abandoned, and finishes as a
    success: its execution record is whole again when RQ reads it back."""
    for n in range(4):
        enqueue(settings.replace(retry_delays=()), redis, partner, [onside_event(n)])
    context.open_context(settings)
    worker = build_worker(settings)
    queue = q.make_queue(settings, redis)
    started = StartedJobRegistry(queue=queue)

    def take_fails(*_: Any) -> None:
        raise ConnectionError("the database is gone")

    monkeypatch.setattr(jobs, "run_together", take_fails)
    perform = worker.perform_job
    waited: list[list[str]] = []

    def perform_then_time_passes(job: Any, queue_: Any, execution: Any) -> bool:
        # As the job starts: nothing of the take is past its expiry.
        waited.append(started.get_expired_job_ids(timestamp=time.time()))
        assert redis.hget(execution.key, "created_at") is not None
        ran = perform(job, queue_, execution)
        # While it ran, the take's records of every job still waiting expired.
        for member in redis.zrange(started.key, 0, -1):
            redis.zadd(started.key, {member: time.time() - 1}, xx=True)
        for key in redis.keys("rq:execution:*"):
            redis.delete(key)
        return bool(ran)

    monkeypatch.setattr(worker, "perform_job", perform_then_time_passes)
    worker.work(burst=True, with_scheduler=False)
    assert waited == [[], [], [], []]
    assert FailedJobRegistry(queue=queue).get_job_ids() == []
    assert event_ids(engine) == [onside_event(n)["event_id"] for n in range(4)]
    assert queued_jobs(redis) == 0


class Killed(BaseException):
    """Stands for a worker killed at some point of a take."""


def killed(*_: Any) -> None:
    raise Killed


def four_jobs_and_a_worker(settings: Settings, redis: Redis, partner: NewPartner) -> InletWorker:
    # Retried at once (no delay), as soon as maintenance finds them abandoned.
    quick = settings.replace(retry_delays=(0,))
    for n in range(4):
        enqueue(quick, redis, partner, [onside_event(n)])
    context.open_context(settings)
    return build_worker(settings)


def retry_the_abandoned_and_drain(
    settings: Settings, redis: Redis, engine: Engine, drain: Callable[..., None]
) -> None:
    """Past their entries' expiry, a live worker's maintenance retries the jobs:
    every event lands, once."""
    queue = q.make_queue(settings, redis)
    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + settings.job_timeout + 60)
    assert queue.count == 4
    drain()
    assert event_ids(engine) == [onside_event(n)["event_id"] for n in range(4)]
    assert queued_jobs(redis) == 0


def test_a_take_cut_off_after_its_commit_is_rerun_and_lands_once(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    drain: Callable[..., None],
) -> None:
    worker = four_jobs_and_a_worker(settings, redis, partner)
    worker.finish_take = killed  # type: ignore[method-assign,assignment]
    # RQ's work loop quits on an exception it does not know, leaving the jobs as they are.
    worker.work(burst=True, with_scheduler=False)
    assert len(event_ids(engine)) == 4  # committed, but the jobs never finished
    started = StartedJobRegistry(queue=q.make_queue(settings, redis))
    assert len(started.get_job_ids(cleanup=False)) == 4
    retry_the_abandoned_and_drain(settings, redis, engine, drain)


def test_a_take_across_a_dedup_period_boundary_lands_each_event_once(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    drain: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Jobs received either side of a period's start share no key period: each
    side is moved on its own, and a repeat across the boundary still lands once."""
    boundary, _ = period_starts(RECEIVED_AT, settings.dedup_days)
    before, after = boundary - timedelta(seconds=1), boundary + timedelta(seconds=1)

    def send(numbers: list[int], when: datetime) -> str:
        events = [onside_event(n) for n in numbers]
        return enqueue(settings, redis, partner, events, received_at=when)

    jobs = {
        send([1, 2], before): 2,
        send([3], before): 1,
        # Event 1 again, a second later but in the next period; and a new one.
        send([1, 4], after): 1,
        send([5], after): 1,
    }
    with caplog.at_level(logging.INFO, logger="inlet.jobs"):
        drain()
    lines = job_lines(caplog)
    assert {line["jobs_in_take"] for line in lines} == {4}, "the jobs ran apart: no take"
    assert {line["job_id"]: line["inserted"] for line in lines} == jobs
    assert sorted(event_ids(engine)) == sorted(onside_event(n)["event_id"] for n in range(1, 6))
    # A resend of event 1 after the take, in the later period: still a duplicate.
    enqueue(settings, redis, partner, [onside_event(1)], received_at=after)
    drain()
    assert len(event_ids(engine)) == 5


def test_a_take_drops_the_events_of_deleted_identifiers(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    drain: Callable[..., None],
) -> None:
    doomed = onside_event(1)
    digest = deletion.identifier_hash(
        settings.secret_key, partner.id, "installation_id", doomed["installation_id"]
    )
    deletion.add_tombstone(redis, partner.id, digest, hours=1)
    kept = {**onside_event(2), "installation_id": str(uuid.uuid4())}
    for events in ([doomed], [kept], [onside_event(3) | {"installation_id": str(uuid.uuid4())}]):
        enqueue(settings, redis, partner, events)
    drain()
    assert sorted(event_ids(engine)) == sorted([kept["event_id"], onside_event(3)["event_id"]])


def test_jobs_taken_by_a_worker_that_dies_at_once_are_retried_and_land_once(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    drain: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed (or cut off by a Redis failover) right after the take's script:
    every job it took, the one RQ dequeued included, is in StartedJobRegistry
    marked started, none stranded in RQ's intermediate queue."""
    worker = four_jobs_and_a_worker(settings, redis, partner)
    monkeypatch.setattr(take, "record_execution", killed)
    worker.work(burst=True, with_scheduler=False)
    queue = q.make_queue(settings, redis)
    assert queue.count == 0 and redis.llen(queue.intermediate_queue_key) == 0
    taken = StartedJobRegistry(queue=queue).get_job_ids(cleanup=False)
    assert len(taken) == 4
    assert {queue.fetch_job(job_id).get_status() for job_id in taken} == {"started"}  # type: ignore[union-attr]
    assert event_ids(engine) == []
    monkeypatch.undo()
    retry_the_abandoned_and_drain(settings, redis, engine, drain)
