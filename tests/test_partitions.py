"""PostgreSQL's partitioned event tables: the dedup window, retention, prune, the plan.

What the window means is spelled out in docs/storage.md; these tests pin
each sentence of it, and that the keys stay exact across partitions and
between concurrent transactions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Connection, Engine

from app import partitions
from app.cli.events import export_queries
from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner, create_partner
from app.db import make_engine
from app.settings import Settings
from tests.cli_runner import run_cli
from tests.conftest import empty_tables
from tests.events import onside_event, thrad_event
from tests.services import TEST_SECRET_KEY, make_settings, wait_for
from worker import context
from worker.dedup import lock_key_periods_sql
from worker.onside import insert_onside_batches, insert_onside_events
from worker.runner import PARTITIONS_LOCK, maintain_partitions
from worker.sql import Batch
from worker.thrad import insert_thrad_events

DAY = timedelta(days=1)


def midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


TODAY = midnight(datetime.now(UTC))


def send_onside(
    engine: Engine, partner_id: int, received_at: datetime, *ns: int, days: int = 30
) -> int:
    """One worker job's insert of the reference events numbered ``ns``; return rows stored."""
    with engine.begin() as conn:
        return insert_onside_events(
            conn,
            partner_id=partner_id,
            received_at=received_at,
            events=[onside_event(n) for n in ns],  # type: ignore[misc]
            job_id=None,
            dedup_days=days,
        )


def stored_in(engine: Engine, table: str = "events") -> list[tuple[str, datetime]]:
    """(partition, received_at) of every stored row."""
    with engine.connect() as conn:
        return [
            (str(part), received)
            for part, received in conn.execute(
                sa.text(f"SELECT tableoid::regclass, received_at FROM {table} ORDER BY id")
            )
        ]


def make_days(conn: Connection, table: str, *days: datetime) -> None:
    conn.execute(
        sa.text("SELECT partman.create_partition_time(:parent, CAST(:days AS timestamptz[]))"),
        {"parent": f"public.{table}", "days": [d.isoformat() for d in days]},
    )


def test_a_resend_on_another_day_lands_once_across_partitions(pg: Engine, acme: NewPartner) -> None:
    assert send_onside(pg, acme.id, TODAY + timedelta(hours=23), 1, 2) == 2
    assert send_onside(pg, acme.id, TODAY + DAY + timedelta(hours=1), 2, 3) == 1
    rows = stored_in(pg)
    assert [part for part, _ in rows] == [
        f"events_p{TODAY:%Y_%m_%d}",
        f"events_p{TODAY:%Y_%m_%d}",
        f"events_p{TODAY + DAY:%Y_%m_%d}",
    ]


def test_a_repeat_within_one_batch_lands_once(pg: Engine, acme: NewPartner) -> None:
    assert send_onside(pg, acme.id, TODAY, 7, 7, 8, 7) == 2
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 2


def test_within_the_window_a_resend_lands_once_across_a_period_boundary(
    pg: Engine, acme: NewPartner
) -> None:
    """With a one-day window, periods are days: one second before midnight and
    an hour after fall in different periods, less than a window apart."""
    first = TODAY + DAY - timedelta(seconds=1)
    assert send_onside(pg, acme.id, first, 1, days=1) == 1
    assert send_onside(pg, acme.id, first + timedelta(hours=1), 1, days=1) == 0
    assert send_onside(pg, acme.id, first + timedelta(hours=23), 1, days=1) == 0
    assert len(stored_in(pg)) == 1


def test_after_the_window_a_resend_lands_again_unless_a_receipt_was_in_an_adjacent_period(
    pg: Engine, acme: NewPartner
) -> None:
    """The rule docs/storage.md states: a receipt is dropped if an earlier receipt
    of the same key (stored or dropped) fell in the same period, the one before or
    the one after; so within one window of the latest receipt always, two windows
    on never, and in between by period."""
    first = TODAY + timedelta(seconds=1)  # early in its period (windows of 1 day)
    assert send_onside(pg, acme.id, first, 1, days=1) == 1
    # 1.5 windows later, in the next period: dropped.
    assert send_onside(pg, acme.id, first + timedelta(hours=36), 1, days=1) == 0
    # A dropped receipt counts too: a day after it, in the period after its own.
    assert send_onside(pg, acme.id, first + 2 * DAY, 1, days=1) == 0
    late = TODAY + DAY - timedelta(seconds=1)  # late in its period
    assert send_onside(pg, acme.id, late, 2, days=1) == 1
    # 1.5 windows later, two periods on: stored again.
    assert send_onside(pg, acme.id, late + timedelta(hours=36), 2, days=1) == 1
    # Two windows after the latest receipt of event 1: stored again.
    assert send_onside(pg, acme.id, first + 4 * DAY, 1, days=1) == 1
    assert len(stored_in(pg)) == 4


