"""Deletion on request: ``inlet events delete`` over stored rows, failed jobs and the queue."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from redis import Redis
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy.engine import Engine

from app import queue as q
from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, create_partner
from app.db import api_keys, deletion_audit
from app.ops import deletion
from app.settings import Settings
from tests.events import onside_event, thrad_event
from tests.queued import enqueue, onside_rows, thrad_rows, unreachable
from worker.onside import insert_onside_events

ALICE = "0b8a3f0e-1111-4c4c-8d8d-000000000001"
BOB = "0b8a3f0e-2222-4c4c-8d8d-000000000002"


def key_row_id(engine: Engine, settings: Settings, partner_name: str) -> int:
    """A new API key of the partner: its row id, which a queued Thrad event names."""
    new = create_api_key(engine, settings.secret_key, partner_name, "backend")
    with engine.connect() as conn:
        query = sa.select(api_keys.c.id).where(api_keys.c.key_id == new.key_id)
        return int(conn.execute(query).scalar_one())


@pytest.fixture
def key(engine: Engine, settings: Settings, partner: NewPartner) -> int:
    return key_row_id(engine, settings, partner.name)


def thrad(key: int, **fields: Any) -> dict[str, Any]:
    return thrad_event(api_key_id=key, ingest_id=str(uuid.uuid4()), **fields)


def onside(n: int, installation_id: str) -> dict[str, Any]:
    return onside_event(n, installation_id=installation_id)


def delete(inlet: Callable[..., Any], *args: str, expect: int = 0) -> Any:
    return inlet("events", "delete", "--partner", "acme", *args, expect=expect)


def audit(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(deletion_audit).order_by(deletion_audit.c.id)))


@pytest.fixture
def stored(
    settings: Settings,
    redis: Redis,
    engine: Engine,
    partner: NewPartner,
    key: int,
    drain: Callable[..., None],
) -> NewPartner:
    """acme holds Onside rows of ALICE and BOB, Thrad rows of two clients; globex holds
    ALICE's installation and client c1 too."""
    other = create_partner(engine, settings.secret_key, "globex")
    other_key = key_row_id(engine, settings, "globex")
    enqueue(settings, redis, partner, [onside(1, ALICE), onside(2, ALICE), onside(3, BOB)])
    enqueue(settings, redis, other, [onside(1, ALICE)])
    thrad_events = [
        thrad(key, client_id="client-alice", session_id="session-one"),
        thrad(key, client_id="client-alice", session_id="session-two"),
        thrad(key, client_id="client-bob", session_id="session-one"),
    ]
    enqueue(settings, redis, partner, thrad_events, endpoint="thrad")
    enqueue(settings, redis, other, [thrad(other_key, client_id="client-alice")], endpoint="thrad")
    drain()
    assert len(onside_rows(engine)) == 4 and len(thrad_rows(engine)) == 4
    return partner


def test_delete_by_installation_id_removes_that_partners_rows_only(
    inlet: Callable[..., Any], engine: Engine, stored: NewPartner, settings: Settings
) -> None:
    out = delete(inlet, "--installation-id", ALICE.upper(), "--actor", "dpo@acme").stdout
    assert "Deleted for partner 'acme', installation_id" in out
    assert "2 Onside rows, 0 Thrad rows, 0 events in 0 failed jobs" in out
    left = [(r.partner_id, r.installation_id) for r in onside_rows(engine)]
    assert sorted(left) == sorted([(stored.id, BOB), (stored.id + 1, ALICE)])
    [row] = audit(engine)
    assert (row.actor, row.identifier_kind, row.onside_rows, row.thrad_rows) == (
        "dpo@acme",
        "installation_id",
        2,
        0,
    )
    # The identifier itself is nowhere in the audit, only its keyed hash.
    assert ALICE not in str(tuple(row))
    assert row.identifier_hash == deletion.identifier_hash(
        settings.secret_key, stored.id, "installation_id", ALICE
    )


