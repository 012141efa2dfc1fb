"""INLET_REDIS_MIN_REPLICAS: a 204 only once WAIT says enough replicas hold the
batch; otherwise 503 with Retry-After. Against a real primary, replica and
Sentinels, with REDIS_URL=redis+sentinel://."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from app.credentials.partners import NewPartner, create_partner
from app.db import make_engine
from app.main import create_app
from app.settings import Settings
from tests.api import JSON, assert_error, basic_auth
from tests.cli_runner import run_cli
from tests.events import ONSIDE_URL, onside_event
from tests.sentinel import SentinelGroup, sentinel_group
from tests.services import make_settings

QUEUE_KEY = "rq:queue:inlet"


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with sentinel_group() as started:
        yield started


def _settings(sqlite_url: str, group: SentinelGroup, tmp_path: Path, **env: str) -> Settings:
    return make_settings(sqlite_url, group.url(), tmp_path, INLET_REDIS_TIMEOUT="2", **env)


def _partner(settings: Settings) -> NewPartner:
    engine = make_engine(settings.database_url)
    try:
        return create_partner(engine, settings.secret_key, f"acme-{uuid.uuid4().hex[:8]}")
    finally:
        engine.dispose()


def _batch(n: int = 3) -> bytes:
    return orjson.dumps({"events": [onside_event(i) for i in range(n)]})


def _queued_on(group: SentinelGroup, node: int) -> int:
    with group.nodes[node].client() as client:
        return int(client.llen(QUEUE_KEY))


def test_with_a_replica_required_a_204_means_the_replica_holds_the_batch(
    sqlite_url: str, group: SentinelGroup, tmp_path: Path
) -> None:
    settings = _settings(sqlite_url, group, tmp_path, INLET_REDIS_MIN_REPLICAS="1")
    partner = _partner(settings)
    with TestClient(create_app(settings)) as client:
        before = _queued_on(group, 1)
        response = client.post(
            ONSIDE_URL, content=_batch(), headers={**JSON, **basic_auth(partner)}
        )
        # Read from the replica at once: WAIT said it has the job, no polling needed.
        queued = _queued_on(group, 1)
    assert response.status_code == 204, response.text
    assert queued == before + 1


def test_fewer_replicas_than_required_get_503_with_retry_after(
    sqlite_url: str, group: SentinelGroup, tmp_path: Path
) -> None:
    """Two replicas required, one exists: every batch waits out the timeout, then 503."""
    settings = _settings(
        sqlite_url,
        group,
        tmp_path,
        INLET_REDIS_MIN_REPLICAS="2",
        INLET_REDIS_REPLICA_TIMEOUT_MS="300",
    )
    partner = _partner(settings)
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = client.post(
            ONSIDE_URL, content=_batch(), headers={**JSON, **basic_auth(partner)}
        )
        took = time.monotonic() - started
        # The connection that waited is clean: the next request's reply is its own.
        again = client.post(ONSIDE_URL, content=_batch(), headers={**JSON, **basic_auth(partner)})
    body = assert_error(response, 503, "unavailable")
    assert "replicas" in body["error"]
    assert response.headers["Retry-After"] == "5"
    assert took >= 0.3
    assert_error(again, 503, "unavailable")


def test_a_replica_that_stops_answering_turns_204s_into_503s_until_it_is_back(
    sqlite_url: str, group: SentinelGroup, tmp_path: Path
) -> None:
    settings = _settings(
        sqlite_url,
        group,
        tmp_path,
        INLET_REDIS_MIN_REPLICAS="1",
        INLET_REDIS_REPLICA_TIMEOUT_MS="300",
    )
    partner = _partner(settings)
    replica = group.replica.process
    assert replica is not None
    headers = {**JSON, **basic_auth(partner)}
    with TestClient(create_app(settings)) as client:
        assert client.post(ONSIDE_URL, content=_batch(), headers=headers).status_code == 204
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            stalled = client.post(ONSIDE_URL, content=_batch(), headers=headers)
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        back = client.post(ONSIDE_URL, content=_batch(), headers=headers)
    assert_error(stalled, 503, "unavailable")
    assert back.status_code == 204, back.text


def test_inlet_replay_queues_on_the_primary_sentinel_names(
    sqlite_url: str, group: SentinelGroup, tmp_path: Path
) -> None:
    """An `inlet` command through Sentinel, with a replica required: the job is on both."""
    settings = _settings(sqlite_url, group, tmp_path, INLET_REDIS_MIN_REPLICAS="1")
    partner = _partner(settings)
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b"\n".join(orjson.dumps(onside_event(i)) for i in range(5)) + b"\n")
    before = [_queued_on(group, 0), _queued_on(group, 1)]
    result = run_cli(settings, "replay", str(lines), "--partner", partner.name, "--json")
    assert orjson.loads(result.stdout)["accepted"] == 5
    assert [_queued_on(group, 0), _queued_on(group, 1)] == [n + 1 for n in before]
