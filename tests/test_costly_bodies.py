"""A body's validation work is bounded: a cap on JSON objects and arrays, counted from
the bytes before parsing (413), and big bodies validated off the event loop, so a
partner inside its rate limit cannot starve the others."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, create_partner
from app.settings import SETTINGS, RateLimit, Settings
from app.thrad.validate import MAX_EVENT_CONTAINERS
from tests.api import assert_error, basic_auth
from tests.events import ONSIDE_URL as URL
from tests.events import onside_event
from tests.latency import measure, ms, p99
from tests.processes import WebProcess, process_env
from tests.queued import queued_jobs

THRAD_URL = "/v1/api/collect"
MAX_CONTAINERS = int(next(s.default for s in SETTINGS if s.env == "INLET_MAX_JSON_CONTAINERS"))
# The attack: one event whose payload holds 340,000 empty arrays, 1 MiB in all.
ATTACK_ARRAYS = 340_000
ATTACK_RATE = 3.0  # bodies per second, as in the report; well inside the rate limit
LOAD_SECONDS = 8.0


def with_arrays(n: int, index: int = 0) -> dict[str, Any]:
    return onside_event(index, payload={"a": [[]] * n})


def attack_body() -> bytes:
    return orjson.dumps({"events": [with_arrays(ATTACK_ARRAYS)]})


def normal_body(events: int = 1000) -> bytes:
    """A full batch of ordinary events, each with a fresh id."""
    return orjson.dumps(
        {"events": [{**onside_event(0), "event_id": str(uuid.uuid4())} for _ in range(events)]}
    )


def containers(body: bytes) -> int:
    return body.count(b"[") + body.count(b"{")


def test_a_normal_full_batch_is_far_below_the_cap() -> None:
    body = normal_body()
    assert 1000 < containers(body) <= MAX_CONTAINERS / 4


@pytest.mark.parametrize(
    ("arrays", "status"),
    [(MAX_CONTAINERS - 5, 204), (MAX_CONTAINERS - 3, 413), (ATTACK_ARRAYS, 413)],
)
def test_batch_over_the_container_cap_gets_413_naming_it(
    client: TestClient, auth: dict[str, str], redis: Redis, arrays: int, status: int
) -> None:
    # The root object, the events array, the event, its payload and "a"'s list: 5 more.
    body = orjson.dumps({"events": [with_arrays(arrays)]})
    response = client.post(URL, content=body, headers={**auth, "Content-Type": "application/json"})
    if status == 204:
        assert containers(body) == MAX_CONTAINERS
        assert response.status_code == 204, response.text
        assert queued_jobs(redis) == 1
        return
    assert containers(body) > MAX_CONTAINERS
    error = assert_error(response, 413, "too_many_json_containers")
    assert f"{MAX_CONTAINERS:,}" in error["error"] and "INLET_MAX_JSON_CONTAINERS" in error["error"]
    assert queued_jobs(redis) == 0


def test_the_cap_counts_brackets_inside_strings_too(
    client: TestClient, auth: dict[str, str], redis: Redis
) -> None:
    """An upper bound, counted before parsing: a string of brackets counts as much."""
    body = orjson.dumps({"events": [onside_event(1, payload={"s": "[" * MAX_CONTAINERS})]})
    response = client.post(URL, content=body, headers={**auth, "Content-Type": "application/json"})
    assert_error(response, 413, "too_many_json_containers")


def test_thrad_event_over_its_container_cap_gets_413(
    client: TestClient, engine: Engine, settings: Settings, partner: NewPartner, redis: Redis
) -> None:
    key = create_api_key(engine, settings.secret_key, partner.name, "tag")
    bearer = {"Authorization": f"Bearer {key.api_key}"}
    # The Thrad shape: 64 KiB holding 21,700 empty arrays.
    # The event, its params and "a"'s list: 3 more than n.
    for n, status in [
        (MAX_EVENT_CONTAINERS - 3, 204),
        (MAX_EVENT_CONTAINERS - 2, 413),
        (21_700, 413),
    ]:
        body = orjson.dumps({"event_name": "x", "params": {"a": [[]] * n}})
        assert (containers(body) <= MAX_EVENT_CONTAINERS) == (status == 204)
        response = client.post(THRAD_URL, content=body, headers=bearer)
        if status == 204:
            assert response.status_code == 204, response.text
        else:
            error = assert_error(response, 413, "too_many_json_containers")
            assert f"{MAX_EVENT_CONTAINERS:,}" in error["error"]
    assert queued_jobs(redis) == 1


class Sender(threading.Thread):
    """Posts ``body`` at ``rate`` per second (bounded in count and time); counts statuses."""

    def __init__(self, url: str, auth: dict[str, str], body: bytes, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.auth, self.body, self.rate = url, auth, body, rate
        self.statuses: dict[int, int] = {}
        self.stop = threading.Event()
        self.started_sending = threading.Event()

    def run(self) -> None:
        headers = {**self.auth, "Content-Type": "application/json"}
        started = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for n in range(int(self.rate * (LOAD_SECONDS + 10))):
                if self.stop.is_set() or time.monotonic() - started > LOAD_SECONDS + 10:
                    break
                self.started_sending.set()
                status = client.post(URL, content=self.body, headers=headers).status_code
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.stop.wait(max(0.0, started + (n + 1) / self.rate - time.monotonic()))


@pytest.fixture
def web(settings: Settings, tmp_path: Path) -> Iterator[WebProcess]:
    # The neighbour sends back to back to measure latency: on a fast machine
    # that passes the default 100/second and would measure the rate limit.
    unlimited = settings.replace(rate_limit=RateLimit(100_000, 1.0))
    process = WebProcess(process_env(unlimited), tmp_path / "web.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_costly_body_slows_a_neighbour_no_more_than_normal_load_of_its_byte_rate(
    web: WebProcess, engine: Engine, settings: Settings, partner: NewPartner
) -> None:
    noisy = basic_auth(create_partner(engine, settings.secret_key, "noisy"))
    attack, normal = attack_body(), normal_body()
    assert len(attack) > 1_000_000

    def neighbour_under(body: bytes, rate: float) -> tuple[list[float], dict[int, int]]:
        sender = Sender(web.url, noisy, body, rate)
        with httpx.Client(base_url=web.url, timeout=60) as neighbour:

            def post(n: int) -> None:
                response = neighbour.post(
                    URL, json={"events": [onside_event(n)]}, headers=basic_auth(partner)
                )
                assert response.status_code == 204, response.text

            sender.start()
            try:
                assert sender.started_sending.wait(10)
                # Bounded by time: the attack must run for the whole window.
                latencies = measure(post, max_requests=5000, max_seconds=LOAD_SECONDS)
            finally:
                sender.stop.set()
                sender.join(timeout=120)
        assert not sender.is_alive()
        return latencies, sender.statuses

    # The same bytes per second: more, smaller normal batches.
    normal_latencies, normal_statuses = neighbour_under(
        normal, ATTACK_RATE * len(attack) / len(normal)
    )
    attack_latencies, attack_statuses = neighbour_under(attack, ATTACK_RATE)
    print(
        f"\nneighbour under normal load ({len(normal) >> 10} KiB batches at "
        f"{ATTACK_RATE * len(attack) / len(normal):.1f}/s, {normal_statuses}): "
        f"{ms(normal_latencies)}\nneighbour under attack ({len(attack) >> 10} KiB at "
        f"{ATTACK_RATE}/s, {attack_statuses}): {ms(attack_latencies)}"
    )
    assert normal_statuses.get(204, 0) >= 10, normal_statuses
    assert sum(attack_statuses.values()) >= 2, attack_statuses  # the attack really ran
    assert p99(attack_latencies) < 2 * p99(normal_latencies) + 0.1, (
        ms(normal_latencies),
        ms(attack_latencies),
    )
    assert set(attack_statuses) == {413} and attack_statuses[413] >= 10, attack_statuses