@pytest.mark.parametrize(
    ("option", "value", "left"),
    [
        ("--client-id", "client-alice", {("client-bob", "session-one")}),
        ("--session-id", "session-one", {("client-alice", "session-two")}),
    ],
)
def test_delete_by_client_or_session_id_removes_thrad_rows(
    inlet: Callable[..., Any],
    engine: Engine,
    stored: NewPartner,
    option: str,
    value: str,
    left: set[tuple[str, str]],
) -> None:
    result = orjson.loads(delete(inlet, option, value, "--json").stdout)
    assert result["thrad_rows"] == 2 and result["onside_rows"] == 0 and not result["dry_run"]
    assert value not in orjson.dumps(result).decode()
    mine = {(r.client_id, r.session_id) for r in thrad_rows(engine) if r.partner_id == stored.id}
    assert mine == left
    # globex's c1 stays.
    assert any(
        r.partner_id != stored.id and r.client_id == "client-alice" for r in thrad_rows(engine)
    )


def test_a_deletion_with_no_match_says_so_and_is_audited(
    inlet: Callable[..., Any], engine: Engine, stored: NewPartner, redis: Redis
) -> None:
    out = delete(inlet, "--client-id", "nobody").stdout
    assert "Nothing to delete" in out
    assert len(thrad_rows(engine)) == 4 and len(onside_rows(engine)) == 4
    [row] = audit(engine)
    assert (row.onside_rows, row.thrad_rows, row.failed_events) == (0, 0, 0)
    # An event of it may still be queued: the tombstone is kept all the same.
    assert redis.zcard(deletion.TOMBSTONE_KEY.format(partner_id=stored.id)) == 1


def test_a_dry_run_counts_and_changes_nothing(
    inlet: Callable[..., Any], engine: Engine, stored: NewPartner, redis: Redis
) -> None:
    result = orjson.loads(
        delete(inlet, "--client-id", "client-alice", "--dry-run", "--json").stdout
    )
    assert (result["thrad_rows"], result["dry_run"], result["tombstone_expires_at"]) == (
        2,
        True,
        None,
    )
    assert "Would delete" in delete(inlet, "--client-id", "client-alice", "--dry-run").stdout
    assert len(thrad_rows(engine)) == 4
    assert audit(engine) == []
    assert not redis.exists(deletion.TOMBSTONE_KEY.format(partner_id=stored.id))


@pytest.mark.parametrize(
    ("args", "expect", "message"),
    [
        (("--installation-id", "not-a-uuid"), 1, "must be a UUID"),
        (("--client-id", "   "), 1, "must not be empty"),
        ((), 2, "exactly one of"),
        (("--client-id", "a", "--session-id", "b"), 2, "exactly one of"),
    ],
)
def test_bad_deletions_are_refused_and_change_nothing(
    inlet: Callable[..., Any],
    engine: Engine,
    stored: NewPartner,
    args: tuple[str, ...],
    expect: int,
    message: str,
) -> None:
    result = delete(inlet, *args, expect=expect)
    assert message in result.stderr
    assert len(thrad_rows(engine)) == 4 and len(onside_rows(engine)) == 4
    assert audit(engine) == []


def test_an_unknown_partner_is_refused(inlet: Callable[..., Any], engine: Engine) -> None:
    result = inlet(
        "events", "delete", "--partner", "nobody", "--client-id", "client-alice", expect=1
    )
    assert "no partner named 'nobody'" in result.stderr


