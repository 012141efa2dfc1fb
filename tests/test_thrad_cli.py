"""``inlet keys`` and ``inlet partners create``'s first key; ``inlet events export``'s sources."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from redis import Redis
from sqlalchemy.engine import Engine

from app import queue as q
from app.cli import main
from app.credentials.api_keys import ApiKeyStore, split_key
from app.db import api_keys
from app.settings import Settings
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture
def inlet(settings: Settings) -> Callable[..., Result]:
    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "INLET_DATA_DIR": str(settings.data_dir),
        "INLET_SECRET_KEY": TEST_SECRET_KEY,
    }

    def run(*args: str, ok: bool = True) -> Result:
        result = CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)
        assert (result.exit_code == 0) is ok, result.output
        return result

    return run


def test_partners_create_prints_a_first_api_key_that_works(
    inlet: Callable[..., Result], engine: Engine, settings: Settings
) -> None:
    created = orjson.loads(inlet("partners", "create", "acme", "--json").stdout)
    assert set(created) == {"name", "username", "password", "api_key"}
    owner = ApiKeyStore(engine, settings.secret_key).check(created["api_key"])
    assert owner is not None and (owner.partner.name, owner.label) == ("acme", "default")
    human = inlet("partners", "create", "globex").stdout
    assert "api key:" in human and "ik_" in human


def test_keys_create_list_revoke(
    inlet: Callable[..., Result], engine: Engine, settings: Settings
) -> None:
    inlet("partners", "create", "acme")
    new = orjson.loads(inlet("keys", "create", "acme", "--label", "billing", "--json").stdout)
    assert set(new) == {"partner", "key_id", "label", "api_key"}
    assert split_key(new["api_key"]) is not None and new["api_key"].startswith(new["key_id"] + "_")
    listed = [
        orjson.loads(line) for line in inlet("keys", "list", "acme", "--json").stdout.splitlines()
    ]
    assert [(k["label"], k["status"]) for k in listed] == [
        ("default", "active"),
        ("billing", "active"),
    ]
    # Listing never shows a secret.
    assert new["api_key"] not in inlet("keys", "list", "acme").stdout

    inlet("keys", "revoke", new["key_id"])
    assert ApiKeyStore(engine, settings.secret_key).check(new["api_key"]) is None
    assert "revoked" in inlet("keys", "list", "acme").stdout
    assert "already revoked" in inlet("keys", "revoke", new["key_id"], ok=False).output
    assert "no API key" in inlet("keys", "revoke", "ik_nope", ok=False).output
    assert "no partner" in inlet("keys", "create", "nobody", ok=False).output

    # Only the keyed hash is stored.
    with engine.connect() as conn:
        stored = conn.execute(sa.select(api_keys.c.key_hash)).scalars().all()
    assert all(
        len(h) == 32 and split_key(new["api_key"])[1].encode() not in h  # type: ignore[index]
        for h in stored
    )


def enqueue(
    settings: Settings,
    redis: Redis,
    endpoint: q.Endpoint,
    event: dict[str, Any],
    when: int,
    partner_id: int,
) -> None:
    q.enqueue_batch(
        q.make_queue(settings, redis),
        settings,
        endpoint=endpoint,
        partner_id=partner_id,
        partner_name="acme",
        events=[event],
        received_at=datetime(2026, 5, 26, 12, 0, when, tzinfo=UTC),
    )


def test_export_merges_both_sources_oldest_first(
    inlet: Callable[..., Result],
    settings: Settings,
    redis: Redis,
    engine: Engine,
    drain: Callable[..., None],
) -> None:
    created = orjson.loads(inlet("partners", "create", "acme", "--json").stdout)
    key_row = ApiKeyStore(engine, settings.secret_key).check(created["api_key"])
    assert key_row is not None
    partner_id = key_row.partner.id
    onside = {
        "event_id": "550e8400-e29b-41d4-a716-446655440000",
        "installation_id": "550e8400-e29b-41d4-a716-446655440000",
        "event_name": "purchase_completed",
        "event_datetime": "2026-05-05T12:00:00+00:00",
        "payload": {"amount": "9.99"},
    }
    thrad = {
        "event_name": "items_added",
        "tag_id": "t",
        "timestamp": 1748275200,
        "channel": "server",
        "params": {"integration": "partner_s2s"},
        "ip_address": "81.2.69.160",
        "ingest_id": "c0ffee00-0000-4000-8000-000000000000",
        "api_key_id": key_row.api_key_id,
        "user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    }
    enqueue(settings, redis, "thrad", {**thrad, "event_id": "late"}, 3, partner_id)
    enqueue(settings, redis, "onside", onside, 2, partner_id)
    enqueue(
        settings,
        redis,
        "thrad",
        {**thrad, "ingest_id": "c0ffee00-0000-4000-8000-000000000001"},
        1,
        partner_id,
    )
    drain()

    lines = [
        orjson.loads(line)
        for line in inlet("events", "export", "--partner", "acme").stdout.splitlines()
    ]
    assert [(line["source"], line["received_at"]) for line in lines] == [
        ("thrad", "2026-05-26T12:00:01Z"),
        ("onside", "2026-05-26T12:00:02Z"),
        ("thrad", "2026-05-26T12:00:03Z"),
    ]
    first = lines[0]
    assert first["timestamp"] == 1748275200 and isinstance(first["timestamp"], int)
    assert (first["channel"], first["tag_id"], first["event_id"]) == ("server", "t", None)
    # The packaged GeoLite2 database: geo works with no setting.
    assert first["geo_country"] == "GB"
    assert (first["ua_browser"], first["ua_device"]) == ("Googlebot", "Spider")
    assert set(first) >= {
        "page_url",
        "referrer",
        "session_id",
        "client_id",
        "click_id",
        "impression_id",
        "bid_id",
        "attribution_type",
        "consent",
        "params",
        "ip_address",
        "geo_region",
        "geo_city",
        "geo_lat",
        "geo_lon",
        "ua_browser_version",
        "ua_os",
        "ua_os_version",
        "user_agent",
        "impression_state",
        "view_time_ms",
    }
    assert "api_key_id" not in first and "ingest_id" not in first
    assert lines[1]["event_name"] == "purchase_completed"

    limited = inlet("events", "export", "--partner", "acme", "--limit", "2").stdout.splitlines()
    assert [orjson.loads(line)["source"] for line in limited] == ["thrad", "onside"]
