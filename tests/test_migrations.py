"""Alembic makes the schema; the tables in app.db and the migrations agree."""

import sqlalchemy as sa

from app import migrations
from app.db import exists_on, make_engine, metadata


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    migrations.check(database_url)


def test_downgrade_and_upgrade_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    migrations.upgrade(url)
    migrations.downgrade(url, "base")
    engine = make_engine(url)
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    migrations.upgrade(url)
    assert set(sa.inspect(engine).get_table_names()) >= {
        t.name for t in metadata.sorted_tables if exists_on(t, "sqlite")
    }
    engine.dispose()
