"""Group commit: many requests share one MULTI/EXEC, each answered after the write."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job
from sqlalchemy.engine import Engine

from app import queue as q
from app.credentials.partners import create_partner
from app.db import events as events_table
from app.groupcommit import Coalescer
from app.queue import Submission, enqueue_group
from app.settings import Settings


def onside_events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "installation_id": "550e8400-e29b-41d4-a716-446655440000",
            "event_name": "purchase_completed",
            "event_datetime": "2026-05-05T12:00:00+00:00",
            "payload": {"n": i},
        }
        for i in range(n)
    ]


def submission(partner_id: int, partner_name: str, n: int = 1) -> Submission:
    return Submission(
        endpoint="onside",
        partner_id=partner_id,
        partner_name=partner_name,
        events=onside_events(n),
        received_at=datetime.now(UTC),
        request_id=uuid.uuid4().hex,
    )


class RecordingWriter:
    """A writer that records each group, optionally held until released."""

    def __init__(self, hold_first: bool = False) -> None:
        self.groups: list[list[Submission]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, submissions: Sequence[Submission]) -> list[str]:
        self.groups.append(list(submissions))
        self.started.set()
        if len(self.groups) == 1:
            assert self.release.wait(10), "the first write was never released"
        return [f"job-{len(self.groups)}"] * len(submissions)


def group_commit(write: Any, max_events: int, wait_seconds: float) -> Coalescer[Submission, str]:
    return Coalescer(
        write,
        max_size=max_events,
        wait_seconds=wait_seconds,
        size=lambda submission: len(submission.events),
    )


async def _gather(
    commit: Coalescer[Submission, str], subs: list[Submission]
) -> list[str | BaseException]:
    return await asyncio.gather(*(commit.submit(s) for s in subs), return_exceptions=True)


def test_requests_of_one_loop_turn_share_one_write() -> None:
    writer = RecordingWriter()
    commit = group_commit(writer, max_events=1000, wait_seconds=5.0)
    subs = [submission(1, "acme") for _ in range(50)]
    assert asyncio.run(_gather(commit, subs)) == ["job-1"] * 50
    assert len(writer.groups) == 1
    assert [s.request_id for s in writer.groups[0]] == [s.request_id for s in subs]


def test_a_group_is_written_when_full() -> None:
    writer = RecordingWriter()
    commit = group_commit(writer, max_events=10, wait_seconds=5.0)
    subs = [submission(1, "acme", n=3) for _ in range(7)]  # 21 events
    assert all(isinstance(j, str) for j in asyncio.run(_gather(commit, subs)))
    sizes = [sum(len(s.events) for s in group) for group in writer.groups]
    assert sum(sizes) == 21 and max(sizes) <= 10, sizes
    assert len(writer.groups) >= 3


def test_a_full_batch_is_written_alone_at_once() -> None:
    """It neither waits for the group nor joins the small requests pending beside it."""
    writer = RecordingWriter(hold_first=True)
    commit = group_commit(writer, max_events=10, wait_seconds=60.0)

    async def scenario() -> None:
        first = asyncio.ensure_future(commit.submit(submission(1, "acme")))
        await asyncio.to_thread(writer.started.wait, 5)  # the first write is in flight, held
        small = asyncio.ensure_future(commit.submit(submission(1, "acme")))
        await asyncio.sleep(0)
        full = submission(2, "globex", n=10)
        await asyncio.wait_for(commit.submit(full), 5)  # not held behind the 60 s wait
        assert writer.groups[-1] == [full]
        assert not small.done()
        writer.release.set()
        await asyncio.wait_for(asyncio.gather(first, small), 5)

    asyncio.run(scenario())


def test_a_group_waits_at_most_the_group_wait_behind_a_write_in_flight() -> None:
    writer = RecordingWriter(hold_first=True)
    commit = group_commit(writer, max_events=1000, wait_seconds=0.05)

    async def scenario() -> None:
        first = asyncio.ensure_future(commit.submit(submission(1, "acme")))
        await asyncio.to_thread(writer.started.wait, 5)
        # The first write is stuck: the second group goes out after its wait anyway.
        await asyncio.wait_for(commit.submit(submission(1, "acme")), 5)
        assert len(writer.groups) == 2 and not first.done()
        writer.release.set()
        await asyncio.wait_for(first, 5)

    asyncio.run(scenario())


def test_every_request_of_a_failed_group_sees_the_failure() -> None:
    def failing(submissions: Sequence[Submission]) -> list[str]:
        raise RedisError("connection refused")

    commit = group_commit(failing, max_events=1000, wait_seconds=5.0)
    outcomes = asyncio.run(_gather(commit, [submission(1, "acme") for _ in range(5)]))
    assert all(isinstance(o, RedisError) for o in outcomes), outcomes


def test_a_request_whose_client_went_away_is_still_written_with_its_group() -> None:
    writer = RecordingWriter(hold_first=True)
    commit = group_commit(writer, max_events=1000, wait_seconds=60.0)
    gone = submission(1, "acme")

    async def scenario() -> None:
        waiter = asyncio.ensure_future(commit.submit(gone))
        await asyncio.to_thread(writer.started.wait, 5)
        waiter.cancel()  # what the server does to a request whose client left
        await asyncio.sleep(0)
        assert waiter.cancelled()
        writer.release.set()
        # The write still completes, with the cancelled request's events in it.
        while commit.in_flight:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert writer.groups == [[gone]]


def test_a_written_group_holds_one_job_per_format_and_partner(
    settings: Settings, redis: Redis
) -> None:
    queue = q.make_queue(settings, redis)
    subs = [
        submission(1, "acme"),
        submission(2, "globex", n=3),
        submission(1, "acme", n=2),
        Submission("thrad", 1, "acme", [{"event_name": "x"}], datetime.now(UTC), "r-thrad"),
    ]
    job_ids = enqueue_group(queue, settings, subs)
    assert job_ids[0] == job_ids[2] and len(set(job_ids)) == 3
    assert queue.count == 3
    jobs = [Job.fetch(i, connection=redis, serializer=q.JSONSerializer) for i in job_ids]
    assert [(j.meta["endpoint"], j.meta["partner"], j.meta["events"]) for j in jobs] == [
        ("onside", "acme", 3),
        ("onside", "globex", 3),
        ("onside", "acme", 3),
        ("thrad", "acme", 1),
    ]
    acme = jobs[0]
    assert acme.func_name == q.JOB_FUNCTIONS["onside"]
    partner_id, received_at, events = acme.args
    assert partner_id == 1 and events == subs[0].events + subs[2].events
    assert received_at == min(subs[0].received_at, subs[2].received_at).isoformat()
    assert [r["request_id"] for r in acme.meta["requests"]] == [
        subs[0].request_id,
        subs[2].request_id,
    ]
    assert acme.meta["partner"] == "acme" and acme.meta["events"] == 3


def test_a_group_that_redis_refuses_leaves_nothing_queued(settings: Settings, redis: Redis) -> None:
    queue = q.make_queue(settings, redis)
    redis.config_set("maxmemory", "1")
    try:
        with pytest.raises(RedisError):
            enqueue_group(queue, settings, [submission(1, "acme"), submission(2, "globex")])
    finally:
        redis.config_set("maxmemory", "0")
    assert queue.count == 0
    assert not redis.keys("rq:job:*")


@pytest.fixture
def partners(engine: Engine, settings: Settings) -> list[tuple[int, str]]:
    made = [create_partner(engine, settings.secret_key, n) for n in ("acme", "globex", "initech")]
    return [(p.id, p.name) for p in made]


@hsettings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 4), st.booleans()),
        min_size=1,
        max_size=25,
    ),
    max_events=st.integers(1, 8),
)
def test_any_interleaving_lands_each_accepted_event_once_under_its_partner(
    settings: Settings,
    redis: Redis,
    engine: Engine,
    drain: Any,
    partners: list[tuple[int, str]],
    plan: list[tuple[int, int, bool]],
    max_events: int,
) -> None:
    """Concurrent requests from several partners, some resent: each event lands once."""
    redis.flushall()
    with engine.begin() as conn:
        conn.execute(sa.delete(events_table))
    queue = q.make_queue(settings, redis)
    commit = group_commit(
        lambda subs: enqueue_group(queue, settings, subs),
        max_events=max_events,
        wait_seconds=0.001,
    )
    subs: list[Submission] = []
    for which, n, resend in plan:
        if resend and subs:
            earlier = subs[-1]
            subs.append(
                Submission(
                    "onside",
                    earlier.partner_id,
                    earlier.partner_name,
                    earlier.events,
                    datetime.now(UTC),
                    uuid.uuid4().hex,
                )
            )
        else:
            pid, name = partners[which]
            subs.append(submission(pid, name, n))

    async def scenario() -> list[str | BaseException]:
        async def one(s: Submission, delay: int) -> None:
            for _ in range(delay):
                await asyncio.sleep(0)
            await commit.submit(s)

        return await asyncio.gather(*(one(s, i % 3) for i, s in enumerate(subs)))

    assert asyncio.run(scenario()) == [None] * len(subs)
    drain()
    expected = {(s.partner_id, e["event_id"]) for s in subs for e in s.events}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events_table.c.partner_id, events_table.c.event_id)).all()
    assert len(rows) == len(expected)
    assert {(pid, str(eid)) for pid, eid in rows} == expected
