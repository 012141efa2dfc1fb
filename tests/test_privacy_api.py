"""Privacy policies end to end: set with the CLI, applied by the endpoints, seen in SQL,
Redis and the logs (the transforms themselves: test_privacy.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import Result
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import NewApiKey, create_api_key
from app.credentials.partners import NewPartner
from app.main import create_app
from app.privacy import hash_value, pii_key
from app.settings import Settings
from tests import geo
from tests.api import basic_auth
from tests.events import ONSIDE_URL, THRAD_URL, onside_event
from tests.queued import onside_rows, thrad_rows, unreachable

PROXY = "10.0.0.2"
# A London address of the test database, whose /24 (81.2.69.0) is not in it:
# geo from the truncated address would be empty.
CLIENT = geo.LONDON
TRUNCATED = "81.2.69.0"


@pytest.fixture
def thrad_settings(settings: Settings, city_db: Path) -> Settings:
    return settings.replace(geoip_database=city_db, trusted_proxies=(ip_network("10.0.0.0/8"),))


@pytest.fixture
def key(engine: Engine, settings: Settings, partner: NewPartner) -> NewApiKey:
    return create_api_key(engine, settings.secret_key, partner.name, "backend")


@pytest.fixture
def client(thrad_settings: Settings) -> Iterator[TestClient]:
    """Behind a trusted proxy that says the client is CLIENT."""
    with TestClient(create_app(thrad_settings), client=(PROXY, 40000)) as test_client:
        yield test_client


def collect(client: TestClient, key: NewApiKey, body: dict[str, Any]) -> None:
    response = client.post(
        THRAD_URL,
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key.api_key}", "X-Forwarded-For": CLIENT},
    )
    assert response.status_code == 204, response.text


def set_policy(inlet: Callable[..., Result], *args: str) -> Result:
    return inlet("partners", "set", "acme", *args)


def job_data(redis: Redis) -> bytes:
    """Everything queued, as Redis holds it."""
    return b"".join(redis.hget(k, "data") or b"" for k in redis.keys("rq:job:*"))


@pytest.mark.parametrize(("mode", "stored"), [("truncate", TRUNCATED), ("drop", None)])
def test_ip_mode_cuts_the_address_before_it_is_queued_and_geo_comes_from_the_full_one(
    inlet: Callable[..., Result],
    client: TestClient,
    key: NewApiKey,
    redis: Redis,
    drain: Callable[..., None],
    thrad_settings: Settings,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    stored: str | None,
) -> None:
    set_policy(inlet, "--ip-mode", mode)
    caplog.set_level(logging.DEBUG)
    collect(client, key, {"event_name": "items_added", "client_id": "c"})
    queued = job_data(redis)
    assert b"items_added" in queued, "nothing queued: the test proves nothing"
    assert CLIENT.encode() not in queued
    drain(thrad_settings)
    [row] = thrad_rows(engine)
    assert row.ip_address == stored
    assert (row.geo_country, row.geo_city) == ("GB", "London")
    assert CLIENT not in caplog.text
    assert any(r.name == "inlet.access" for r in caplog.records), "no access log: proves nothing"


def test_full_keeps_the_address_and_the_worker_looks_geo_up(
    client: TestClient,
    key: NewApiKey,
    redis: Redis,
    drain: Callable[..., None],
    thrad_settings: Settings,
    engine: Engine,
) -> None:
    collect(client, key, {"event_name": "items_added"})
    assert b'"geo"' not in job_data(redis)
    drain(thrad_settings)
    [row] = thrad_rows(engine)
    assert (row.ip_address, row.geo_city) == (CLIENT, "London")


def test_a_failed_job_holds_no_full_address(
    inlet: Callable[..., Result],
    key: NewApiKey,
    drain: Callable[..., None],
    thrad_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not in the failed registry, `inlet failed show`, nor the worker's failure logs."""
    set_policy(inlet, "--ip-mode", "truncate")
    caplog.set_level(logging.DEBUG)
    no_retries = thrad_settings.replace(retry_delays=())
    with TestClient(create_app(no_retries), client=(PROXY, 40000)) as client:
        collect(client, key, {"event_name": "items_added"})
    drain(unreachable(no_retries))
    [listed] = inlet("failed", "list", "--json").stdout.splitlines()
    shown = inlet("failed", "show", orjson.loads(listed)["job_id"]).stdout
    assert TRUNCATED in shown and CLIENT not in shown
    assert "OperationalError" in caplog.text, "the job did not fail: the test proves nothing"
    assert CLIENT not in caplog.text