def test_failed_jobs_lose_the_identifiers_events_and_an_emptied_job_goes(
    inlet: Callable[..., Any],
    settings: Settings,
    redis: Redis,
    engine: Engine,
    partner: NewPartner,
    failed_job: Callable[..., str],
    drain: Callable[..., None],
) -> None:
    mixed = failed_job([onside(1, ALICE), onside(2, BOB), onside(3, ALICE)])
    only_alice = failed_job([onside(4, ALICE)])
    other = create_partner(engine, settings.secret_key, "globex")
    theirs = failed_job([onside(5, ALICE)], owner=other)
    queue = q.make_queue(settings, redis)
    registry = FailedJobRegistry(queue=queue)
    assert set(registry.get_job_ids()) == {mixed, only_alice, theirs}

    dry = orjson.loads(delete(inlet, "--installation-id", ALICE, "--dry-run", "--json").stdout)
    assert (dry["failed_events"], dry["failed_jobs"]) == (3, 2)
    assert len(queue.fetch_job(mixed).args[2]) == 3  # type: ignore[union-attr]

    result = orjson.loads(delete(inlet, "--installation-id", ALICE, "--json").stdout)
    assert (result["failed_events"], result["failed_jobs"]) == (3, 2)
    assert set(registry.get_job_ids()) == {mixed, theirs}
    job = queue.fetch_job(mixed)
    assert job is not None
    assert [e["installation_id"] for e in job.args[2]] == [BOB]
    assert job.meta["events"] == 1
    assert [e["installation_id"] for e in queue.fetch_job(theirs).args[2]] == [ALICE]  # type: ignore[union-attr]
    [row] = audit(engine)
    assert row.failed_events == 3

    # Requeued, what is left of the job lands; nothing of ALICE does.
    inlet("failed", "requeue", mixed)
    drain()
    assert [r.installation_id for r in onside_rows(engine)] == [BOB]


def test_an_event_still_queued_is_dropped_when_it_lands(
    inlet: Callable[..., Any],
    settings: Settings,
    redis: Redis,
    engine: Engine,
    partner: NewPartner,
    key: int,
    drain: Callable[..., None],
) -> None:
    enqueue(settings, redis, partner, [onside(1, ALICE), onside(2, BOB)])
    enqueue(
        settings,
        redis,
        partner,
        [thrad(key, client_id="client-alice"), thrad(key, client_id="client-bob")],
        endpoint="thrad",
    )
    delete(inlet, "--installation-id", ALICE)
    delete(inlet, "--client-id", "client-alice")
    drain()
    assert [r.installation_id for r in onside_rows(engine)] == [BOB]
    assert [r.client_id for r in thrad_rows(engine)] == ["client-bob"]
    # Only the deleting partner's: globex's events of the same ids land.
    other = create_partner(engine, settings.secret_key, "globex")
    enqueue(settings, redis, other, [onside(3, ALICE)])
    drain()
    assert sorted(r.installation_id for r in onside_rows(engine)) == [ALICE, BOB]


def test_a_job_whose_events_are_all_deleted_succeeds_with_nothing_stored(
    inlet: Callable[..., Any],
    settings: Settings,
    redis: Redis,
    engine: Engine,
    partner: NewPartner,
    drain: Callable[..., None],
) -> None:
    enqueue(settings, redis, partner, [onside(1, ALICE)])
    delete(inlet, "--installation-id", ALICE)
    drain()
    assert onside_rows(engine) == []
    assert FailedJobRegistry(queue=q.make_queue(settings, redis)).count == 0


def test_tombstones_expire(redis: Redis) -> None:
    """Written with a past expiry (a deletion INLET_TOMBSTONE_HOURS ago): gone."""
    deletion.add_tombstone(redis, 7, "live", hours=1)
    deletion.add_tombstone(redis, 7, "expired", hours=-0.01)
    assert deletion.live_tombstones(redis, 7) == frozenset({"live"})
    ttl = redis.ttl(deletion.TOMBSTONE_KEY.format(partner_id=7))
    assert 3500 < ttl <= 3601, "the set expires with its last tombstone"