def second_waits_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as watcher:
        return bool(
            watcher.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type"
                    " = 'Lock' AND query LIKE '%event_keys%'"
                )
            ).scalar_one()
        )


def first_holds_while_second_waits(
    pg: Engine,
    settings: Settings,
    first: Callable[[Connection], int],
    second: Callable[[Engine], int],
) -> int:
    """Run ``first`` in a transaction that stays open until ``second``, on
    another connection, waits on a lock; commit it; return what ``second`` stored."""
    results: list[int] = []
    other = make_engine(settings.database_url)
    try:
        with pg.begin() as conn:
            assert first(conn) == 1
            thread = threading.Thread(target=lambda: results.append(second(other)))
            thread.start()
            wait_for(lambda: second_waits_on_a_lock(pg), message="the second insert to wait")
        thread.join(30)
    finally:
        other.dispose()
    (stored,) = results
    return stored


@pytest.mark.parametrize(
    "first_offset, second_offset",
    [(-1, 1), (1, -1)],
    ids=["the-later-period-second", "a-late-job-of-the-earlier-period-second"],
)
def test_concurrent_resends_in_adjacent_periods_land_once(
    pg: Engine, pg_settings: Settings, acme: NewPartner, first_offset: int, second_offset: int
) -> None:
    """Two transactions, one each side of a period boundary, in either order:
    each writes its key under its own period and reads the other's, so the
    second must wait for the first (a table lock, migration 0007) and, once
    the first commits, find its key and store nothing."""
    boundary = TODAY + DAY

    def first(conn: Connection) -> int:
        return insert_onside_events(
            conn,
            partner_id=acme.id,
            received_at=boundary + timedelta(seconds=first_offset),
            events=[onside_event(5)],  # type: ignore[list-item]
            job_id=None,
            dedup_days=1,
        )

    second = boundary + timedelta(seconds=second_offset)
    stored = first_holds_while_second_waits(
        pg, pg_settings, first, lambda other: send_onside(other, acme.id, second, 5, days=1)
    )
    assert stored == 0
    assert len(stored_in(pg)) == 1


def test_a_receipt_writes_one_key_and_a_late_job_meets_the_period_after_its_own(
    pg: Engine, acme: NewPartner
) -> None:
    """Each receipt writes its key once, under its own period; a job received
    in the period before a stored receipt's, run after it (a replay, a
    backlog), reads that period and is dropped."""
    assert send_onside(pg, acme.id, TODAY + DAY + timedelta(hours=1), 1, days=1) == 1
    assert send_onside(pg, acme.id, TODAY + timedelta(hours=1), 1, 2, days=1) == 1
    with pg.connect() as conn:
        keys = conn.execute(
            sa.text(
                "SELECT event_id::text, period_start FROM event_keys"
                " ORDER BY period_start, event_id"
            )
        ).all()
    assert [(str(e), p) for e, p in keys] == [
        (onside_event(1)["event_id"], TODAY),
        (onside_event(2)["event_id"], TODAY),
        (onside_event(1)["event_id"], TODAY + DAY),
    ]
    assert len(stored_in(pg)) == 2


