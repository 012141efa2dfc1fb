"""The event tables' owners, checked once a transaction on PostgreSQL (migration 0008).

The foreign keys events.partner_id, thrad_events.partner_id and
thrad_events.api_key_id were checked by a trigger for each row; a worker's
transaction now checks its rows' partners and API keys once, with the same
error and the same lock. SQLite keeps its foreign keys.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app import migrations
from app.credentials.api_keys import create_api_key
from app.credentials.partners import NewPartner
from app.db import make_engine
from app.settings import Settings
from tests.events import onside_event, thrad_event
from tests.services import TEST_SECRET_KEY, wait_for
from worker.jobs import is_transient
from worker.onside import insert_onside_batches, insert_onside_events
from worker.sql import Batch
from worker.thrad import insert_thrad_events

GHOST = 999_999
EVENT_TABLES = ("events", "thrad_events", "event_keys", "thrad_event_keys")


def foreign_keys_of_event_tables(engine: Engine) -> list[str]:
    """Every foreign key on the event tables and their partitions."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT conrelid::regclass || ': ' || conname FROM pg_constraint"
                    " WHERE contype = 'f' AND (conrelid = ANY(CAST(:parents AS regclass[]))"
                    "  OR conrelid IN (SELECT inhrelid FROM pg_inherits"
                    "   WHERE inhparent = ANY(CAST(:parents AS regclass[]))))"
                ),
                {"parents": list(EVENT_TABLES)},
            ).scalars()
        )


def test_postgresql_checks_no_foreign_key_row_by_row(pg: Engine, acme: NewPartner) -> None:
    # A stored row proves today's partitions exist: none of them has one either.
    with pg.begin() as conn:
        assert insert_onside_events(
            conn, partner_id=acme.id, received_at=datetime.now(UTC), events=[onside_event(1)],
            job_id=None,
        ) == 1  # fmt: skip
    assert foreign_keys_of_event_tables(pg) == []


def test_sqlite_keeps_its_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fk.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    try:
        inspector = sa.inspect(engine)
        found = {
            (table, fk["constrained_columns"][0], fk["referred_table"])
            for table in ("events", "thrad_events")
            for fk in inspector.get_foreign_keys(table)
        }
    finally:
        engine.dispose()
    assert found == {
        ("events", "partner_id", "partners"),
        ("thrad_events", "partner_id", "partners"),
        ("thrad_events", "api_key_id", "api_keys"),
    }


def stored(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in EVENT_TABLES
        }


def api_key_of(engine: Engine) -> int:
    create_api_key(engine, TEST_SECRET_KEY.encode(), "acme", "k")
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT id FROM api_keys")).scalar_one())


def insert_job(engine: Engine, shape: str, partner_id: int, api_key_id: int | None = None) -> int:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        if shape == "onside":
            return insert_onside_events(
                conn,
                partner_id=partner_id,
                received_at=now,
                events=[onside_event(1)],  # type: ignore[list-item]
                job_id="j",
            )
        if shape == "onside-take":
            # A good job and a bad one share the take: neither lands.
            batches = [
                Batch(partner_id, now, [onside_event(1)], "j1"),
                Batch(GHOST, now, [onside_event(2)], "j2"),
            ]
            return sum(insert_onside_batches(conn, batches))
        return insert_thrad_events(
            conn,
            partner_id=partner_id,
            received_at=now,
            events=[thrad_event(api_key_id=api_key_id, event_id="e1")],  # type: ignore[list-item]
            job_id="j",
            geoip_database=None,
        )


@pytest.mark.parametrize(
    ("shape", "partner", "api_key", "message"),
    [
        ("onside", GHOST, None, "partner id 999999"),
        ("onside-take", "acme", None, "partner id 999999"),
        ("thrad", GHOST, "acme's", "partner id 999999"),
        ("thrad", "acme", GHOST, "API key id 999999"),
    ],
)
def test_a_job_naming_an_unknown_owner_fails_for_good_and_stores_nothing(
    pg: Engine, acme: NewPartner, shape: str, partner: Any, api_key: Any, message: str
) -> None:
    partner_id = acme.id if partner == "acme" else partner
    api_key_id = api_key_of(pg) if api_key == "acme's" else api_key
    with pytest.raises(sa.exc.IntegrityError) as raised:
        insert_job(pg, shape, partner_id, api_key_id)
    assert getattr(raised.value.orig, "sqlstate", None) == "23503"  # foreign_key_violation
    assert message in str(raised.value)
    assert not is_transient(raised.value)
    assert stored(pg) == dict.fromkeys(EVENT_TABLES, 0)
    # The same job with its owners known lands.
    if shape == "thrad" and api_key != "acme's":
        api_key_id = api_key_of(pg)
    assert insert_job(pg, shape.replace("-take", ""), acme.id, api_key_id) == 1


def test_a_partner_is_locked_as_the_foreign_key_locked_it(
    pg: Engine, pg_settings: Settings, acme: NewPartner
) -> None:
    """A DELETE of the partner waits until the job's transaction ends, as it
    waited on the trigger's FOR KEY SHARE lock."""
    other = make_engine(pg_settings.database_url)
    deleted: list[int] = []

    def delete_partner() -> None:
        with other.begin() as conn:
            gone = conn.execute(sa.text("DELETE FROM partners WHERE id = :id"), {"id": acme.id})
            deleted.append(gone.rowcount)

    def delete_waits() -> bool:
        with pg.connect() as conn:
            return bool(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE 'DELETE FROM partners%'"
                    )
                ).scalar_one()
            )

    try:
        with pg.begin() as conn:
            assert insert_onside_events(
                conn, partner_id=acme.id, received_at=datetime.now(UTC),
                events=[onside_event(1)], job_id=None,
            ) == 1  # fmt: skip
            thread = threading.Thread(target=delete_partner)
            thread.start()
            wait_for(delete_waits, message="the DELETE to wait on the job's lock")
            assert deleted == []
        thread.join(30)
    finally:
        other.dispose()
    assert deleted == [1]
