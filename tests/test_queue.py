"""How batches sit in Redis: plain JSON, one transaction, never rewritten by a worker."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq.job import Job

from app import queue as q
from app.credentials.partners import NewPartner
from app.embedded_redis import EmbeddedRedis
from app.ops import stats
from app.settings import Settings
from tests.events import onside_event
from tests.queued import enqueue
from tests.services import make_settings

ACME = NewPartner(1, "acme", "", "")
MIDNIGHT = datetime(2026, 5, 5, tzinfo=UTC)


def events(n: int) -> list[dict[str, Any]]:
    return [onside_event(i) for i in range(n)]


@pytest.fixture
def settings(
    redis: Redis, redis_server: EmbeddedRedis, sqlite_url: str, tmp_path: Path
) -> Settings:
    """SQLite only: these tests never reach the database, one run is enough."""
    return make_settings(sqlite_url, redis_server.url, tmp_path)


def test_job_data_is_plain_json_that_stock_rq_reads(settings: Settings, redis: Redis) -> None:
    batch = events(3)
    job_id = enqueue(settings, redis, ACME, batch, received_at=MIDNIGHT)
    stored = redis.hget(f"rq:job:{job_id}", "data")
    assert stored is not None and stored.startswith(b'["worker.jobs.ingest_onside"')
    job = Job.fetch(job_id, connection=redis, serializer=q.JSONSerializer)
    assert job.args[2] == batch
    # The queue is registered (RQ's own SADD, sent in the same transaction).
    assert b"rq:queue:inlet" in redis.smembers("rq:queues")
    assert redis.lrange("rq:queue:inlet", 0, -1) == [job_id.encode()]


@pytest.mark.parametrize("endpoint", ["onside", "thrad"])
def test_the_job_runs_its_endpoints_function_and_is_labelled_with_it(
    settings: Settings, redis: Redis, endpoint: q.Endpoint
) -> None:
    job_id = enqueue(settings, redis, ACME, events(2), endpoint=endpoint, received_at=MIDNIGHT)
    job = Job.fetch(job_id, connection=redis, serializer=q.JSONSerializer)
    assert job.func_name == f"worker.jobs.ingest_{endpoint}"
    assert job.meta["endpoint"] == endpoint
    assert job.description == f"{endpoint} batch of 2 events for acme (1 request)"


def test_saving_a_fetched_job_keeps_its_batch_without_resending_it(
    settings: Settings, redis: Redis
) -> None:
    batch = events(2)
    job_id = enqueue(settings, redis, ACME, batch, received_at=MIDNIGHT)
    job = q.PlainJob.fetch(job_id, connection=redis, serializer=q.JSONSerializer)
    assert "data" not in job.to_dict()
    job.meta["seen"] = True
    job.save()
    again = Job.fetch(job_id, connection=redis, serializer=q.JSONSerializer)
    assert again.args[2] == batch and again.meta["seen"] is True
    # Changed arguments are new data: those are written.
    assert job.args[2] == batch
    job.args = (1, "2026-05-05T00:00:00+00:00", batch[:1])
    assert "data" in job.to_dict()
    job.save()
    assert Job.fetch(job_id, connection=redis, serializer=q.JSONSerializer).args[2] == batch[:1]


def stats_keys(now: float) -> list[str]:
    """This minute's stats key and the next (the test may cross a minute)."""
    return [f"{stats.PREFIX}{int(now // 60) + n}" for n in (0, 1)]


def test_accepted_count_is_written_with_the_job(settings: Settings, redis: Redis) -> None:
    for count in (False, True, True):
        enqueue(
            settings,
            redis,
            ACME,
            events(3),
            endpoint="thrad",
            count_accepted=count,
            received_at=MIDNIGHT,
        )
    assert redis.llen("rq:queue:inlet") == 3
    assert stats.last_hour(redis)["acme"].accepted == 6  # only the two that asked


def test_a_count_that_fails_leaves_the_job_queued(settings: Settings, redis: Redis) -> None:
    """EXEC runs every command; a failed HINCRBY must not turn a queued job into a 503."""
    for key in stats_keys(time.time()):
        redis.set(key, "not a hash")  # HINCRBY on it fails with WRONGTYPE
    job_id = enqueue(
        settings,
        redis,
        ACME,
        events(1),
        endpoint="thrad",
        count_accepted=True,
        received_at=MIDNIGHT,
    )
    assert redis.lrange("rq:queue:inlet", 0, -1) == [job_id.encode()]
    assert Job.fetch(job_id, connection=redis, serializer=q.JSONSerializer).args[2] == events(1)
