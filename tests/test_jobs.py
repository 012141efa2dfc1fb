"""Workers: the idempotent insert, transient failures, the failed registry, requeue."""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from redis import Redis
from rq import Callback, Queue
from rq.registry import FailedJobRegistry
from rq.webhook import Webhook
from sqlalchemy.engine import Engine

from app import queue as q
from app.credentials.partners import NewPartner
from app.db import events as events_table
from app.ops.failed import show_failed
from app.settings import Settings
from tests.events import onside_event
from tests.processes import INLET, process_env
from tests.queued import enqueue, event_ids, unreachable
from worker.jobs import is_transient

# JSON as a partner may nest it: unicode, floats, nulls and booleans survive the queue and SQL.
NESTED = {"n": 1, "nested": {"list": [1, 2.5, None, True, "é"]}}


def test_a_batch_lands_with_every_column(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
) -> None:
    job_id = enqueue(
        settings, redis, partner, [onside_event(1, event_name=" Sign_Up ", payload=NESTED)]
    )
    drain()
    with engine.connect() as conn:
        row = conn.execute(sa.select(events_table)).one()
    assert row.partner_id == partner.id
    assert row.event_name == "sign_up"
    assert row.sent_event_name == " Sign_Up "
    assert row.payload == NESTED
    assert row.event_datetime.replace(tzinfo=UTC) == datetime(2026, 5, 5, 12, tzinfo=UTC)
    assert row.job_id == job_id


