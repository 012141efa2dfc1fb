"""/readyz names what is down; /metrics adds up every process and reads the queue."""

from __future__ import annotations

import logging
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.admins import NewAdmin
from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner
from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.settings import Settings
from tests.api import basic_auth
from tests.events import ONSIDE_URL as URL
from tests.events import onside_event
from tests.processes import WebProcess, process_env, run_inlet
from tests.queued import unreachable
from tests.services import make_settings, wait_for


def test_readyz_is_200_when_redis_and_database_answer(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"redis": "ok", "database": "ok"}}
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ({"database": True}, ["database"]),
        ({"redis": True}, ["redis"]),
        ({"database": True, "redis": True}, ["redis", "database"]),
    ],
)
def test_readyz_is_503_naming_the_part_that_does_not_answer(
    settings: Settings, broken: dict[str, bool], named: list[str]
) -> None:
    if broken.get("database"):
        settings = unreachable(settings)
    if broken.get("redis"):
        settings = settings.replace(redis_url="unix:///nonexistent/inlet-redis.sock")
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "not_ready"
    assert [e["field"] for e in body["errors"]] == named
    assert all(name in body["error"] for name in named)
    assert "127.0.0.1" not in response.text and "nonexistent" not in response.text


def test_readyz_is_503_while_sqlite_is_write_locked(
    sqlite_url: str, redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Reads still work under another connection's BEGIN IMMEDIATE; no batch could land."""
    settings = make_settings(sqlite_url, redis_server.url, tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        locker = sqlite3.connect(sa.engine.make_url(sqlite_url).database, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - started
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert response.status_code == 503
        body = response.json()
        assert body["code"] == "not_ready"
        assert [e["field"] for e in body["errors"]] == ["database"]
        assert elapsed < 2.5, f"/readyz took {elapsed:.2f}s: it must stay fast"
        assert client.get("/readyz").json() == {
            "status": "ready",
            "checks": {"redis": "ok", "database": "ok"},
        }


def test_readyz_is_503_when_postgresql_is_read_only(
    postgresql_url: str, redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """A hot standby (or a database set read-only) answers, but takes no batch."""
    url = sa.engine.make_url(postgresql_url)
    admin = sa.create_engine(
        url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS inlet_read_only"))
        conn.execute(sa.text("CREATE DATABASE inlet_read_only"))
        conn.execute(
            sa.text("ALTER DATABASE inlet_read_only SET default_transaction_read_only = on")
        )
    admin.dispose()
    read_only = url.set(database="inlet_read_only").render_as_string(hide_password=False)
    settings = make_settings(read_only, redis_server.url, tmp_path)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert [e["field"] for e in response.json()["errors"]] == ["database"]


def scrape(client: TestClient, admin: NewAdmin) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", headers=basic_auth(admin))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_requests_events_jobs_and_read_the_queue(
    client: TestClient,
    partner: NewPartner,
    admin: NewAdmin,
    auth: dict[str, str],
    drain: Callable[..., None],
    failed_job: Callable[..., str],
) -> None:
    before = scrape(client, admin)
    for batch in ([onside_event(1), onside_event(2)], [onside_event(2), onside_event(3)]):
        assert client.post(URL, json={"events": batch}, headers=auth).status_code == 204
    assert client.post(URL, json={"events": [{}]}, headers=auth).status_code == 400
    assert client.post(URL, json={"events": []}).status_code == 401
    queued = scrape(client, admin)
    drain()
    failed_job([onside_event(9)])
    after = scrape(client, admin)

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = {"route": URL}
    assert delta("inlet_http_requests_total", **route, method="POST", status="204") == 2
    assert delta("inlet_http_requests_total", **route, method="POST", status="400") == 1
    assert delta("inlet_events_accepted_total", partner="acme", endpoint="onside") == 4
    assert delta("inlet_batches_rejected_total", partner="acme", reason="invalid_request") == 1
    assert delta("inlet_batches_rejected_total", partner="(unknown)", reason="unauthorized") == 1
    assert delta("inlet_batch_size_events_count", endpoint="onside") == 3  # two + the failed one
    assert delta("inlet_batch_size_events_sum", endpoint="onside") == 5
    assert delta("inlet_enqueue_duration_seconds_count", endpoint="onside") == 3
    assert delta("inlet_rows_inserted_total", partner="acme") == 3
    assert delta("inlet_rows_duplicate_total", partner="acme") == 1
    assert delta("inlet_job_duration_seconds_count", endpoint="onside", outcome="ok") == 2
    assert delta("inlet_job_duration_seconds_count", endpoint="onside", outcome="failed") == 3
    assert delta("inlet_job_failures_total", partner="acme", final="false") == 2
    assert delta("inlet_job_failures_total", partner="acme", final="true") == 1
    assert delta("inlet_receive_to_insert_seconds_count", endpoint="onside") == 2
    assert queued[("inlet_queue_depth", frozenset())] == 2
    assert queued[("inlet_queue_oldest_job_age_seconds", frozenset())] >= 0
    assert after[("inlet_queue_depth", frozenset())] == 0
    assert after[("inlet_failed_jobs", frozenset())] == 1
    assert after[("inlet_workers_alive", frozenset())] == 0


def test_logs_carry_ids_and_counts_never_secrets_or_payloads(
    client: TestClient,
    partner: NewPartner,
    auth: dict[str, str],
    drain: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    marker = "payload-marker-7f3a"
    with caplog.at_level(logging.DEBUG):
        first = client.post(
            URL,
            json={"events": [onside_event(1, payload={"m": marker}), onside_event(1)]},
            headers=auth,
        )
        second = client.post(
            URL,
            json={"events": [onside_event(2, payload={"m": marker}, event_id="bad")]},
            headers=auth,
        )
        drain()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert marker not in text and partner.password not in text
    access = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "inlet.access"]
    assert [(a["partner"], a["events"], a["status"]) for a in access] == [
        ("acme", 2, 204),
        ("acme", None, 400),
    ]
    assert all(len(a["request_id"]) == 32 and a["duration_ms"] >= 0 for a in access)
    # The id a partner sees in X-Request-ID is the one in the log line.
    assert [a["request_id"] for a in access] == [
        first.headers["x-request-id"],
        second.headers["x-request-id"],
    ]
    [job] = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "inlet.jobs"]
    assert job["partner"] == "acme" and job["events"] == 2
    assert (job["inserted"], job["duplicates"]) == (1, 1)
    assert job["job_id"] and job["duration_ms"] >= 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_metrics_add_up_across_real_web_and_worker_processes(
    settings: Settings,
    partner: NewPartner,
    tmp_path: Path,
    admin_auth: dict[str, str],
) -> None:
    """Two uvicorn processes take batches, a separate worker stores them: one scrape sees all."""
    env = process_env(
        settings,
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        INLET_LOG_LEVEL="WARNING",
    )
    web = WebProcess(env, tmp_path / "web.log")
    try:
        wait_for(lambda: _get(f"{web.url}/readyz")[0] == 200, timeout=30, message="inlet web")
        for n in range(6):
            body = orjson.dumps({"events": [onside_event(2 * n), onside_event(2 * n + 1)]})
            assert _post(f"{web.url}{URL}", body, basic_auth(partner)) == 204
        run_inlet(env, "worker", "--burst")
        status, text = _get(f"{web.url}/metrics", admin_auth)
    finally:
        web.stop()
    assert status == 200
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert (
        samples[
            (
                "inlet_http_requests_total",
                frozenset({"route": URL, "method": "POST", "status": "204"}.items()),
            )
        ]
        == 6
    )
    assert (
        samples[
            (
                "inlet_events_accepted_total",
                frozenset({"partner": "acme", "endpoint": "onside"}.items()),
            )
        ]
        == 12
    )
    # Written by the worker process, read by a web process.
    assert samples[("inlet_rows_inserted_total", frozenset({"partner": "acme"}.items()))] == 12
    assert samples[("inlet_queue_depth", frozenset())] == 0
    # Each process writes its own file (web and worker at least): the sum is across processes.
    assert len(list((tmp_path / "metrics").glob("counter_*.db"))) >= 2


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=5
        ) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's socket
        return exc.code, ""
    except OSError:
        return 0, ""


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url, data=body, headers={**headers, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


@pytest.fixture
def api_key(engine: Engine, settings: Settings, partner: NewPartner) -> str:
    return create_api_key(engine, settings.secret_key, partner.name, "metrics").api_key


def test_thrad_requests_count_as_ingest_too(
    client: TestClient, partner: NewPartner, admin: NewAdmin, api_key: str
) -> None:
    """Both Thrad paths are ingest routes: accepted and rejected events are counted."""
    before = scrape(client, admin)
    bearer = {"Authorization": f"Bearer {api_key}"}
    ok = client.post("/api/collect", json={"event_name": "items_added"}, headers=bearer)
    assert ok.status_code == 204
    bad = client.post("/v1/api/collect", json={"event_name": 5}, headers=bearer)
    assert bad.status_code == 400
    after = scrape(client, admin)

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("inlet_events_accepted_total", partner="acme", endpoint="thrad") == 1
    assert delta("inlet_batches_rejected_total", partner="acme", reason="invalid_request") == 1
