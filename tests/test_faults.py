"""Faults survived: real processes, real Redis and PostgreSQL, real failures.

Each test runs a partner-like client that records every event it got a 204
for, injects a fault, and checks that SQL ends up holding exactly that set:
nothing missing, nothing from a refused batch, no duplicates.
``make soak`` runs the same with INLET_SOAK=5: more load, more fault cycles.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from redis import Redis
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy.engine import Engine

from app import migrations
from app import queue as q
from app.credentials.partners import NewPartner, create_partner
from app.db import events as events_table
from app.db import make_engine
from app.embedded_redis import EmbeddedRedis
from app.ops.failed import requeue_all
from app.settings import Settings
from tests.api import basic_auth
from tests.faults import LoadClient, LoadReport, WorkerPool, new_event
from tests.processes import WebProcess, process_env
from tests.services import (
    PostgresCluster,
    make_settings,
    running_cluster,
    running_redis,
    wait_for,
)

SOAK = int(os.environ.get("INLET_SOAK", "1"))
_databases = iter(range(1_000_000))


@pytest.fixture(scope="module")
def fault_pg() -> Iterator[PostgresCluster]:
    """A cluster of these tests' own: they stop and start it."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def fault_redis() -> Iterator[EmbeddedRedis]:
    with running_redis() as server:
        yield server


class Stack:
    """Web + supervised workers on a fresh database and a fresh Redis."""

    def __init__(self, pg: PostgresCluster, redis: EmbeddedRedis, tmp: Path, **env: str) -> None:
        url = pg.create_database(f"faults_{next(_databases)}")
        migrations.upgrade(url)
        self.pg, self.redis_server = pg, redis
        self.settings: Settings = make_settings(url, redis.url, tmp, **env)
        self.engine: Engine = make_engine(url)
        self.partner: NewPartner = create_partner(self.engine, self.settings.secret_key, "acme")
        self.env = process_env(self.settings)
        self.web = WebProcess(self.env, tmp / "web.log")
        self.workers = WorkerPool(self.env, tmp, size=2)
        self.auth = basic_auth(self.partner)
        self.clients: list[LoadClient] = []

    def client(self, **options: object) -> LoadClient:
        client = LoadClient(self.web.url, self.auth, **options)  # type: ignore[arg-type]
        self.clients.append(client)
        return client

    def stored(self) -> list[str]:
        with self.engine.connect() as conn:
            return [str(v) for v in conn.execute(sa.select(events_table.c.event_id)).scalars()]

    def wait_until_landed(self, report: LoadReport, timeout: float = 120) -> list[str]:
        def landed() -> bool:
            self.workers.supervise()
            return len(self.stored()) >= len(report.acknowledged)

        wait_for(
            landed,
            timeout=timeout,
            interval=0.25,
            message=f"acknowledged events to land ({report.summary()})",
        )
        return self.stored()

    def assert_exactly_acknowledged(self, report: LoadReport) -> None:
        stored = self.wait_until_landed(report)
        assert len(stored) == len(set(stored)), "an event was stored twice"
        assert set(stored) == report.acknowledged, "stored set differs from the acknowledged set"
        assert not (set(stored) & report.rejected), "an event of a refused batch was stored"
        print(f"\n{report.summary()} stored={len(stored)}")

    def close(self) -> None:
        for client in self.clients:
            client.http.close()
        self.workers.stop()
        self.web.stop()
        self.engine.dispose()


