"""Migration 0006 turns a deployment's unpartitioned event tables into partitioned
ones with every row in place, carries their dedup keys, and can be undone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app import migrations
from app.db import events, make_engine
from tests.events import onside_event, thrad_event
from tests.services import PostgresCluster
from worker.onside import insert_onside_events
from worker.thrad import insert_thrad_events

NOW = datetime.now(UTC)
# Received long ago (70 days: past any window, which reaches 60 days back at
# most), last month, today.
RECEIVED = (NOW - timedelta(days=70), NOW - timedelta(days=20), NOW - timedelta(hours=1))


@pytest.fixture
def deployment(pg_cluster: PostgresCluster | None) -> Iterator[Engine]:
    """A database at revision 0003 (before 0006) holding events of both formats."""
    if pg_cluster is None:
        pytest.skip("needs the tests' own PostgreSQL cluster to create a database")
    url = pg_cluster.create_database("inlet_0006")
    migrations.upgrade(url, "0003")
    engine = make_engine(url)
    with engine.begin() as conn:
        partner_id = conn.execute(
            sa.text(
                "INSERT INTO partners (name, username, password_hash)"
                " VALUES ('acme', 'acme', 'x') RETURNING id"
            )
        ).scalar_one()
        key_id = conn.execute(
            sa.text(
                "INSERT INTO api_keys (partner_id, key_id, label, key_hash)"
                " VALUES (:p, 'ik_1', 'k', 'x') RETURNING id"
            ),
            {"p": partner_id},
        ).scalar_one()
        for n, received in enumerate(RECEIVED):
            conn.execute(
                events.insert(),
                [
                    {
                        "partner_id": partner_id,
                        "event_id": event["event_id"],
                        "event_name": event["event_name"],
                        "sent_event_name": event["event_name"],
                        "event_datetime": datetime.fromisoformat(event["event_datetime"]),
                        "installation_id": event["installation_id"],
                        "payload": event["payload"],
                        "received_at": received,
                        "job_id": f"job-{n}",
                    }
                    for event in (onside_event(n), onside_event(10 + n))
                ],
            )
            conn.execute(
                sa.text(
                    "INSERT INTO thrad_events (partner_id, api_key_id, ingest_id, tag_id,"
                    " event_name, event_id, event_timestamp, params, channel, received_at)"
                    " VALUES (:p, :k, :ingest, 't', 'purchase', :event_id, 1748275200,"
                    " '{}', 'server', :r)"
                ),
                {
                    "p": partner_id,
                    "k": key_id,
                    # The recent one has no event_id: its ingest_id keys it.
                    "ingest": f"c0ffee00-0000-4000-8000-{n:012d}",
                    "event_id": None if n == 2 else f"evt-{n}",
                    "r": received,
                },
            )
    try:
        yield engine
    finally:
        engine.dispose()


def rows(engine: Engine, table: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))
        ]


def test_0006_keeps_every_row_and_its_dedup_key(deployment: Engine) -> None:
    url = deployment.url.render_as_string(hide_password=False)
    before = {t: rows(deployment, t) for t in ("events", "thrad_events")}
    assert len(before["events"]) == 6 and len(before["thrad_events"]) == 3

    migrations.upgrade(url)
    migrations.check(url)
    deployment.dispose()

    for table in ("events", "thrad_events"):
        after = rows(deployment, table)
        # Columns that later migrations (0004) added come back empty, as they were.
        added = set(after[0]) - set(before[table][0])
        assert [{k: v for k, v in row.items() if k not in added} for row in after] == before[table]
        assert all(row[column] is None for row in after for column in added)
    with deployment.connect() as conn:
        kinds = conn.execute(
            sa.text(
                "SELECT relname, relkind FROM pg_class WHERE relname IN"
                " ('events', 'thrad_events', 'event_keys', 'thrad_event_keys')"
            )
        ).all()
        assert {kind for _, kind in kinds} == {"p"} and len(kinds) == 4
        # Every copied row found its day: none in the default partitions.
        for table in ("events", "thrad_events"):
            assert not conn.execute(sa.text(f"SELECT count(*) FROM {table}_default")).scalar()
        partner_id, key_id = conn.execute(sa.text("SELECT partner_id, id FROM api_keys")).one()
        # New rows take ids after the copied ones: the sequence came along.
        next_id = conn.execute(sa.text("SELECT nextval(pg_get_serial_sequence('events', 'id'))"))
        assert next_id.scalar_one() > max(r["id"] for r in before["events"])

    with deployment.begin() as conn:
        resend = [onside_event(n) for n in (0, 1, 2, 10, 11, 12)]
        # Recent events are in the window: their resends land nothing. The
        # 70-day-old ones are past it: stored again (docs/storage.md).
        assert (
            insert_onside_events(
                conn,
                partner_id=partner_id,
                received_at=NOW,
                events=resend,  # type: ignore[arg-type]
                job_id="resend",
            )
            == 2
        )
        # Thrad: by tag_id + event_id (a new request, a new ingest_id) and,
        # without event_id, by the request's ingest_id; 70 days on, stored again.
        for extra, expected in (
            ({"event_id": "evt-0"}, 1),
            ({"event_id": "evt-1"}, 0),
            ({"ingest_id": "c0ffee00-0000-4000-8000-000000000002"}, 0),
        ):
            event = {"ingest_id": "c0ffee00-0000-4000-8000-00000000ffff", **extra}
            stored = insert_thrad_events(
                conn,
                partner_id=partner_id,
                received_at=NOW,
                events=[thrad_event(api_key_id=key_id, tag_id="t", **event)],  # type: ignore[list-item]
                job_id=None,
                geoip_database=None,
            )
            assert stored == expected, extra
        # ...and a new event lands.
        new = thrad_event(api_key_id=key_id, event_id="evt-new")
        assert insert_thrad_events(
            conn,
            partner_id=partner_id,
            received_at=NOW,
            events=[new],  # type: ignore[list-item]
            job_id=None,
            geoip_database=None,
        )


def test_0006_downgrades_keeping_the_first_of_repeated_keys(deployment: Engine) -> None:
    url = deployment.url.render_as_string(hide_password=False)
    before = rows(deployment, "events")
    migrations.upgrade(url)
    deployment.dispose()
    with deployment.begin() as conn:
        partner_id = conn.execute(sa.text("SELECT id FROM partners")).scalar_one()
        # Past the window, event 0 is stored a second time.
        assert insert_onside_events(
            conn,
            partner_id=partner_id,
            received_at=NOW,
            events=[onside_event(0)],  # type: ignore[list-item]
            job_id="again",
        )
    assert len(rows(deployment, "events")) == 7

    migrations.downgrade(url, "0003")
    deployment.dispose()
    assert rows(deployment, "events") == before  # the first receipt of event 0 is kept
    assert len(rows(deployment, "thrad_events")) == 3
    with deployment.connect() as conn:
        kind = conn.execute(sa.text("SELECT relkind FROM pg_class WHERE relname = 'events'"))
        assert kind.scalar_one() == "r"
        schemas = {name for (name,) in conn.execute(sa.text("SELECT nspname FROM pg_namespace"))}
        assert "partman" not in schemas
    migrations.upgrade(url)
    deployment.dispose()
    # Up again: the columns 0004 adds come back empty.
    assert [{k: row[k] for k in before[0]} for row in rows(deployment, "events")] == before
