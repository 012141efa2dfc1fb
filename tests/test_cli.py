"""The `inlet` command, run in-process against the test databases."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from redis import Redis
from starlette.testclient import TestClient

from app import migrations
from app.cli import main
from app.credentials.partners import NewPartner, create_partner
from app.db import make_engine
from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from tests.api import basic_auth
from tests.cli_runner import run_cli
from tests.conftest import empty_tables
from tests.events import ONSIDE_EVENT, onside_event
from tests.events import ONSIDE_URL as URL
from tests.services import TEST_SECRET_KEY, make_settings
from worker import context
from worker.runner import build_worker

KEY = TEST_SECRET_KEY


def test_partner_lifecycle(inlet: Callable[..., Result], client: TestClient) -> None:
    created = orjson.loads(inlet("partners", "create", "shop", "--json").stdout)
    assert set(created) == {"name", "username", "password", "api_key"}
    assert created["name"] == "shop"
    partner = NewPartner(0, "shop", created["username"], created["password"])
    assert (
        client.post(URL, json={"events": [ONSIDE_EVENT]}, headers=basic_auth(partner)).status_code
        == 204
    )

    listed = inlet("partners", "list").stdout
    assert "shop" in listed and created["username"] in listed and "active" in listed
    assert created["password"] not in listed

    assert "5/second" in inlet("partners", "set-rate-limit", "shop", "5/second").stdout
    assert "5/second" in inlet("partners", "list").stdout
    inlet("partners", "revoke", "shop")
    assert "revoked" in inlet("partners", "list").stdout


def test_create_prints_credentials_once_in_text(inlet: Callable[..., Result]) -> None:
    out = inlet("partners", "create", "textual").stdout
    assert "username: pk_" in out and "password: " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("partners", "revoke", "nobody"), "no partner named 'nobody'"),
        (("partners", "set-rate-limit", "nobody", "5/second"), "no partner named 'nobody'"),
        (("partners", "create", "x", "--rate-limit", "fast"), "not a rate limit"),
        (("events", "export", "--partner", "nobody"), "no partner named 'nobody'"),
    ],
)
def test_operator_mistakes_get_a_clear_message(
    inlet: Callable[..., Result], args: tuple[str, ...], message: str
) -> None:
    result = inlet(*args, expect=1)
    assert message in result.output
    assert "Traceback" not in result.output


def test_duplicate_partner_name_is_refused(inlet: Callable[..., Result]) -> None:
    inlet("partners", "create", "twice")
    result = inlet("partners", "create", "twice", expect=1)
    assert "already exists" in result.output


def test_export_writes_json_lines_oldest_first(
    inlet: Callable[..., Result],
    client: TestClient,
    partner: NewPartner,
    auth: dict[str, str],
    drain: Callable[[], None],
) -> None:
    def event(n: int, name: str) -> dict[str, Any]:
        return onside_event(
            n,
            event_name=name,
            payload={"n": n},
            event_datetime="2026-05-05T14:00:00+02:00",
            installation_id="550E8400-E29B-41D4-A716-446655440000",
        )

    assert client.post(URL, json={"events": [event(1, "Sign_Up")]}, headers=auth).status_code == 204
    assert (
        client.post(URL, json={"events": [event(2, "PURCHASE")]}, headers=auth).status_code == 204
    )
    drain()
    lines = [
        orjson.loads(line)
        for line in inlet("events", "export", "--partner", "acme").stdout.splitlines()
    ]
    assert [line["payload"]["n"] for line in lines] == [1, 2]
    first = lines[0]
    # The five fields as sent, and what the server adds (the clock guard's
    # original time and the schema violations: null when they don't apply).
    assert set(first) == {
        *ONSIDE_EVENT,
        "source",
        "sent_event_name",
        "received_at",
        "original_event_datetime",
        "violations",
    }
    assert first["original_event_datetime"] is None and first["violations"] is None
    assert first["source"] == "onside"
    assert first["event_name"] == "sign_up" and first["sent_event_name"] == "Sign_Up"
    assert first["event_datetime"] == "2026-05-05T12:00:00Z"
    assert first["installation_id"] == "550e8400-e29b-41d4-a716-446655440000"
    assert first["received_at"].endswith("Z")
    limited = inlet("events", "export", "--partner", "acme", "--limit", "1").stdout.splitlines()
    assert len(limited) == 1


def run_elsewhere(folder: Path, *args: str, **env: str | None) -> Result:
    """``inlet ARGS`` from ``folder``, with only the settings given in ``env``."""
    cleared: dict[str, str | None] = {
        name: None for name in ("DATABASE_URL", "REDIS_URL", "INLET_DATA_DIR", "INLET_SECRET_KEY")
    }
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return CliRunner().invoke(main, list(args), env={**cleared, **env})
    finally:
        os.chdir(cwd)


def assert_one_line_advice(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_the_cli_in_an_empty_folder_says_what_to_do_and_creates_nothing(tmp_path: Path) -> None:
    """Default settings from the wrong folder: no ./var/, no traceback, one line of advice."""
    result = run_elsewhere(tmp_path, "partners", "list")
    assert_one_line_advice(result, "inlet migrate", "DATABASE_URL", "INLET_DATA_DIR")
    assert list(tmp_path.iterdir()) == []


def test_an_unmigrated_sqlite_database_says_run_inlet_migrate(tmp_path: Path) -> None:
    path = tmp_path / "inlet.db"
    sqlite3.connect(path).close()
    result = run_elsewhere(
        tmp_path, "partners", "list", DATABASE_URL=f"sqlite:///{path}", INLET_SECRET_KEY=KEY
    )
    assert_one_line_advice(result, "inlet migrate", "DATABASE_URL")


def test_an_outdated_schema_says_run_inlet_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'inlet.db'}"
    migrations.upgrade(url, "0001")
    result = run_elsewhere(tmp_path, "keys", "list", "acme", DATABASE_URL=url, INLET_SECRET_KEY=KEY)
    assert_one_line_advice(result, "inlet migrate")


def test_an_unmigrated_postgresql_database_says_run_inlet_migrate(
    postgresql_url: str, tmp_path: Path
) -> None:
    url = sa.engine.make_url(postgresql_url)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS inlet_unmigrated"))
        conn.execute(sa.text("CREATE DATABASE inlet_unmigrated"))
    admin.dispose()
    target = url.set(database="inlet_unmigrated").render_as_string(hide_password=False)
    result = run_elsewhere(tmp_path, "partners", "list", DATABASE_URL=target, INLET_SECRET_KEY=KEY)
    assert_one_line_advice(result, "inlet migrate", "DATABASE_URL")


@pytest.mark.parametrize("args", [("partners", "list"), ("migrate",)])
def test_an_unreachable_database_says_check_database_url(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = run_elsewhere(
        tmp_path,
        *args,
        DATABASE_URL="postgresql://inlet:hunter2@127.0.0.1:9/inlet",
        INLET_SECRET_KEY=KEY,
    )
    assert_one_line_advice(result, "DATABASE_URL")
    assert "hunter2" not in result.output


@pytest.mark.parametrize("args", [("partners", "list"), ("migrate",)])
def test_an_invalid_log_level_is_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_elsewhere(tmp_path, *args, INLET_LOG_LEVEL="chatty")
    assert_one_line_advice(result, "INLET_LOG_LEVEL", "chatty")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def new_york_database(postgresql_url: str) -> Iterator[str]:
    """The PostgreSQL test database, its default time zone set to New York."""
    name = sa.engine.make_url(postgresql_url).database
    # No pool: the zone applies to sessions opened after the ALTER.
    plain = sa.create_engine(
        postgresql_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    with plain.connect() as conn:
        conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'"))
    try:
        with plain.connect() as conn:
            zone = conn.execute(sa.text("SHOW timezone")).scalar_one()
        assert zone == "America/New_York", "the zone is not set: the test proves nothing"
        yield postgresql_url
    finally:
        with plain.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" RESET timezone'))
        plain.dispose()


def test_export_works_whatever_the_database_time_zone(
    new_york_database: str, redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Year-1 timestamps read in New York's zone fall before datetime.min: UTC sessions."""
    empty_tables(new_york_database)
    settings = make_settings(new_york_database, redis_server.url, tmp_path)
    engine = make_engine(settings.database_url)
    partner = create_partner(engine, settings.secret_key, "acme")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW timezone")).scalar_one() == "UTC"
    engine.dispose()
    event = {
        "event_name": "first",
        "payload": {},
        "event_datetime": "0001-01-01T00:00:00Z",
        "event_id": "550e8400-e29b-41d4-a716-446655440001",
        "installation_id": "550e8400-e29b-41d4-a716-446655440000",
    }
    with TestClient(create_app(settings)) as client:
        response = client.post(URL, json={"events": [event]}, headers=basic_auth(partner))
    assert response.status_code == 204, response.text
    context.open_context(settings)
    try:
        build_worker(settings).work(burst=True, with_scheduler=False)
    finally:
        context.close_context()
    result = run_cli(settings, "events", "export", "--partner", "acme")
    (line,) = result.stdout.splitlines()
    assert orjson.loads(line)["event_datetime"] == "0001-01-01T00:00:00Z"
