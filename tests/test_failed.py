"""Failed jobs from the command line: a real failure, list, show, requeue, delete."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app import queue as q
from app.credentials.admins import NewAdmin
from app.credentials.partners import NewPartner, create_partner
from app.main import create_app
from app.ops import failed
from app.settings import Settings
from tests.api import basic_auth
from tests.cli_runner import run_cli
from tests.events import onside_event
from tests.queued import enqueue, event_ids, unreachable
from tests.test_health import scrape


def failed_rows(settings: Settings, *args: str) -> list[dict]:
    out = run_cli(settings, "failed", "list", "--json", *args).stdout
    return [orjson.loads(line) for line in out.splitlines()]


def test_failed_list_shows_a_real_failure_with_its_attempts_and_error(
    settings: Settings,
    failed_job: Callable[..., str],
) -> None:
    job_id = failed_job([onside_event(n) for n in range(3)])
    [row] = failed_rows(settings)
    assert row["job_id"] == job_id
    assert row["partner"] == "acme"
    assert row["endpoint"] == "onside"
    assert row["events"] == 3
    assert row["attempts"] == 3  # the first try and both retries
    first, last = (datetime.fromisoformat(row[k]) for k in ("first_failure", "last_failure"))
    assert first <= last
    assert row["error"].startswith("sqlalchemy.exc.OperationalError")
    text = run_cli(settings, "failed", "list").stdout
    assert job_id in text and "OperationalError" in text


def test_failed_list_filters_by_partner(
    settings: Settings,
    engine: Engine,
    failed_job: Callable[..., str],
) -> None:
    other = create_partner(engine, settings.secret_key, "globex")
    failed_job([onside_event(1)])
    theirs = failed_job([onside_event(2)], other)
    assert [r["job_id"] for r in failed_rows(settings, "--partner", "globex")] == [theirs]
    assert len(failed_rows(settings)) == 2
    assert failed_rows(settings, "--partner", "nobody") == []


def test_failed_show_prints_traceback_meta_and_first_events(
    settings: Settings,
    failed_job: Callable[..., str],
) -> None:
    events = [onside_event(n) for n in range(8)]
    job_id = failed_job(events)
    out = run_cli(settings, "failed", "show", job_id, "--events", "2").stdout
    # The verdict first, as the admin page opens with it (the fixture's
    # failure is a database that is gone: transient).
    assert out.startswith("Transient: a later attempt can succeed"), out[:200]
    assert "\nwhat to do:" in out
    assert "Traceback (most recent call last)" in out
    assert '"partner": "acme"' in out and '"attempts": 3' in out
    assert "first 2 of 8 events:" in out
    assert events[0]["event_id"] in out and events[1]["event_id"] in out
    assert events[2]["event_id"] not in out


def test_failed_show_names_each_request_a_grouped_job_carries(
    settings: Settings, redis: Redis, partner: NewPartner, drain: Callable[..., None]
) -> None:
    """Group commit puts several partner requests in one job: show lists their ids."""
    quick = settings.replace(retry_delays=(0, 0))
    received = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    submissions = [
        q.Submission("onside", partner.id, "acme", [onside_event(n)], received, f"req-{n}")
        for n in range(3)
    ]
    (job_id, *others) = q.enqueue_group(q.make_queue(quick, redis), quick, submissions)
    assert set(others) == {job_id}
    drain(unreachable(quick))
    out = run_cli(settings, "failed", "show", job_id).stdout
    assert "3 requests:" in out
    for n in range(3):
        assert f"req-{n}  received 2026-05-05T12:00:00+00:00  1 event" in out


def test_requeue_with_a_good_worker_lands_every_row_once(
    settings: Settings,
    redis: Redis,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
    failed_job: Callable[..., str],
) -> None:
    events = [onside_event(n) for n in range(4)]
    job_id = failed_job(events)
    # Half the batch lands meanwhile (say the partner resent it): requeue must not double it.
    enqueue(settings, redis, partner, events[:2])
    drain()
    assert run_cli(settings, "failed", "requeue", job_id).stdout.strip() == f"Requeued {job_id}."
    assert failed_rows(settings) == []
    drain()
    assert event_ids(engine) == sorted(e["event_id"] for e in events)
    # Requeueing it again is refused: it is no longer failed.
    result = run_cli(settings, "failed", "requeue", job_id, expect=1)
    assert "no failed job" in result.stderr


def test_requeued_job_gets_its_retries_back(
    settings: Settings,
    redis: Redis,
    failed_job: Callable[..., str],
) -> None:
    job_id = failed_job([onside_event(1)])
    queue = q.make_queue(settings, redis)
    failed.requeue(queue, job_id, retries=2)
    job = queue.fetch_job(job_id)
    assert job is not None and job.retries_left == 2 and job.meta["requeued"] == 1


def test_requeue_all_of_one_partner(
    settings: Settings,
    drain: Callable[..., None],
    engine: Engine,
    failed_job: Callable[..., str],
) -> None:
    other = create_partner(engine, settings.secret_key, "globex")
    failed_job([onside_event(1)])
    failed_job([onside_event(2)])
    kept = failed_job([onside_event(3)], other)
    out = run_cli(settings, "failed", "requeue", "--all", "--partner", "acme").stdout
    assert out.strip() == "Requeued 2 failed jobs."
    assert [r["job_id"] for r in failed_rows(settings)] == [kept]
    drain()
    assert event_ids(engine) == [onside_event(1)["event_id"], onside_event(2)["event_id"]]


def test_requeue_needs_a_job_id_or_all(settings: Settings) -> None:
    assert "either a JOB_ID or --all" in run_cli(settings, "failed", "requeue", expect=2).stderr
    result = run_cli(settings, "failed", "requeue", "x", "--partner", "p", expect=2)
    assert "--partner goes with --all" in result.stderr


def test_delete_drops_the_job_and_its_batch(
    settings: Settings,
    redis: Redis,
    drain: Callable[..., None],
    engine: Engine,
    failed_job: Callable[..., str],
) -> None:
    job_id = failed_job([onside_event(1)])
    assert run_cli(settings, "failed", "delete", job_id).stdout.strip() == f"Deleted {job_id}."
    assert failed_rows(settings) == []
    assert q.make_queue(settings, redis).fetch_job(job_id) is None
    drain()
    assert event_ids(engine) == []
    assert "no failed job" in run_cli(settings, "failed", "delete", job_id, expect=1).stderr


def test_error_line_is_the_exception_not_its_parameters() -> None:
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    g()\n'
        "sqlalchemy.exc.IntegrityError: (psycopg.errors.ForeignKeyViolation) violates fk\n"
        "DETAIL:  Key (partner_id)=(9) is not present.\n"
        "[SQL: INSERT INTO events ...]\n[parameters: {'payload': 'secret'}]\n"
        "(Background on this error at: https://sqlalche.me/e/20/gkpj)\n"
    )
    line = failed.error_line(traceback)
    assert line.startswith("sqlalchemy.exc.IntegrityError: (psycopg.errors.ForeignKeyViolation)")
    assert "secret" not in line


def test_list_can_be_limited_to_the_newest_failures(
    settings: Settings,
    redis: Redis,
    failed_job: Callable[..., str],
) -> None:
    ids = [failed_job([onside_event(n)]) for n in range(3)]
    queue = q.make_queue(settings, redis)
    everything = failed.list_failed(queue)
    assert [job.job_id for job in everything] == ids[::-1]
    newest = failed.list_failed(queue, limit=2)
    assert len(newest) == 2 and {job.job_id for job in newest} <= set(ids)
    assert newest == sorted(newest, key=lambda job: job.last_failure, reverse=True)


def test_oldest_waiting_job_is_read_from_real_jobs(
    settings: Settings, redis: Redis, partner: NewPartner, admin: NewAdmin
) -> None:
    """Three waiting jobs: the oldest one's age, never "none waiting" (RQ 3's
    ``get_job_ids(0, 0)`` is [], which hid it everywhere)."""
    queue = q.make_queue(settings, redis)
    assert failed.queue_state(queue).oldest_age_seconds is None
    first = enqueue(settings, redis, partner, [onside_event(1)])
    for n in (2, 3):
        enqueue(settings, redis, partner, [onside_event(n)])
    enqueued_at = queue.fetch_job(first).enqueued_at.replace(tzinfo=UTC)
    state = failed.queue_state(queue, now=enqueued_at + timedelta(seconds=42))
    assert (state.depth, state.oldest_age_seconds) == (3, 42.0)
    with TestClient(create_app(settings)) as client:
        metrics = scrape(client, admin)
        page = client.get("/admin", headers=basic_auth(admin)).text
    assert metrics[("inlet_queue_depth", frozenset())] == 3
    assert metrics[("inlet_queue_oldest_job_age_seconds", frozenset())] > 0
    assert "none waiting" not in page