@pytest.mark.parametrize(
    ("policy", "consent"),
    [
        ((), {"analytics": False}),
        ((), {"advertising": "denied"}),
        (("--consent-map", "advertising=ad_storage"), {"ad_storage": "no"}),
        (("--consent-map", "analytics=purposes.stats"), {"purposes": {"stats": 0}}),
    ],
)
def test_a_refused_consent_drops_address_geo_user_agent_and_ad_ids(
    inlet: Callable[..., Result],
    client: TestClient,
    key: NewApiKey,
    redis: Redis,
    drain: Callable[..., None],
    thrad_settings: Settings,
    engine: Engine,
    policy: tuple[str, ...],
    consent: dict[str, Any],
) -> None:
    if policy:
        set_policy(inlet, *policy)
    body = {
        "event_name": "items_added",
        "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "click_id": "clk_1",
        "impression_id": "imp_1",
        "bid_id": "bid_1",
        "client_id": "cli_1",
        "consent": consent,
    }
    collect(client, key, body)
    queued = job_data(redis)
    assert CLIENT.encode() not in queued and b"clk_1" not in queued
    drain(thrad_settings)
    [row] = thrad_rows(engine)
    dropped = (
        row.ip_address,
        row.geo_country,
        row.user_agent,
        row.ua_browser,
        row.click_id,
        row.impression_id,
        row.bid_id,
    )
    assert dropped == (None,) * 7
    assert (row.client_id, row.consent) == ("cli_1", consent)


def test_a_mapped_flag_replaces_the_purpose_name(
    inlet: Callable[..., Result],
    client: TestClient,
    key: NewApiKey,
    drain: Callable[..., None],
    thrad_settings: Settings,
    engine: Engine,
) -> None:
    """Mapped, `advertising` is read from the partner's flag only: its own name says nothing."""
    set_policy(inlet, "--consent-map", "advertising=ad_storage")
    collect(client, key, {"event_name": "x", "click_id": "clk", "consent": {"advertising": False}})
    drain(thrad_settings)
    [row] = thrad_rows(engine)
    assert (row.ip_address, row.click_id) == (CLIENT, "clk")


def test_pii_paths_are_hashed_or_dropped_in_both_formats_and_hashes_join(
    inlet: Callable[..., Result],
    client: TestClient,
    key: NewApiKey,
    partner: NewPartner,
    redis: Redis,
    drain: Callable[..., None],
    thrad_settings: Settings,
    engine: Engine,
) -> None:
    set_policy(
        inlet,
        *("--pii-hash", "payload.email", "--pii-hash", "params.user.email"),
        *("--pii-drop", "payload.phone", "--pii-drop", "params.nothing.here"),
    )
    batch = [
        onside_event(1, payload={"email": "a@example.com", "phone": "+44", "amount": "9.99"}),
        onside_event(2, payload={"amount": "1.00"}),  # matches no path: stored as sent
    ]
    response = client.post(
        ONSIDE_URL,
        content=orjson.dumps({"events": batch}),
        headers={**basic_auth(partner), "Content-Type": "application/json"},
    )
    assert response.status_code == 204, response.text
    collect(client, key, {"event_name": "x", "params": {"user": {"email": "a@example.com"}}})
    assert b"a@example.com" not in job_data(redis) and b"+44" not in job_data(redis)
    drain(thrad_settings)
    first, second = onside_rows(engine)
    hashed = hash_value(pii_key(thrad_settings.secret_key, partner.id), "a@example.com")
    assert first.payload == {"email": hashed, "amount": "9.99"}
    assert second.payload == {"amount": "1.00"}
    [row] = thrad_rows(engine)
    assert row.params["user"] == {"email": hashed}  # the same value joins across formats


