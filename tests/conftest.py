"""Fixtures: a real PostgreSQL and a real Redis for the session, SQLite beside them.

Schemas are made by ``alembic upgrade head``, exactly as in production. Tests
that take ``settings`` run once per database.

What tests share lives beside this file, one concern a module; test modules
import from these, never from each other:

    services.py         PostgreSQL clusters and Redis servers (the bench's too), test settings
    processes.py        ``inlet web``/``worker``/any command as real processes
    cli_runner.py       ``inlet`` in-process (the ``inlet`` fixture below wraps it)
    api.py              Basic credentials and the one error-shape assertion
    events.py           one event factory per format, the reference examples
    queued.py           below the endpoints: enqueue, failed jobs, stored rows
    strategies.py       Hypothesis strategies (thrad_strategies.py for Thrad)
    geo.py              a tiny MaxMind-format City database
    faults.py           the fault tests' load client and worker supervisor
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app import migrations
from app.credentials.admins import NewAdmin, create_admin
from app.credentials.partners import NewPartner, create_partner
from app.db import exists_on, make_engine, metadata
from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.settings import Settings, normalize_database_url
from tests import geo
from tests.api import basic_auth
from tests.cli_runner import run_cli
from tests.queued import fail_for_real
from tests.services import (
    TEST_SECRET_KEY,
    PostgresCluster,
    make_settings,
    running_cluster,
    running_redis,
)
from worker import context
from worker.runner import build_worker


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster | None]:
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgresql_url(pg_cluster: PostgresCluster | None) -> str:
    if pg_cluster is None:
        url = normalize_database_url(os.environ["TEST_DATABASE_URL"])
    else:
        url = pg_cluster.create_database("inlet_test")
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'inlet.db'}"
    migrations.upgrade(url)
    return url


def empty_tables(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            tables = [t for t in metadata.sorted_tables if exists_on(t, conn.dialect.name)]
            # DELETE, not TRUNCATE: the partitioned event tables have a few
            # hundred (mostly empty) partitions, and TRUNCATE swaps every
            # one's files: 0.26 s a test against 7.5 ms for DELETE, which
            # finds most of them empty. (Children first, for the foreign keys.)
            for table in reversed(tables):
                conn.execute(table.delete())
            if conn.dialect.name == "postgresql":
                # As TRUNCATE ... RESTART IDENTITY did: ids start at 1 again.
                used = conn.execute(
                    sa.text(
                        "SELECT sequencename FROM pg_sequences"
                        " WHERE schemaname = 'public' AND last_value IS NOT NULL"
                    )
                ).scalars()
                for sequence in list(used):
                    conn.execute(sa.text(f'ALTER SEQUENCE "{sequence}" RESTART'))
    finally:
        engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    empty_tables(url)
    return url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with running_redis() as server:
        yield server


@pytest.fixture
def redis(redis_server: EmbeddedRedis) -> Iterator[Redis]:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def settings(
    database_url: str, redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> Settings:
    return make_settings(database_url, redis_server.url, tmp_path)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


# PostgreSQL alone, for what only it has (partitions, dedup keys, migration 0008's check).
@pytest.fixture
def pg_settings(postgresql_url: str, redis_server: EmbeddedRedis, tmp_path: Path) -> Settings:
    empty_tables(postgresql_url)
    return make_settings(postgresql_url, redis_server.url, tmp_path)


@pytest.fixture
def pg(pg_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(pg_settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def acme(pg: Engine) -> NewPartner:
    return create_partner(pg, TEST_SECRET_KEY.encode(), "acme")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def partner(engine: Engine, settings: Settings) -> NewPartner:
    return create_partner(engine, settings.secret_key, "acme")


@pytest.fixture
def auth(partner: NewPartner) -> dict[str, str]:
    return basic_auth(partner)


@pytest.fixture
def admin(engine: Engine, settings: Settings) -> NewAdmin:
    """A support person's login for /admin and /metrics."""
    return create_admin(engine, settings.secret_key, "support")


@pytest.fixture
def drain(settings: Settings) -> Iterator[Callable[..., None]]:
    """Run an in-process worker until the queue is empty (RQ's burst mode)."""

    def run(run_settings: Settings | None = None) -> None:
        run_settings = run_settings or settings
        context.open_context(run_settings)
        build_worker(run_settings).work(burst=True, with_scheduler=False)

    try:
        yield run
    finally:
        context.close_context()


@pytest.fixture
def inlet(settings: Settings) -> Callable[..., Result]:
    """``inlet(*args, expect=0)``: the ``inlet`` command with the test's settings, which
    fails the test unless the command exits ``expect``."""

    def run(*args: str, expect: int = 0) -> Result:
        return run_cli(settings, *args, expect=expect)

    return run


@pytest.fixture(scope="session")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MaxMind-format City database (see tests/geo.py)."""
    return geo.build_city_database(tmp_path_factory.mktemp("geo") / "city.mmdb")


@pytest.fixture
def admin_auth(admin: NewAdmin) -> dict[str, str]:
    return basic_auth(admin)


@pytest.fixture
def failed_job(
    settings: Settings, redis: Redis, partner: NewPartner, drain: Callable[..., None]
) -> Callable[..., str]:
    """``failed_job(events, owner=partner)``: the id of a job that failed for good, run by
    a worker whose database is unreachable."""

    def fail(events: list[dict[str, Any]], owner: NewPartner = partner) -> str:
        return fail_for_real(settings, redis, owner, drain, events)

    return fail


@dataclass
class ScratchDatabase:
    """A migrated SQLite file of one test's own, which the test can make vanish."""

    path: Path
    engine: Engine

    def vanish(self) -> None:
        """The file goes away: the next query finds no table (an OperationalError)."""
        self.path.rename(self.path.with_name("gone.db"))
        self.engine.dispose()


@pytest.fixture
def scratch_sqlite(tmp_path: Path) -> Iterator[ScratchDatabase]:
    path = tmp_path / "scratch.db"
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    engine = make_engine(url)
    try:
        yield ScratchDatabase(path, engine)
    finally:
        engine.dispose()
