"""Group commit under faults: real `inlet web` and `inlet worker` processes.

A killed web process may take pending groups with it, but only groups no
request was answered for; a Redis that stops answering turns every pending
request into a 503, none into a 204.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from redis import Redis

from app.credentials.api_keys import create_api_key
from app.credentials.partners import create_partner
from app.db import make_engine, thrad_events
from app.embedded_redis import EmbeddedRedis
from app.settings import Settings
from tests.processes import WebProcess, process_env, start_worker
from tests.services import make_settings, wait_for

COLLECT = "/v1/api/collect"


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own: it is stopped and resumed."""
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="inlet-gc-"))).start()
    try:
        yield server
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def thrad_event() -> dict[str, Any]:
    return {
        "tag_id": "tag_8f3a2c",
        "event_name": "purchase",
        "event_id": "evt_" + uuid.uuid4().hex,
        "params": {"value": 9.99, "currency": "USD"},
    }


class Partner:
    """Sends single events from many connections at once, like a busy backend:
    a 429, a 503 or a dropped connection means "send the same event again"."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.acknowledged: set[str] = set()
        self.started: set[str] = set()
        self.statuses: Counter[str] = Counter()
        self.stop = asyncio.Event()

    async def one(self, client: httpx.AsyncClient) -> None:
        event = thrad_event()
        self.started.add(event["event_id"])
        while True:
            try:
                response = await client.post(
                    self.base_url + COLLECT, json=event, headers=self.headers
                )
            except httpx.TransportError as exc:
                self.statuses[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            self.statuses[str(response.status_code)] += 1
            if response.status_code == 204:
                self.acknowledged.add(event["event_id"])
                return
            if response.status_code not in (429, 503):
                raise AssertionError(f"unexpected {response.status_code}: {response.text}")
            await asyncio.sleep(0.05)

    async def run(self, connections: int) -> None:
        async def loop() -> None:
            async with httpx.AsyncClient(timeout=10) as client:
                while not self.stop.is_set():
                    await self.one(client)

        await asyncio.gather(*(loop() for _ in range(connections)))


def stored_event_ids(settings: Settings, partner_id: int) -> list[str]:
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            query = sa.select(thrad_events.c.event_id).where(
                thrad_events.c.partner_id == partner_id
            )
            return list(conn.execute(query).scalars())
    finally:
        engine.dispose()


def test_a_killed_web_process_loses_no_acknowledged_single_event(
    postgresql_url: str, redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """SIGKILL the web process under single-event load, start another, let the
    partner resend what got no answer: SQL holds every event once."""
    settings = make_settings(
        postgresql_url, redis_server.url, tmp_path, INLET_RATE_LIMIT="100000/second"
    )
    engine = make_engine(settings.database_url)
    name = f"acme-{uuid.uuid4().hex[:8]}"
    partner_id = create_partner(engine, settings.secret_key, name).id
    api_key = create_api_key(engine, settings.secret_key, name, "load").api_key
    engine.dispose()
    env = process_env(settings, INLET_RATE_LIMIT="100000/second")
    web = WebProcess(env, tmp_path / "web-1.log")
    worker = start_worker(env, tmp_path / "worker.log")
    partner = Partner(web.url, api_key)
    killed_at = 0

    async def scenario() -> None:
        nonlocal web, killed_at
        load = asyncio.ensure_future(partner.run(connections=16))
        await _until(lambda: len(partner.acknowledged) >= 300, load)
        killed_at = len(partner.acknowledged)
        await asyncio.to_thread(web.kill)
        web = await asyncio.to_thread(WebProcess, env, tmp_path / "web-2.log")
        partner.base_url = web.url
        await _until(lambda: len(partner.acknowledged) >= killed_at + 300, load)
        partner.stop.set()
        await asyncio.wait_for(load, 60)

    try:
        asyncio.run(scenario())
        # The kill hit requests in flight: some got no answer and were resent.
        lost = sum(n for status, n in partner.statuses.items() if not status.isdigit())
        assert lost >= 1, f"no request was in flight at the kill: {partner.statuses}"
        assert partner.acknowledged == partner.started

        def landed() -> bool:
            return len(set(stored_event_ids(settings, partner_id))) >= len(partner.acknowledged)

        wait_for(landed, timeout=120, interval=0.25, message="acknowledged events to land")
        stored = stored_event_ids(settings, partner_id)
        assert len(stored) == len(set(stored)), "an event was stored twice"
        assert set(stored) == partner.acknowledged
        print(f"\nstatuses={dict(partner.statuses)} stored={len(stored)} killed_at={killed_at}")
    finally:
        web.stop()
        worker.stop()


async def _until(condition: Any, load: asyncio.Future[None], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if load.done():
            load.result()  # the load failed: say why
        assert time.monotonic() < deadline, "timed out waiting for the load"
        await asyncio.sleep(0.02)


def test_a_redis_that_stops_answering_gets_every_pending_request_a_503(
    sqlite_url: str, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """Redis hangs (SIGSTOP) under single-event load: every request in flight
    or sent after gets a 503 within the Redis timeout (twice it for a group
    whose write was under way, plus the group wait), none a 204 for an event
    that is not queued; once Redis is back, every 204 lands exactly once."""
    settings = make_settings(sqlite_url, own_redis.url, tmp_path, INLET_RATE_LIMIT="100000/second")
    engine = make_engine(settings.database_url)
    name = f"acme-{uuid.uuid4().hex[:8]}"
    partner_id = create_partner(engine, settings.secret_key, name).id
    api_key = create_api_key(engine, settings.secret_key, name, "load").api_key
    engine.dispose()
    timeout = settings.redis_timeout
    env = process_env(
        settings,
        INLET_RATE_LIMIT="100000/second",
        INLET_REDIS_TIMEOUT=str(timeout),
        INLET_GROUP_WAIT_MS="2",
    )
    web = WebProcess(env, tmp_path / "web.log")
    assert own_redis.process is not None
    pid = own_redis.process.pid
    headers = {"Authorization": f"Bearer {api_key}"}
    answers: list[tuple[float, float, int, str]] = []  # start, end, status, event id
    stopped_at = 0.0

    stop = asyncio.Event()

    async def sender(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            event = thrad_event()
            started = time.monotonic()
            response = await client.post(COLLECT, json=event)
            answers.append((started, time.monotonic(), response.status_code, event["event_id"]))

    async def scenario() -> None:
        nonlocal stopped_at
        async with httpx.AsyncClient(base_url=web.url, timeout=30, headers=headers) as client:
            # Warm: the key check is cached and every connection is open.
            warm = [thrad_event() for _ in range(16)]
            sent = await asyncio.gather(*(client.post(COLLECT, json=ev) for ev in warm))
            assert {r.status_code for r in sent} == {204}
            answers.extend((0.0, 0.0, 204, ev["event_id"]) for ev in warm)
            load = asyncio.gather(*(sender(client) for _ in range(16)))
            deadline = time.monotonic() + 10.0
            while sum(1 for a in answers if a[2] == 204) < 100 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            os.kill(pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            try:
                await asyncio.sleep(1.0)  # requests keep coming while Redis hangs
                stop.set()
                await asyncio.wait_for(load, 30)
            finally:
                os.kill(pid, signal.SIGCONT)

    worker = None
    try:
        asyncio.run(scenario())
        before = [a for a in answers if a[1] < stopped_at]
        assert before and {a[2] for a in before} == {204}, Counter(a[2] for a in before)
        in_flight = [a for a in answers if a[0] < stopped_at <= a[1]]
        after = [a for a in answers if a[0] >= stopped_at]
        assert in_flight, "no request was in flight when Redis stopped: the test proves nothing"
        assert after and {a[2] for a in after} == {503}, Counter(a[2] for a in after)
        assert {a[2] for a in in_flight} <= {204, 503}, Counter(a[2] for a in in_flight)
        # A request refused at the rate limit waits one timeout; one whose group
        # was being written waits for EXEC, then for the lost-reply check
        # (app/queue.py): two timeouts, plus the group wait, plus slack.
        bound = 2 * timeout + 0.002 + 1.0
        slowest = max(end - max(start, stopped_at) for start, end, _, _ in in_flight + after)
        print(
            f"\nbefore={len(before)} in_flight={Counter(a[2] for a in in_flight)} "
            f"after={len(after)} slowest 503: {slowest:.2f} s"
        )
        assert slowest <= bound, f"an answer took {slowest:.2f} s (bound {bound:.2f} s)"

        acknowledged = {a[3] for a in answers if a[2] == 204}
        worker = start_worker(env, tmp_path / "worker.log")

        def landed() -> bool:
            return set(stored_event_ids(settings, partner_id)) >= acknowledged

        wait_for(landed, timeout=60, interval=0.25, message="acknowledged events to land")
        stored = stored_event_ids(settings, partner_id)
        assert len(stored) == len(set(stored)), "an event was stored twice"
        # A 503'd request may still land (its write reached Redis, its reply
        # did not): the partner resends it and the dedup key absorbs the copy.
        assert acknowledged <= set(stored) <= {a[3] for a in answers}
    finally:
        web.stop()
        if worker is not None:
            worker.stop()