def test_a_big_batch_is_protected_too(
    inlet: Callable[..., Result],
    client: TestClient,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
) -> None:
    """Past INLINE_PROTECT_EVENTS the paths are applied in a thread: same result."""
    set_policy(inlet, "--pii-drop", "payload.email")
    batch = [onside_event(n, payload={"email": f"{n}@x.com", "n": n}) for n in range(200)]
    response = client.post(
        ONSIDE_URL,
        content=orjson.dumps({"events": batch}),
        headers={**basic_auth(partner), "Content-Type": "application/json"},
    )
    assert response.status_code == 204, response.text
    drain()
    rows = onside_rows(engine)
    assert len(rows) == 200 and all(set(r.payload) == {"n"} for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ip-mode", "anonymize"), "--ip-mode must be one of full, truncate, drop"),
        (("--pii-hash", "email"), "--pii-hash: a path starts with payload. or params."),
        (("--pii-drop", "payload..email"), "--pii-drop: a path has an empty key"),
        (("--pii-hash", "payload"), "must name a key below payload"),
        (("--consent-map", "marketing=ads"), "--consent-map: the purpose must be one of"),
        (("--consent-map", "advertising"), "expected PURPOSE=FLAG"),
    ],
)
def test_bad_privacy_policies_are_refused_and_change_nothing(
    inlet: Callable[..., Result], partner: NewPartner, args: tuple[str, ...], message: str
) -> None:
    result = inlet("partners", "set", "acme", "--ip-mode", "drop", *args, expect=1)
    assert message in result.stderr
    shown = orjson.loads(inlet("partners", "show", "acme", "--json").stdout)
    assert shown["overrides"] == {}


def test_privacy_policies_are_set_shown_and_unset(
    inlet: Callable[..., Result], partner: NewPartner
) -> None:
    set_policy(
        inlet,
        *("--ip-mode", "Truncate", "--consent-map", "advertising=ad_storage"),
        *("--pii-hash", "payload.email", "--pii-hash", "payload.email", "--pii-drop", "params.x"),
    )
    shown = orjson.loads(inlet("partners", "show", "acme", "--json").stdout)
    assert shown["overrides"] == {
        "ip_mode": "truncate",
        "consent_map": {"advertising": "ad_storage"},
        "pii_hash": ["payload.email"],
        "pii_drop": ["params.x"],
    }
    text = inlet("partners", "show", "acme").stdout
    assert "truncate  (set)" in text and "payload.email  (set)" in text
    set_policy(inlet, "--pii-hash", "default", "--ip-mode", "default")
    shown = orjson.loads(inlet("partners", "show", "acme", "--json").stdout)
    assert shown["policy"]["ip_mode"] == "full" and shown["policy"]["pii_hash"] == []
    assert set(shown["overrides"]) == {"consent_map", "pii_drop"}


def test_the_ip_mode_default_comes_from_the_settings(
    settings: Settings, partner: NewPartner
) -> None:
    from tests.cli_runner import run_cli

    shown = run_cli(settings.replace(ip_mode="drop"), "partners", "show", "acme", "--json")
    assert orjson.loads(shown.stdout)["policy"]["ip_mode"] == "drop"


def test_a_warned_violation_keeps_no_pii_value(
    inlet: Callable[..., Result],
    client: TestClient,
    partner: NewPartner,
    drain: Callable[..., None],
    engine: Engine,
    tmp_path: Path,
) -> None:
    """Warn mode stores the validator's message, which quotes the value: not for a PII path."""
    schema = tmp_path / "purchase.json"
    schema.write_bytes(
        orjson.dumps(
            {
                "type": "object",
                "properties": {"email": {"type": "integer"}, "amount": {"type": "number"}},
            }
        )
    )
    inlet(
        "schemas", "set", "--partner", "acme", "purchase_completed", str(schema), "--mode", "warn"
    )
    set_policy(inlet, "--pii-hash", "payload.email")
    event = onside_event(1, payload={"email": "secret@example.com", "amount": "nine"})
    response = client.post(
        ONSIDE_URL,
        content=orjson.dumps({"events": [event]}),
        headers={**basic_auth(partner), "Content-Type": "application/json"},
    )
    assert response.status_code == 204, response.text
    drain()
    [row] = onside_rows(engine)
    by_field = {v["field"]: v["message"] for v in row.violations}
    assert set(by_field) == {"payload.email", "payload.amount"}, "no violations: proves nothing"
    # No message quotes a value (app/quality/schemas.py): this one names the type.
    assert by_field["payload.amount"] == 'is not of type "number"'
    assert "secret@example.com" not in str(row.violations) + str(row.payload)