def held_locks(conn: Connection) -> dict[str, str]:
    """The table locks this transaction holds on the key tables: name -> modes."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, string_agg(l.mode, ',' ORDER BY l.mode) FROM pg_locks AS l"
            " JOIN pg_class AS c ON c.oid = l.relation"
            " WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'"
            "   AND c.relname LIKE 'event_keys%' AND c.relkind IN ('r', 'p')"
            " GROUP BY c.relname"
        )
    ).all()
    return dict(rows)  # type: ignore[arg-type]


def test_key_periods_are_locked_written_and_read_partitions_apart(pg: Engine) -> None:
    """What lock_key_periods_sql's statement takes (migration 0007): the parent as the INSERT
    would; the period written ROW EXCLUSIVE, its neighbours SHARE; a
    partition both written and read (a take across a boundary) SHARE ROW
    EXCLUSIVE; a period without a partition of its own, the default."""
    day = f"{TODAY:%Y_%m_%d}"
    before, after = f"{TODAY - DAY:%Y_%m_%d}", f"{TODAY + DAY:%Y_%m_%d}"
    with pg.begin() as conn:
        conn.exec_driver_sql(lock_key_periods_sql("event_keys", [TODAY], 1))
        assert held_locks(conn) == {
            "event_keys": "RowExclusiveLock",
            f"event_keys_p{day}": "RowExclusiveLock",
            f"event_keys_p{before}": "ShareLock",
            f"event_keys_p{after}": "ShareLock",
        }
    with pg.begin() as conn:
        conn.exec_driver_sql(lock_key_periods_sql("event_keys", [TODAY, TODAY + DAY], 1))
        assert held_locks(conn) == {
            "event_keys": "RowExclusiveLock",
            f"event_keys_p{before}": "ShareLock",
            f"event_keys_p{day}": "ShareRowExclusiveLock",
            f"event_keys_p{after}": "ShareRowExclusiveLock",
            f"event_keys_p{TODAY + 2 * DAY:%Y_%m_%d}": "ShareLock",
        }
    # Far beyond the days made ahead: no partitions, so the default holds
    # (and is locked for) all three periods.
    far = TODAY + 100 * DAY
    with pg.begin() as conn:
        conn.exec_driver_sql(lock_key_periods_sql("event_keys", [far], 1))
        assert held_locks(conn) == {
            "event_keys": "RowExclusiveLock",
            "event_keys_default": "ShareRowExclusiveLock",
        }


def test_concurrent_takes_across_a_period_boundary_land_each_event_once(
    pg: Engine, pg_settings: Settings, acme: NewPartner
) -> None:
    """Four workers at once, each with a take of the same events received
    either side of a period boundary, in its own order: every event is
    stored once, and no two takes deadlock on the key partitions' locks."""
    boundary = TODAY + DAY
    engines = [make_engine(pg_settings.database_url) for _ in range(4)]
    errors: list[BaseException] = []
    stored: list[int] = []
    rounds = 15
    barrier = threading.Barrier(len(engines))

    def worker(number: int, engine: Engine) -> None:
        try:
            for round_ in range(rounds):
                ids = [round_ * 10 + n for n in range(4)]
                shuffled = ids[number:] + ids[:number]
                sides = [boundary - timedelta(seconds=1), boundary + timedelta(seconds=1)]
                if number % 2:
                    sides.reverse()
                batches = [
                    Batch(acme.id, when, [onside_event(n) for n in shuffled], f"r{round_}w{number}")
                    for when in sides
                ]
                barrier.wait(30)
                with engine.begin() as conn:
                    stored.append(sum(insert_onside_batches(conn, batches, dedup_days=1)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(n, e)) for n, e in enumerate(engines)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for engine in engines:
            engine.dispose()
    assert not errors, errors
    assert sum(stored) == rounds * 4
    with pg.connect() as conn:
        counts = conn.execute(sa.text("SELECT count(*) FROM events GROUP BY event_id")).all()
    assert sorted({c for (c,) in counts}) == [1] and len(counts) == rounds * 4


def send_thrad(
    engine: Engine,
    partner: NewPartner,
    key_id: int,
    received_at: datetime,
    days: int = 30,
    **event: Any,
) -> int:
    with engine.begin() as conn:
        return insert_thrad_events(
            conn,
            partner_id=partner.id,
            received_at=received_at,
            events=[thrad_event(api_key_id=key_id, **event)],  # type: ignore[list-item]
            job_id=None,
            geoip_database=None,
            dedup_days=days,
        )


def test_thrad_resends_land_once_across_partitions(pg: Engine, acme: NewPartner) -> None:
    create_api_key(pg, TEST_SECRET_KEY.encode(), "acme", "k")
    with pg.connect() as conn:
        key_id = conn.execute(sa.text("SELECT id FROM api_keys")).scalar_one()
    later = TODAY + DAY + timedelta(hours=2)
    ingest = "c0ffee00-0000-4000-8000-00000000000"
    # tag_id + event_id: a resend (a new request, a new ingest_id) the next day.
    assert send_thrad(pg, acme, key_id, TODAY, event_id="e1", ingest_id=ingest + "1") == 1
    assert send_thrad(pg, acme, key_id, later, event_id="e1", ingest_id=ingest + "2") == 0
    # The same event_id under another tag is another event.
    assert send_thrad(pg, acme, key_id, later, event_id="e1", tag_id="u", ingest_id=ingest + "3")
    # No event_id: the ingest_id keys it, so only the same request run again is dropped.
    assert send_thrad(pg, acme, key_id, TODAY, ingest_id=ingest + "4") == 1
    assert send_thrad(pg, acme, key_id, later, ingest_id=ingest + "4") == 0
    assert send_thrad(pg, acme, key_id, later, ingest_id=ingest + "5") == 1
    # A tag_id and event_id that run together the same way stay apart.
    assert send_thrad(pg, acme, key_id, TODAY, tag_id="ab", event_id="c", ingest_id=ingest + "6")
    assert send_thrad(pg, acme, key_id, TODAY, tag_id="a", event_id="bc", ingest_id=ingest + "7")
    assert len(stored_in(pg, "thrad_events")) == 6


def test_concurrent_thrad_resends_in_adjacent_periods_land_once(
    pg: Engine, pg_settings: Settings, acme: NewPartner
) -> None:
    """Thrad's keys take the same locks: a late job of the earlier period waits
    for the later period's uncommitted receipt, then finds its key."""
    create_api_key(pg, TEST_SECRET_KEY.encode(), "acme", "k")
    with pg.connect() as conn:
        key_id = conn.execute(sa.text("SELECT id FROM api_keys")).scalar_one()
    boundary = TODAY + DAY

    def first(conn: Connection) -> int:
        return insert_thrad_events(
            conn,
            partner_id=acme.id,
            received_at=boundary + timedelta(seconds=1),
            events=[thrad_event(api_key_id=key_id, event_id="e9")],  # type: ignore[list-item]
            job_id=None,
            geoip_database=None,
            dedup_days=1,
        )

    late = boundary - timedelta(seconds=1)
    stored = first_holds_while_second_waits(
        pg,
        pg_settings,
        first,
        lambda other: send_thrad(
            other, acme, key_id, late, days=1, event_id="e9", ingest_id=str(uuid4())
        ),
    )
    assert stored == 0
    assert len(stored_in(pg, "thrad_events")) == 1


def fill_days(engine: Engine, partner_id: int, *days: datetime, first: int = 100) -> None:
    """A day partition of each table for each day, and an event (numbered from
    ``first``) in each."""
    with engine.begin() as conn:
        for table in ("events", "thrad_events"):
            make_days(conn, table, *days)
    for n, day in enumerate(days):
        assert send_onside(engine, partner_id, day + timedelta(hours=12), first + n)


OLD_DAYS = tuple(datetime(2025, 1, d, tzinfo=UTC) for d in (1, 2, 3))


def test_prune_dry_run_prints_then_prune_drops_whole_days(
    pg: Engine, pg_settings: Settings, acme: NewPartner
) -> None:
    fill_days(pg, acme.id, *OLD_DAYS)
    before = len(stored_in(pg))
    out = run_cli(pg_settings, "events", "prune", "--before", "2025-01-03", "--dry-run").stdout
    assert "would drop events_p2025_01_01" in out
    assert "would drop events_p2025_01_02" in out
    assert "would drop thrad_events_p2025_01_01" in out
    assert "2025_01_03" not in out
    assert "would drop 4 partition(s)" in out
    assert len(stored_in(pg)) == before  # a dry run drops nothing

    out = run_cli(pg_settings, "events", "prune", "--before", "2025-01-03").stdout
    assert "dropped events_p2025_01_01" in out and "dropped events_p2025_01_02" in out
    assert [r for r in stored_in(pg) if r[1] < OLD_DAYS[2]] == []
    assert [part for part, _ in stored_in(pg)] == ["events_p2025_01_03"]
    out = run_cli(pg_settings, "events", "prune", "--before", "2025-01-03").stdout
    assert "nothing dropped" in out


def test_prune_refuses_on_sqlite(sqlite_url: str, redis_server: Any, tmp_path: Path) -> None:
    empty_tables(sqlite_url)
    settings = make_settings(sqlite_url, redis_server.url, tmp_path)
    engine = make_engine(sqlite_url)
    try:
        partner = create_partner(engine, settings.secret_key, "acme")
        with engine.begin() as conn:
            insert_onside_events(
                conn,
                partner_id=partner.id,
                received_at=datetime(2025, 1, 1, tzinfo=UTC),
                events=[onside_event(1)],  # type: ignore[list-item]
                job_id=None,
            )
        result = run_cli(settings, "events", "prune", "--before", "2026-01-01", expect=1)
        assert "no partitions" in result.stderr and "nothing was dropped" in result.stderr
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 1
    finally:
        engine.dispose()


def test_retention_drops_old_days_in_the_workers_maintenance(
    pg: Engine, pg_settings: Settings, acme: NewPartner, redis: Redis
) -> None:
    fill_days(pg, acme.id, *OLD_DAYS)
    send_onside(pg, acme.id, TODAY + timedelta(hours=1), 1)
    # Keep 10 days: the three old days go, today stays.
    settings = pg_settings.replace(retention_days=10)
    context.open_context(settings)
    try:
        redis.delete(PARTITIONS_LOCK)
        assert maintain_partitions(redis)
        assert not maintain_partitions(redis), "maintenance runs at most once an hour"
    finally:
        context.close_context()
    assert [part for part, _ in stored_in(pg)] == [f"events_p{TODAY:%Y_%m_%d}"]
    with pg.connect() as conn:
        names = {p.name for t in partitions.EVENT_TABLES for p in partitions.partitions(conn, t)}
    assert not {f"{t}_p2025_01_0{d}" for t in partitions.EVENT_TABLES for d in (1, 2, 3)} & names
    # The days ahead exist: a week of them.
    assert f"events_p{TODAY + 7 * DAY:%Y_%m_%d}" in names


def test_without_retention_maintenance_keeps_every_day_and_drops_old_keys(
    pg: Engine, pg_settings: Settings, acme: NewPartner
) -> None:
    fill_days(pg, acme.id, *OLD_DAYS)
    stale = datetime(2025, 1, 1, tzinfo=UTC)
    with pg.begin() as conn:
        make_days(conn, "event_keys", stale)
    dropped = partitions.maintain(pg, pg_settings)
    assert [p.name for p in dropped] == ["event_keys_p2025_01_01"]
    assert len(stored_in(pg)) == 3


def explain(engine: Engine, query: sa.Select[Any]) -> str:
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        return "\n".join(r[0] for r in conn.execute(sa.text(f"EXPLAIN {compiled}")))


def test_export_by_time_reads_only_the_days_it_needs(pg: Engine, acme: NewPartner) -> None:
    fill_days(pg, acme.id, *OLD_DAYS)
    onside, thrad = export_queries(acme.id, OLD_DAYS[1], OLD_DAYS[2])
    for table, query in (("events", onside), ("thrad_events", thrad)):
        plan = explain(pg, query)
        assert f"{table}_p2025_01_02" in plan, plan
        # Other days, today's, and the default partition are pruned from the plan.
        for other in ("p2025_01_01", "p2025_01_03", f"p{TODAY:%Y_%m_%d}", "default"):
            assert f"{table}_{other}" not in plan, plan
    # Without bounds every day is read: the check above can fail.
    plan = explain(pg, export_queries(acme.id, None, None)[0])
    assert "events_p2025_01_01" in plan and "events_p2025_01_03" in plan


def test_maintain_command_applies_retention_now(
    pg: Engine, pg_settings: Settings, acme: NewPartner
) -> None:
    fill_days(pg, acme.id, *OLD_DAYS)
    out = run_cli(pg_settings.replace(retention_days=30), "events", "maintain").stdout
    assert "dropped events_p2025_01_01  (events, received 2025-01-01" in out
    assert "dropped thrad_events_p2025_01_03" in out
    assert stored_in(pg) == []
    # Without INLET_RETENTION_DAYS nothing of the events goes. (New events:
    # the dropped ones' keys outlive them, so resending those would store nothing.)
    fill_days(pg, acme.id, *OLD_DAYS, first=200)
    out = run_cli(pg_settings, "events", "maintain").stdout
    assert "events_p2025" not in out and len(stored_in(pg)) == 3