def test_the_tombstone_lasts_inlet_tombstone_hours(
    settings: Settings, redis: Redis, partner: NewPartner, engine: Engine
) -> None:
    from tests.cli_runner import run_cli

    out = run_cli(
        settings.replace(tombstone_hours=2.0),
        *("events", "delete", "--partner", "acme", "--client-id", "x", "--json"),
    )
    assert orjson.loads(out.stdout)["tombstone_expires_at"]
    ttl = redis.ttl(deletion.TOMBSTONE_KEY.format(partner_id=partner.id))
    assert 7100 < ttl <= 7201


def test_the_audit_can_be_listed_and_searched_by_identifier(
    inlet: Callable[..., Any], stored: NewPartner
) -> None:
    delete(inlet, "--client-id", "client-alice", "--actor", "support")
    delete(inlet, "--installation-id", BOB, "--actor", "support")
    rows = inlet("events", "deletions", "--partner", "acme", "--json").stdout.splitlines()
    assert [orjson.loads(r)["identifier_kind"] for r in rows] == ["client_id", "installation_id"]
    [found] = inlet(
        "events", "deletions", "--partner", "acme", "--client-id", "client-alice", "--json"
    ).stdout.splitlines()
    assert orjson.loads(found)["thrad_rows"] == 2
    assert "client-alice" not in found
    none = inlet("events", "deletions", "--partner", "acme", "--client-id", "client-nobody")
    assert "No deletions recorded" in none.stderr


def test_redis_unavailable_deletes_nothing(
    settings: Settings, engine: Engine, stored: NewPartner
) -> None:
    from tests.cli_runner import run_cli

    gone = settings.replace(redis_url="redis://127.0.0.1:9/0")
    result = run_cli(
        gone, "events", "delete", "--partner", "acme", "--client-id", "client-alice", expect=1
    )
    assert "Redis is unavailable" in result.stderr
    assert len(thrad_rows(engine)) == 4 and audit(engine) == []


def test_a_failed_thrad_job_is_scrubbed_too(
    inlet: Callable[..., Any],
    settings: Settings,
    redis: Redis,
    engine: Engine,
    partner: NewPartner,
    key: int,
    drain: Callable[..., None],
) -> None:
    quick = settings.replace(retry_delays=(0,))
    job_id = enqueue(
        quick,
        redis,
        partner,
        [thrad(key, session_id="session-one"), thrad(key, session_id="session-two")],
        endpoint="thrad",
    )
    drain(unreachable(quick))
    queue = q.make_queue(settings, redis)
    assert job_id in FailedJobRegistry(queue=queue)
    delete(inlet, "--session-id", "session-one")
    job = queue.fetch_job(job_id)
    assert job is not None and [e["session_id"] for e in job.args[2]] == ["session-two"]


def test_a_job_running_when_the_tombstone_is_written_is_waited_for(
    inlet: Callable[..., Any],
    settings: Settings,
    redis: Redis,
    engine: Engine,
    partner: NewPartner,
) -> None:
    """A job that read the tombstones just before the deletion wrote its own: its
    rows land after the deletion began, and must be deleted all the same."""
    queue = q.make_queue(settings, redis)
    job_id = enqueue(settings, redis, partner, [onside(1, ALICE)])
    entry = f"{job_id}:execution-1"
    redis.zadd(StartedJobRegistry(queue=queue).key, {entry: time.time() + 60})

    def finish_the_job() -> None:
        time.sleep(0.5)  # the job's own duration, past the tombstone's write
        with engine.begin() as conn:
            insert_onside_events(
                conn,
                partner_id=partner.id,
                received_at=datetime.now(UTC),
                events=[onside(1, ALICE)],
                job_id=job_id,
            )
        redis.zrem(StartedJobRegistry(queue=queue).key, entry)

    worker = threading.Thread(target=finish_the_job)
    worker.start()
    try:
        result = orjson.loads(delete(inlet, "--installation-id", ALICE, "--json").stdout)
    finally:
        worker.join()
    assert result["onside_rows"] == 1
    assert onside_rows(engine) == []