@pytest.fixture
def stack_factory(
    fault_pg: PostgresCluster, fault_redis: EmbeddedRedis, tmp_path: Path
) -> Iterator:  # type: ignore[type-arg]
    stacks: list[Stack] = []

    def make(**env: str) -> Stack:
        stack = Stack(fault_pg, fault_redis, tmp_path, **env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


class _AcceptsEverything(BaseHTTPRequestHandler):
    """A server that answers 204 even to a batch Inlet must refuse."""

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_a_wrong_answer_seen_by_the_load_client_fails_the_test() -> None:
    """The client runs in a thread: what it finds wrong must fail the test in the
    main thread, not only reach pytest's unhandled-thread-exception hook."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AcceptsEverything)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        client = LoadClient(url, {}, batch_size=2, invalid_every=1)  # every batch invalid
        with pytest.raises(AssertionError, match="an invalid batch was accepted"):
            client.start(batches=3, seconds=30).join()
        assert client.report.batches == 1, "the client went on after the failure"
    finally:
        server.shutdown()
        server.server_close()


def test_workers_killed_repeatedly_mid_jobs(stack_factory) -> None:  # type: ignore[no-untyped-def]
    """Large batches keep the workers busy; each kill waits for a job in flight and
    takes the worker running it (a fixed cadence, on a busy machine, killed workers
    still starting up)."""
    stack = stack_factory(INLET_JOB_TIMEOUT="3", INLET_RETRY_DELAYS="1,1,1,1,1")
    redis = Redis.from_url(stack.settings.redis_url)
    queue = q.make_queue(stack.settings, redis)
    in_flight = StartedJobRegistry(queue=queue)
    client = stack.client(batch_size=400).start(batches=40 * SOAK, seconds=60 * SOAK)

    def busy_worker() -> tuple[str, int] | None:
        """A job in flight and the process id of the live worker running it
        (a killed worker's job stays registered as started for a while)."""
        alive = {worker.process.pid for worker in stack.workers.workers if worker.alive}
        for job_id in in_flight.get_job_ids():
            worker_name = redis.hget(f"rq:job:{job_id}", "worker_name")
            pid = worker_name and redis.hget(b"rq:worker:" + worker_name, "pid")
            if pid and int(pid) in alive:
                return job_id, int(pid)
        return None

    kills = mid_job = 0
    deadline = time.monotonic() + 120 * SOAK
    while kills < 6 * SOAK and (client.running or queue.count or in_flight.count):
        assert time.monotonic() < deadline, "jobs stayed registered as started for minutes"
        stack.workers.supervise()
        found = busy_worker()
        if found is None:
            time.sleep(0.05)
            continue
        job_id, pid = found
        if stack.workers.kill_pid(pid):
            kills += 1
            # Still registered as started after the SIGKILL: it died mid-job.
            mid_job += job_id in in_flight.get_job_ids()
    report = client.join()
    stack.assert_exactly_acknowledged(report)
    print(f"workers SIGKILLed: {kills}, {mid_job} of them with a job in flight")
    assert mid_job >= 1, "no worker was killed mid-job: the test proves nothing"
    redis.close()


def test_redis_killed_and_restarted_mid_load(stack_factory, fault_redis: EmbeddedRedis) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL, not a clean shutdown: with appendfsync always no 204'd batch is lost."""
    stack = stack_factory(INLET_JOB_TIMEOUT="3")
    client = stack.client(batch_size=200, pace=0.06).start(batches=80 * SOAK, seconds=90 * SOAK)
    restarts = during_load = 0
    while restarts < 2 * SOAK:
        time.sleep(1.0)
        during_load += client.running
        fault_redis.kill()
        time.sleep(1.0)
        fault_redis.start()
        restarts += 1
        stack.workers.supervise()
    report = client.join()
    stack.assert_exactly_acknowledged(report)
    print(f"redis restarts: {restarts}, {during_load} of them during the load")
    assert during_load >= 1


def test_postgres_down_for_20_seconds_mid_load(stack_factory, fault_pg: PostgresCluster) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(INLET_RETRY_DELAYS="1,2,4,8,8,8")
    # Paced so that the load outlasts the start of the outage on any machine.
    client = stack.client(pace=0.5).start(batches=30 * SOAK, seconds=120)
    # Load flowing end to end: a batch acknowledged and rows written by a worker.
    wait_for(
        lambda: client.report.statuses["204"] >= 1 and len(stack.stored()) >= 1,
        timeout=60,
        interval=0.1,
        message="load to flow before the outage",
    )
    fault_pg.stop()
    down_at = time.monotonic()
    accepted_before = client.report.statuses["204"]
    time.sleep(20)
    accepted_during = client.report.statuses["204"] - accepted_before
    fault_pg.start()
    print(f"postgres was down for {time.monotonic() - down_at:.1f}s")
    report = client.join()
    stack.assert_exactly_acknowledged(report)
    print(f"batches accepted while postgres was down: {accepted_during}")
    assert accepted_during >= 1, "no load while postgres was down: the test proves nothing"


def test_outage_longer_than_the_retry_budget_then_requeue(
    stack_factory, fault_pg: PostgresCluster
) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(INLET_RETRY_DELAYS="1,1")
    redis = Redis.from_url(stack.settings.redis_url)
    failed = FailedJobRegistry(queue=q.make_queue(stack.settings, redis))
    client = stack.client(invalid_every=0)
    report = client.report
    deadline = time.monotonic() + 60
    # The partner was sending before the outage: the web tier knows its
    # credentials (a web process that never saw them answers 503 meanwhile).
    warm = [new_event()]
    assert client.send(warm, deadline) == 204
    report.acknowledged |= {warm[0]["event_id"]}
    stack.wait_until_landed(report)
    fault_pg.stop()
    try:
        for _ in range(5):
            events = [new_event() for _ in range(20)]
            assert client.send(events, deadline) == 204  # Redis takes it while SQL is down
            report.acknowledged |= {e["event_id"] for e in events}
        wait_for(
            lambda: failed.count == 5, timeout=60, interval=0.25, message="jobs to exhaust retries"
        )
    finally:
        fault_pg.start()
    assert stack.stored() == [warm[0]["event_id"]]
    requeued = requeue_all(q.make_queue(stack.settings, redis), len(stack.settings.retry_delays))
    assert len(requeued) == 5
    stack.assert_exactly_acknowledged(report)
    assert failed.count == 0
    redis.close()


def test_redis_down_gives_a_quick_503_and_never_a_204(
    stack_factory, fault_redis: EmbeddedRedis
) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory()
    before = new_event()
    with httpx.Client(base_url=stack.web.url, headers=stack.auth, timeout=10) as http:
        assert http.post("/attribution-api/v1/events", json={"events": [before]}).status_code == 204
        fault_redis.kill()
        try:
            for _ in range(5):
                started = time.monotonic()
                response = http.post("/attribution-api/v1/events", json={"events": [new_event()]})
                elapsed = time.monotonic() - started
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"]
                assert elapsed < 3, f"503 took {elapsed:.2f}s"
        finally:
            fault_redis.start()
        event = new_event()
        assert http.post("/attribution-api/v1/events", json={"events": [event]}).status_code == 204
    report = LoadReport()
    report.acknowledged = {before["event_id"], event["event_id"]}
    stack.assert_exactly_acknowledged(report)


def test_redis_out_of_memory_gives_503_and_nothing_half_queued(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory()
    redis = Redis.from_url(stack.settings.redis_url)
    client = stack.client(invalid_every=0)
    deadline = time.monotonic() + 60
    first = [new_event() for _ in range(10)]
    assert client.send(first, deadline) == 204
    client.report.acknowledged |= {e["event_id"] for e in first}
    stack.workers.stop()  # nothing drains while memory is full
    redis.config_set("maxmemory-policy", "noeviction")
    redis.config_set("maxmemory", str(int(redis.info("memory")["used_memory"]) + 2048))
    try:
        queued_before = redis.llen("rq:queue:inlet")
        events = [new_event() for _ in range(200)]
        response = client.http.post("/attribution-api/v1/events", json={"events": events})
        assert response.status_code == 503, response.text
        assert redis.llen("rq:queue:inlet") == queued_before
    finally:
        redis.config_set("maxmemory", "0")
    assert client.send(events, deadline) == 204
    client.report.acknowledged |= {e["event_id"] for e in events}
    stack.workers = WorkerPool(stack.env, stack.web.log_path.parent, size=1)
    stack.assert_exactly_acknowledged(client.report)
    redis.close()


def test_client_disconnecting_mid_upload_queues_nothing(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory()
    redis = Redis.from_url(stack.settings.redis_url)
    body = b'{"events": [' + b"x" * 5000
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", stack.web.port)) as sock:
            sock.sendall(
                b"POST /attribution-api/v1/events HTTP/1.1\r\nHost: x\r\n"
                + b"Authorization: "
                + stack.auth["Authorization"].encode()
                + b"\r\n"
                + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                + body
            )
    wait_for(
        lambda: "client disconnected" in stack.web.log(), timeout=10, message="the server to see it"
    )
    assert redis.keys("rq:job:*") == []
    with httpx.Client(base_url=stack.web.url, headers=stack.auth) as http:
        assert (
            http.post("/attribution-api/v1/events", json={"events": [new_event()]}).status_code
            == 204
        )
    redis.close()
