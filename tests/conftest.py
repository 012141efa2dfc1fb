"""Fixtures: a real PostgreSQL and a real Redis for the session, SQLite beside them.

Schemas are made by ``alembic upgrade head``, exactly as in production. Tests
that take ``settings`` run once per database.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app import migrations
from app.credentials.admins import NewAdmin, create_admin
from app.credentials.partners import NewPartner, create_partner
from app.db import make_engine, metadata
from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.settings import Settings, normalize_database_url
from tests.services import PostgresCluster
from worker import context
from worker.runner import build_worker

TEST_SECRET_KEY = "test-secret-key-of-at-least-32-characters"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster | None]:
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    cluster = PostgresCluster().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


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
            if conn.dialect.name == "postgresql":
                names = ", ".join(t.name for t in metadata.sorted_tables)
                conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(metadata.sorted_tables):
                    conn.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    empty_tables(url)
    return url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    # A short path: Unix socket paths are limited to ~100 bytes.
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="inlet-redis-"))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(redis_server: EmbeddedRedis) -> Iterator[Redis]:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


def make_settings(database_url: str, redis_url: str, data_dir: Path, **env: str) -> Settings:
    environ = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "INLET_DATA_DIR": str(data_dir),
        "INLET_SECRET_KEY": TEST_SECRET_KEY,
        "INLET_RETRY_DELAYS": "1,1",
        "INLET_REDIS_TIMEOUT": "1",
        **env,
    }
    return Settings.from_env(environ)


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


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def partner(engine: Engine, settings: Settings) -> NewPartner:
    return create_partner(engine, settings.secret_key, "acme")


def basic_auth(partner: NewPartner) -> dict[str, str]:
    token = base64.b64encode(f"{partner.username}:{partner.password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def auth(partner: NewPartner) -> dict[str, str]:
    return basic_auth(partner)


@pytest.fixture
def admin(engine: Engine, settings: Settings) -> NewAdmin:
    """A support person's login for /admin and /metrics."""
    return create_admin(engine, settings.secret_key, "support")


def admin_auth(admin: NewAdmin) -> dict[str, str]:
    token = base64.b64encode(f"{admin.username}:{admin.password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


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
