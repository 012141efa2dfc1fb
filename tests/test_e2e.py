"""End to end: `inlet web` and `inlet worker` as real processes, real Redis, real SQL."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
import sqlalchemy as sa
from redis import Redis
from rq.registry import StartedJobRegistry
from sqlalchemy.engine import Engine

from app import queue as q
from app.credentials.partners import NewPartner
from app.db import events as events_table
from app.settings import Settings
from tests.events import ONSIDE_REFERENCE_BODY, ONSIDE_URL, onside_event
from tests.processes import InletProcess, WebProcess, process_env, run_inlet, start_worker
from tests.queued import event_ids
from tests.services import wait_for

# The reference document's curl example, verbatim but for its two placeholders.
REFERENCE_CURL = f"""curl -X POST \\
  -H 'Content-Type: application/json' \\
  -u <basic auth> \\
  --data '{ONSIDE_REFERENCE_BODY}' \\
  https://onside.io/attribution-api/v1/events"""


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[InletProcess]]:
    started: list[InletProcess] = []
    yield started
    for proc in started:
        proc.stop()


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar_one())


def test_reference_curl_example_lands_and_exports(
    settings: Settings,
    partner: NewPartner,
    procs: list[InletProcess],
    tmp_path: Path,
    engine: Engine,
) -> None:
    env = process_env(settings)
    web = WebProcess(env, tmp_path / "web.log")
    procs += [web, start_worker(env, tmp_path / "worker.log")]
    command = REFERENCE_CURL.replace(
        "<basic auth>", f"'{partner.username}:{partner.password}'"
    ).replace("https://onside.io", web.url)
    result = subprocess.run(
        ["bash", "-c", command + " -sS -w '%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout == "204", result.stderr
    wait_for(lambda: count_rows(engine) == 1, timeout=30, message="the event to land")
    [line] = run_inlet(env, "events", "export", "--partner", partner.name).splitlines()
    row = orjson.loads(line)
    assert row["event_id"] == "550e8400-e29b-41d4-a716-446655440000"
    assert row["event_name"] == "purchase_completed"
    assert row["payload"] == {"currency": "USD", "amount": "9.99"}
    assert row["event_datetime"] == "2026-05-05T12:00:00Z"
    assert partner.password not in web.log()


def waiting_on_locks(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            ).scalar_one()
        )


def batch(start: int, size: int) -> dict[str, Any]:
    return {
        "events": [
            onside_event(n, event_name="Purchase_Completed", payload={"n": n, "sku": "x" * 50})
            for n in range(start, start + size)
        ]
    }


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_many_batches_through_two_workers_land_exactly_once(
    settings: Settings,
    partner: NewPartner,
    procs: list[InletProcess],
    tmp_path: Path,
    engine: Engine,
    auth: dict[str, str],
) -> None:
    env = process_env(settings)
    web = WebProcess(env, tmp_path / "web.log")
    procs += [web, start_worker(env, tmp_path / "w1.log"), start_worker(env, tmp_path / "w2.log")]
    expected: set[str] = set()
    with httpx.Client(base_url=web.url, headers=auth, timeout=30) as http:
        for i in range(20):
            # Overlapping ranges: every batch after the first resends 50 events.
            body = batch(i * 150, 200)
            assert http.post(ONSIDE_URL, json=body).status_code == 204
            expected |= {e["event_id"] for e in body["events"]}
    wait_for(lambda: count_rows(engine) >= len(expected), timeout=60, message="all rows")
    assert event_ids(engine) == sorted(expected)
    with engine.connect() as conn:
        names = set(conn.execute(sa.select(events_table.c.event_name).distinct()).scalars())
    assert names == {"purchase_completed"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_worker_killed_mid_job_loses_nothing(
    settings: Settings,
    partner: NewPartner,
    procs: list[InletProcess],
    tmp_path: Path,
    engine: Engine,
    redis: Redis,
    auth: dict[str, str],
) -> None:
    """SIGKILL while the job is inside its transaction; another worker redoes it."""
    env = process_env(settings, INLET_JOB_TIMEOUT="5", INLET_RETRY_DELAYS="1,1,1")
    web = WebProcess(env, tmp_path / "web.log")
    procs.append(web)
    blocker = engine.connect()
    try:
        blocker.begin()
        # Hold the table so the worker's INSERT waits inside its transaction.
        blocker.execute(sa.text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
        victim = start_worker(env, tmp_path / "victim.log")
        procs.append(victim)
        body = batch(0, 100)
        assert httpx.post(web.url + ONSIDE_URL, json=body, headers=auth).status_code == 204
        started = StartedJobRegistry(queue=q.make_queue(settings, redis))
        wait_for(lambda: started.count == 1, timeout=30, message="the job to start")
        wait_for(
            lambda: waiting_on_locks(engine) >= 1,
            timeout=30,
            message="the INSERT to wait on the lock",
        )
        victim.kill()
        killed_at = time.monotonic()
    finally:
        # Whatever happened, the lock must go: the next tests empty this table.
        blocker.rollback()
        blocker.close()
    rescuer = start_worker(env, tmp_path / "rescuer.log")
    procs.append(rescuer)
    try:
        wait_for(
            lambda: count_rows(engine) == 100, timeout=60, interval=0.2, message="the batch to land"
        )
    except AssertionError:
        print(victim.log(), rescuer.log(), started.get_job_ids(), redis.keys("*"))
        raise
    recovery = time.monotonic() - killed_at
    print(f"recovered a killed worker's batch in {recovery:.1f}s")
    assert event_ids(engine) == sorted(e["event_id"] for e in body["events"])