def test_job_logs_inserted_and_duplicates(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    enqueue(settings, redis, partner, [onside_event(1), onside_event(2)])
    enqueue(settings, redis, partner, [onside_event(2), onside_event(3), onside_event(3)])
    with caplog.at_level(logging.INFO, logger="inlet.jobs"):
        drain()
    lines = [r.getMessage() for r in caplog.records if r.name == "inlet.jobs"]
    assert '"inserted":2,"duplicates":0' in lines[0]
    assert '"inserted":1,"duplicates":2' in lines[1]


def test_database_down_is_retried_then_failed_with_the_batch_intact(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
) -> None:
    quick = settings.replace(retry_delays=(0, 0))
    events = [onside_event(n) for n in range(5)]
    job_id = enqueue(quick, redis, partner, events)
    drain(unreachable(quick))
    registry = FailedJobRegistry(queue=q.make_queue(settings, redis))
    assert registry.get_job_ids() == [job_id]
    job = registry.get_queue().fetch_job(job_id)
    assert job is not None
    assert job.retries_left == 0  # both retries were spent
    assert job.args[2] == events
    assert "OperationalError" in (job.latest_result().exc_string or "")
    assert event_ids(engine) == []


def test_requeued_job_lands_exactly_once_after_a_partial_landing(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
) -> None:
    """Part of the batch landed already (sent again elsewhere): requeue lands the rest once."""
    quick = settings.replace(retry_delays=())
    failed_id = enqueue(quick, redis, partner, [onside_event(n) for n in range(4)])
    drain(unreachable(quick))
    enqueue(quick, redis, partner, [onside_event(0), onside_event(1)])
    drain()
    registry = FailedJobRegistry(queue=q.make_queue(settings, redis))
    registry.requeue(failed_id)
    drain()
    drain()
    assert event_ids(engine) == [onside_event(n)["event_id"] for n in range(4)]
    assert registry.get_job_ids() == []


def test_permanent_error_is_not_retried(
    settings: Settings, redis: Redis, partner: NewPartner, drain: Callable[..., None]
) -> None:
    """A batch the database refuses for good (here, an unknown partner) fails at once."""
    ghost = NewPartner(id=999_999, name="ghost", username="", password="")
    job_id = enqueue(settings.replace(retry_delays=(0, 0, 0)), redis, ghost, [onside_event(1)])
    drain()
    job = Queue(settings.queue_name, connection=redis, serializer=q.JSONSerializer).fetch_job(
        job_id
    )
    assert job is not None and job.is_failed
    assert job.retries_left == 0
    assert "IntegrityError" in (job.latest_result().exc_string or "")


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (sa.exc.OperationalError("x", {}, Exception("connection refused")), True),
        (sa.exc.IntegrityError("x", {}, Exception("fk")), False),
        (ValueError("bug"), False),
        (TimeoutError(), True),
        # psycopg raises an index row too large for a btree as an OperationalError.
        (sa.exc.OperationalError("x", {}, psycopg.errors.ProgramLimitExceeded("index row")), False),
        (sa.exc.OperationalError("x", {}, psycopg.errors.LockNotAvailable("lock")), True),
    ],
)
def test_transient_errors_are_told_from_permanent_ones(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


# -- only Inlet's own job functions run ------------------------------------------------


def leave_a_mark(job: Any, *_: Any) -> None:
    """A harmless side effect, used as a callback: touch the file the job names."""
    Path(job.meta["mark"]).touch()


@pytest.mark.parametrize(
    ("func", "args"),
    [
        ("os.system", lambda mark: (f"touch {mark}",)),
        ("os.mkdir", lambda mark: (str(mark),)),
        ("pathlib.Path.touch", lambda mark: (str(mark),)),
    ],
    ids=["os.system", "os.mkdir", "a method"],
)
def test_a_job_for_any_other_function_fails_without_running(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    tmp_path: Path,
    func: str,
    args: Callable[[Path], tuple[str, ...]],
) -> None:
    """Anyone who can write to Redis could queue a call to any importable function."""
    mark = tmp_path / "ran"
    queue = q.make_queue(settings, redis)
    foreign = queue.enqueue_call(func, args=args(mark), meta={"partner": partner.name})
    ours = enqueue(settings, redis, partner, [onside_event(1)])
    worker = subprocess.run(
        [INLET, "worker", "--burst"],
        env=process_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert event_ids(engine) == [onside_event(1)["event_id"]], "the worker ran nothing at all"
    assert not mark.exists(), f"{func} ran on the worker"
    assert foreign.id in FailedJobRegistry(queue=queue)
    assert ours not in FailedJobRegistry(queue=queue)
    failed, _ = show_failed(queue, foreign.id)
    assert func in failed.error and "not one of Inlet's job functions" in failed.error
    assert "not run" in failed.error


def test_an_inlet_job_with_callbacks_or_webhooks_fails_without_running(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    engine: Engine,
    tmp_path: Path,
    drain: Callable[..., None],
) -> None:
    """Callbacks name functions too, and webhooks make the worker send requests anywhere."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0)
    port = listener.getsockname()[1]
    queue = q.make_queue(settings, redis)
    marks = [tmp_path / "success", tmp_path / "failure"]
    jobs = [
        queue.enqueue_call(
            q.JOB_FUNCTIONS["onside"],
            args=(partner.id, "2026-05-05T12:00:01+00:00", [onside_event(1)]),
            meta={"mark": str(marks[0])},
            on_success=Callback(f"{__name__}.leave_a_mark"),
        ),
        queue.enqueue_call(
            q.JOB_FUNCTIONS["onside"],
            args=(partner.id, "2026-05-05T12:00:01+00:00", [onside_event(2)]),
            meta={"mark": str(marks[1])},
            on_failure=Callback(f"{__name__}.leave_a_mark"),
        ),
        queue.enqueue_call(
            q.JOB_FUNCTIONS["onside"],
            args=(partner.id, "2026-05-05T12:00:01+00:00", [onside_event(3)]),
            webhooks=[
                Webhook(f"http://127.0.0.1:{port}/", status, timeout=1)
                for status in ("finished", "failed")
            ],
        ),
    ]
    ours = enqueue(settings, redis, partner, [onside_event(4)])
    with listener:
        drain()
        try:
            webhook, _ = listener.accept()
        except BlockingIOError:
            sent = False
        else:
            webhook.close()
            sent = True
    assert not sent, "the worker sent a webhook"
    assert event_ids(engine) == [onside_event(4)["event_id"]], "the worker ran nothing at all"
    assert not any(mark.exists() for mark in marks)
    registry = FailedJobRegistry(queue=queue)
    assert all(job.id in registry for job in jobs) and ours not in registry
