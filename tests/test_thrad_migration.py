"""Migration 0002 (API keys, Thrad events) matches app.db and can be undone."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from app import migrations
from app.db import make_engine


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_models_and_migrations_agree(request: pytest.FixtureRequest, database: str) -> None:
    migrations.check(request.getfixturevalue(f"{database}_url"))


def test_0002_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    migrations.upgrade(url)
    migrations.downgrade(url, "0001")
    engine = make_engine(url)
    try:
        assert {"api_keys", "thrad_events"}.isdisjoint(sa.inspect(engine).get_table_names())
        migrations.upgrade(url)
        sa.inspect(engine).clear_cache()
        assert {"api_keys", "thrad_events"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
