"""``inlet keys`` and ``inlet partners create``'s first key; ``inlet events export``'s sources."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa
from click.testing import Result
from redis import Redis
from sqlalchemy.engine import Engine

from app.credentials.api_keys import ApiKeyStore, split_key
from app.db import api_keys
from app.settings import Settings
from tests.events import ONSIDE_EVENT, THRAD_STRING_FIELDS, thrad_event
from tests.queued import enqueue


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
    assert "already revoked" in inlet("keys", "revoke", new["key_id"], expect=1).output
    assert "no API key" in inlet("keys", "revoke", "ik_nope", expect=1).output
    assert "no partner" in inlet("keys", "create", "nobody", expect=1).output

    # Only the keyed hash is stored.
    with engine.connect() as conn:
        stored = conn.execute(sa.select(api_keys.c.key_hash)).scalars().all()
    assert all(
        len(h) == 32 and split_key(new["api_key"])[1].encode() not in h  # type: ignore[index]
        for h in stored
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
    acme = key_row.partner

    def at(second: int) -> datetime:
        return datetime(2026, 5, 26, 12, 0, second, tzinfo=UTC)

    thrad = thrad_event(api_key_id=key_row.api_key_id)
    late = [{**thrad, "event_id": "late"}]
    enqueue(settings, redis, acme, late, endpoint="thrad", received_at=at(3))
    enqueue(settings, redis, acme, [ONSIDE_EVENT], received_at=at(2))
    earliest = [{**thrad, "ingest_id": "c0ffee00-0000-4000-8000-000000000001"}]
    enqueue(settings, redis, acme, earliest, endpoint="thrad", received_at=at(1))
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
        *THRAD_STRING_FIELDS,
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
        "view_time_ms",
    }
    assert "api_key_id" not in first and "ingest_id" not in first
    assert lines[1]["event_name"] == "purchase_completed"

    limited = inlet("events", "export", "--partner", "acme", "--limit", "2").stdout.splitlines()
    assert [orjson.loads(line)["source"] for line in limited] == ["thrad", "onside"]
