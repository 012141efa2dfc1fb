"""The Thrad endpoint over HTTP: auth, shape, derivations, enrichment, dedup, limits."""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from app.credentials.api_keys import MISS, ApiKeyStore, NewApiKey, create_api_key, revoke_api_key
from app.credentials.partners import NewPartner, create_partner, revoke_partner, set_rate_limit
from app.db import thrad_events
from app.main import create_app
from app.ops import stats
from app.settings import Settings
from tests import geo
from tests.api import assert_error, basic_auth
from tests.events import (
    CHROME_WINDOWS,
    GOOGLEBOT,
    ONSIDE_URL,
    SAFARI_IPHONE,
    THRAD_REFERENCE_BODY,
    THRAD_STRING_FIELDS,
    onside_event,
)
from tests.events import THRAD_URL as URL
from tests.queued import queued_jobs, thrad_rows
from tests.services import wait_for

PROXY = "10.0.0.2"


@pytest.fixture
def thrad_settings(settings: Settings, city_db: Path) -> Settings:
    return settings.replace(geoip_database=city_db, trusted_proxies=(ip_network("10.0.0.0/8"),))


def make_client(settings: Settings, address: str = geo.LONDON) -> TestClient:
    return TestClient(create_app(settings), client=(address, 40000))


@pytest.fixture
def client(thrad_settings: Settings) -> Iterator[TestClient]:
    with make_client(thrad_settings) as test_client:
        yield test_client


@pytest.fixture
def key(engine: Engine, settings: Settings, partner: NewPartner) -> NewApiKey:
    return create_api_key(engine, settings.secret_key, partner.name, "backend")


@pytest.fixture
def bearer(key: NewApiKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.api_key}"}


@pytest.fixture
def run_worker(drain: Callable[..., None], thrad_settings: Settings) -> Callable[[], None]:
    return lambda: drain(thrad_settings)


def send(client: TestClient, bearer: dict[str, str], body: Any, **headers: str) -> Any:
    return client.post(URL, content=orjson.dumps(body), headers={**bearer, **headers})


@pytest.mark.parametrize("path", ["/v1/api/collect", "/api/collect"])
def test_reference_body_lands_with_server_fields(
    client: TestClient,
    bearer: dict[str, str],
    run_worker: Callable[[], None],
    engine: Engine,
    partner: NewPartner,
    path: str,
) -> None:
    response = client.post(
        path, content=THRAD_REFERENCE_BODY, headers={**bearer, "Content-Type": "application/json"}
    )
    assert response.status_code == 204 and response.content == b""
    run_worker()
    [row] = thrad_rows(engine)
    assert (row.tag_id, row.event_name, row.event_id) == ("<YOUR_TAG_ID>", "items_added", "evt_42")
    assert (row.click_id, row.session_id) == ("clk_xyz", "sess_abc")
    assert row.event_timestamp == 1748275200
    assert row.channel == "server"
    assert row.params == {
        "content_id": "sku_123",
        "quantity": 2,
        "value": 58.0,
        "currency": "USD",
        "integration": "partner_s2s",
        "partner_id": partner.id,
        "api_key_label": "backend",
    }
    assert row.ip_address == geo.LONDON
    assert (row.geo_country, row.geo_region, row.geo_city) == ("GB", "ENG", "London")
    assert (row.geo_lat, row.geo_lon) == (51.5142, -0.0931)


# -- 401 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token x"]
)
def test_no_bearer_token_gets_401_missing(
    client: TestClient, key: NewApiKey, redis: Redis, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = send(client, headers, {"event_name": "x"})
    assert response.json() == {"error": "Missing bearer token", "code": "unauthorized"}
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert queued_jobs(redis) == 0


def test_wrong_keys_get_401_invalid(
    client: TestClient, key: NewApiKey, redis: Redis, engine: Engine, settings: Settings
) -> None:
    other = create_api_key(engine, settings.secret_key, "acme", "other")
    wrong = [
        "nonsense",
        key.api_key[:-1] + ("x" if key.api_key[-1] != "x" else "y"),  # right id, wrong secret
        other.key_id + key.api_key[len(key.key_id) :],  # a secret under another key's id
        "ik_0000000000000000_" + key.api_key.split("_", 2)[2],  # unknown id
        key.key_id,
    ]
    # Twice each: the first asks the database, the second is answered from the cache.
    for token in wrong * 2:
        response = send(client, {"Authorization": f"Bearer {token}"}, {"event_name": "x"})
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid API key", "code": "unauthorized"}
        assert key.api_key not in response.text
    assert queued_jobs(redis) == 0


def test_cached_key_check_answers_as_the_database_does(
    key: NewApiKey, engine: Engine, settings: Settings
) -> None:
    store = ApiKeyStore(engine, settings.secret_key)
    assert store.check_cached(key.api_key) is MISS  # never looked up yet
    owner = store.check(key.api_key)
    assert owner is not None and store.check_cached(key.api_key) == owner
    assert store.check_cached(key.api_key[:-1] + ("x" if key.api_key[-1] != "x" else "y")) is None
    assert store.check_cached("nonsense") is None  # not a key's shape: nothing to look up
    expiring = ApiKeyStore(engine, settings.secret_key, ttl=0)
    assert expiring.check(key.api_key) == owner
    assert expiring.check_cached(key.api_key) is MISS  # a stale entry is never trusted


def test_accepted_events_are_counted_once(
    client: TestClient, bearer: dict[str, str], redis: Redis
) -> None:
    for n in range(3):
        assert send(client, bearer, {"event_name": "x", "event_id": f"e{n}"}).status_code == 204
    assert send(client, bearer, {"event_name": 1}).status_code == 400
    hour = stats.last_hour(redis)["acme"]
    assert (hour.accepted, hour.rejected) == (3, {"invalid_request": 1})


def test_revoked_key_stops_working_within_seconds_and_others_keep_working(
    client: TestClient, key: NewApiKey, bearer: dict[str, str], engine: Engine, settings: Settings
) -> None:
    second = create_api_key(engine, settings.secret_key, "acme", "second")
    assert send(client, bearer, {"event_name": "x"}).status_code == 204
    revoke_api_key(engine, key.key_id)
    revoked_at = time.monotonic()
    wait_for(
        lambda: send(client, bearer, {"event_name": "x"}).status_code == 401,
        timeout=10,
        interval=0.2,
        message="revocation to take effect",
    )
    assert time.monotonic() - revoked_at < 5
    second_bearer = {"Authorization": f"Bearer {second.api_key}"}
    assert send(client, second_bearer, {"event_name": "x"}).status_code == 204


def test_keys_of_a_revoked_partner_stop_working(
    client: TestClient, partner: NewPartner, bearer: dict[str, str], engine: Engine
) -> None:
    revoke_partner(engine, partner.name)
    wait_for(
        lambda: send(client, bearer, {"event_name": "x"}).status_code == 401,
        timeout=10,
        interval=0.2,
        message="partner revocation to take effect",
    )


# -- 400 / 413 / 415 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", None),
        (b"[]", None),
        (b"{}", "event_name"),
        (b'{"event_name": ""}', "event_name"),
        (b'{"event_name": 1}', "event_name"),
        (b'{"event_name": "x", "timestamp": "now"}', "timestamp"),
        (b'{"event_name": "x", "view_time_ms": "5"}', "view_time_ms"),
        (b'{"event_name": "x", "tag_id": 5}', "tag_id"),
        (b'{"event_name": "x", "user_agent": {}}', "user_agent"),
        (b'{"event_name": "x", "impression_state": false}', "impression_state"),
        (b'{"event_name": "x", "consent": true}', "consent"),
        (b'{"event_name": "x", "params": [1, 2]}', "params"),
        (b'{"event_name": "x", "params": {"a": "\\u0000"}}', "params"),
    ],
)
def test_wrong_shapes_get_400_naming_the_field(
    client: TestClient, bearer: dict[str, str], redis: Redis, body: bytes, field: str | None
) -> None:
    headers = {**bearer, "Content-Type": "application/json"}
    response = client.post(URL, content=body, headers=headers)
    errors = assert_error(response, 400, "invalid_request")["errors"]
    assert errors[0]["field"] == field
    assert queued_jobs(redis) == 0


def test_body_over_64_kib_gets_413(
    client: TestClient, bearer: dict[str, str], redis: Redis
) -> None:
    body = {"event_name": "x", "params": {"pad": "x" * (64 * 1024)}}
    assert_error(send(client, bearer, body), 413, "payload_too_large")
    assert queued_jobs(redis) == 0


def test_body_of_exactly_64_kib_is_accepted(client: TestClient, bearer: dict[str, str]) -> None:
    empty = orjson.dumps({"event_name": "x", "params": {"pad": ""}})
    body = {"event_name": "x", "params": {"pad": "x" * (64 * 1024 - len(empty))}}
    assert len(orjson.dumps(body)) == 64 * 1024
    assert send(client, bearer, body).status_code == 204


def test_gzip_bomb_gets_413(client: TestClient, bearer: dict[str, str], redis: Redis) -> None:
    bomb = gzip.compress(b'{"event_name": "x", "pad": "' + b"x" * (1024 * 1024) + b'"}')
    response = client.post(URL, content=bomb, headers={**bearer, "Content-Encoding": "gzip"})
    assert_error(response, 413, "payload_too_large")
    assert queued_jobs(redis) == 0


@pytest.mark.parametrize(
    "body",
    [
        gzip.compress(b'{"event_name": "a"}') + gzip.compress(b'{"event_name": "b"}'),
        gzip.compress(b'{"event_name": "a"}') + b"GARBAGE",
    ],
    ids=["two-gzip-members", "gzip-then-garbage"],
)
def test_gzip_with_trailing_data_gets_400(
    client: TestClient, bearer: dict[str, str], redis: Redis, body: bytes
) -> None:
    response = client.post(URL, content=body, headers={**bearer, "Content-Encoding": "gzip"})
    error = assert_error(response, 400, "invalid_request")
    assert "after the end of the compressed data" in error["error"]
    assert queued_jobs(redis) == 0


def test_gzip_without_content_encoding_is_named(
    client: TestClient, bearer: dict[str, str], redis: Redis
) -> None:
    response = client.post(URL, content=gzip.compress(b'{"event_name": "a"}'), headers=bearer)
    error = assert_error(response, 400, "invalid_request")
    assert "this looks gzip-compressed: send Content-Encoding: gzip" in error["error"]
    assert "UTF-8" not in str(error)
    assert queued_jobs(redis) == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_any_content_type_is_read_as_json(
    client: TestClient, bearer: dict[str, str], content_type: str | None, redis: Redis
) -> None:
    """Like `curl -d` without -H: a JSON body is an event whatever the Content-Type says."""
    headers = {"Content-Type": content_type} if content_type else {}
    assert send(client, bearer, {"event_name": "x"}, **headers).status_code == 204
    form = send(client, bearer, {}, **headers).status_code
    assert form == 400
    assert queued_jobs(redis) == 1


# -- what the server adds ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "tag_id"),
    [
        (
            {"tag_id": "tag_9", "page_url": "https://a.example/"},
            {"Origin": "https://o.example"},
            "tag_9",
        ),
        (
            {"page_url": "https://Shop.Example/cart"},
            {"Origin": "https://o.example"},
            "site:shop.example",
        ),
        ({}, {"Origin": "https://o.example", "Referer": "https://r.example/x"}, "site:o.example"),
        ({}, {"Referer": "https://r.example/x"}, "site:r.example"),
        ({}, {}, "site:unknown"),
    ],
)
def test_tag_id_fallbacks_land(
    client: TestClient,
    bearer: dict[str, str],
    run_worker: Callable[[], None],
    engine: Engine,
    body: dict[str, Any],
    headers: dict[str, str],
    tag_id: str,
) -> None:
    assert send(client, bearer, {"event_name": "x", **body}, **headers).status_code == 204
    run_worker()
    assert [r.tag_id for r in thrad_rows(engine)] == [tag_id]


def test_timestamp_defaults_to_receive_time_and_channel_is_overridden(
    client: TestClient, bearer: dict[str, str], run_worker: Callable[[], None], engine: Engine
) -> None:
    before = time.time()
    assert send(client, bearer, {"event_name": "x", "channel": "browser"}).status_code == 204
    after = time.time()
    run_worker()
    [row] = thrad_rows(engine)
    assert before - 1 <= row.event_timestamp <= after + 1
    assert row.channel == "server"
    assert row.params == {
        "integration": "partner_s2s",
        "partner_id": row.partner_id,
        "api_key_label": "backend",
    }


def test_every_optional_field_is_stored(
    client: TestClient, bearer: dict[str, str], run_worker: Callable[[], None], engine: Engine
) -> None:
    body = {
        "event_name": "contents_viewed",
        "tag_id": "t",
        "event_id": "e",
        "timestamp": 1.5,
        "page_url": "https://a.example/p",
        "referrer": "https://b.example/",
        "user_agent": "ua",
        "session_id": "s",
        "client_id": "c",
        "click_id": "k",
        "impression_id": "i",
        "bid_id": "b",
        "attribution_type": "view",
        "impression_state": "visible",
        "view_time_ms": 1234,
        "consent": {"gdpr": True},
        "params": {"p": [1, None]},
        "unknown_field": "ignored",
    }
    assert send(client, bearer, body).status_code == 204
    run_worker()
    [row] = thrad_rows(engine)
    for field in ("event_name", *THRAD_STRING_FIELDS, "consent"):
        assert getattr(row, field) == body[field], field
    assert (row.event_timestamp, row.view_time_ms) == (1.5, 1234)
    assert row.params["p"] == [1, None]


def test_spoofed_forwarded_for_is_ignored_from_an_untrusted_peer(
    thrad_settings: Settings,
    bearer: dict[str, str],
    run_worker: Callable[[], None],
    engine: Engine,
) -> None:
    with make_client(thrad_settings, geo.MILTON) as direct:
        assert (
            send(direct, bearer, {"event_name": "x"}, **{"X-Forwarded-For": geo.LONDON}).status_code
            == 204
        )
    run_worker()
    [row] = thrad_rows(engine)
    assert (row.ip_address, row.geo_city) == (geo.MILTON, "Milton")


def test_forwarded_for_is_believed_from_a_trusted_proxy(
    thrad_settings: Settings,
    bearer: dict[str, str],
    run_worker: Callable[[], None],
    engine: Engine,
) -> None:
    with make_client(thrad_settings, PROXY) as behind_proxy:
        headers = {"X-Forwarded-For": f"6.6.6.6, {geo.LONDON}"}  # the first hop is made up
        assert send(behind_proxy, bearer, {"event_name": "x"}, **headers).status_code == 204
        assert send(behind_proxy, bearer, {"event_name": "y"}).status_code == 204
    run_worker()
    first, second = thrad_rows(engine)
    assert (first.ip_address, first.geo_country) == (geo.LONDON, "GB")
    assert (second.ip_address, second.geo_country) == (PROXY, None)  # private: no geo


def test_every_forwarded_for_line_is_read_from_the_right(
    thrad_settings: Settings,
    bearer: dict[str, str],
    run_worker: Callable[[], None],
    engine: Engine,
) -> None:
    """Several X-Forwarded-For lines are one list (RFC 9110): the proxy's line is the last."""
    with make_client(thrad_settings, PROXY) as behind_proxy:
        response = behind_proxy.post(
            URL,
            content=orjson.dumps({"event_name": "x"}),
            headers=[
                *bearer.items(),
                ("X-Forwarded-For", "6.6.6.6"),  # made up by the client
                ("X-Forwarded-For", geo.LONDON),  # appended by the proxy
            ],
        )
        assert response.status_code == 204, response.text
    run_worker()
    [row] = thrad_rows(engine)
    assert (row.ip_address, row.geo_country) == (geo.LONDON, "GB")


def test_trusted_proxies_are_off_by_default(
    settings: Settings, bearer: dict[str, str], drain: Callable[..., None], engine: Engine
) -> None:
    assert settings.trusted_proxies == ()
    with make_client(settings, PROXY) as behind_proxy:
        assert (
            send(
                behind_proxy, bearer, {"event_name": "x"}, **{"X-Forwarded-For": geo.LONDON}
            ).status_code
            == 204
        )
    drain()
    assert [r.ip_address for r in thrad_rows(engine)] == [PROXY]


@pytest.mark.parametrize(
    ("user_agent", "browser", "os", "device"),
    [
        (CHROME_WINDOWS, "Chrome", "Windows", None),
        (SAFARI_IPHONE, "Mobile Safari", "iOS", "iPhone"),
        (GOOGLEBOT, "Googlebot", None, "Spider"),
    ],
)
def test_user_agent_is_parsed_in_the_worker(
    client: TestClient,
    bearer: dict[str, str],
    run_worker: Callable[[], None],
    engine: Engine,
    user_agent: str,
    browser: str,
    os: str | None,
    device: str | None,
) -> None:
    assert send(client, bearer, {"event_name": "x", "user_agent": user_agent}).status_code == 204
    run_worker()
    [row] = thrad_rows(engine)
    assert (row.ua_browser, row.ua_os, row.ua_device) == (browser, os, device)
    assert row.user_agent == user_agent


# -- dedup ---------------------------------------------------------------------


def test_dedup_on_partner_tag_and_event_id(
    client: TestClient,
    bearer: dict[str, str],
    run_worker: Callable[[], None],
    engine: Engine,
    settings: Settings,
) -> None:
    for body in [
        {"event_name": "x", "tag_id": "t1", "event_id": "e1"},
        {"event_name": "retry", "tag_id": "t1", "event_id": "e1"},  # a duplicate
        {"event_name": "x", "tag_id": "t2", "event_id": "e1"},  # another tag: kept
        {"event_name": "x", "page_url": "https://a.example/", "event_id": "e1"},
        {"event_name": "x", "page_url": "https://a.example/other", "event_id": "e1"},  # dup
    ]:
        assert send(client, bearer, body).status_code == 204
    other = create_partner(engine, settings.secret_key, "other")
    other_key = create_api_key(engine, settings.secret_key, other.name, "k")
    other_bearer = {"Authorization": f"Bearer {other_key.api_key}"}
    assert (
        send(
            client, other_bearer, {"event_name": "x", "tag_id": "t1", "event_id": "e1"}
        ).status_code
        == 204
    )  # another partner: kept
    run_worker()
    acme = thrad_rows(engine)[0].partner_id
    assert [(r.partner_id, r.tag_id, r.event_name) for r in thrad_rows(engine)] == [
        (acme, "t1", "x"),
        (acme, "t2", "x"),
        (acme, "site:a.example", "x"),
        (other.id, "t1", "x"),
    ]
    assert acme != other.id


def test_events_without_event_id_are_always_stored(
    client: TestClient, bearer: dict[str, str], run_worker: Callable[[], None], engine: Engine
) -> None:
    for _ in range(3):
        assert send(client, bearer, {"event_name": "x", "tag_id": "t1"}).status_code == 204
    run_worker()
    assert len(thrad_rows(engine)) == 3


def test_a_job_run_twice_lands_once(
    client: TestClient,
    bearer: dict[str, str],
    run_worker: Callable[[], None],
    engine: Engine,
    redis: Redis,
    thrad_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No event_id, and the job runs again (a lost acknowledgement): still one row."""
    from rq.job import Job

    from app.queue import JSONSerializer, make_queue

    assert send(client, bearer, {"event_name": "x"}).status_code == 204
    [job_id] = make_queue(thrad_settings, redis).job_ids
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    run_worker()
    make_queue(thrad_settings, redis).enqueue_job(job)
    with caplog.at_level(logging.INFO, logger="inlet.jobs"):
        run_worker()
    # The second run did happen, and found its event already stored.
    [second] = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "inlet.jobs"]
    assert (second["job_id"], second["inserted"], second["duplicates"]) == (job_id, 0, 1)
    assert len(thrad_rows(engine)) == 1


# -- 429 / 503 -----------------------------------------------------------------


def test_one_rate_limit_per_partner_across_both_endpoints(
    client: TestClient, partner: NewPartner, bearer: dict[str, str], engine: Engine, redis: Redis
) -> None:
    set_rate_limit(engine, partner.name, "3/minute")
    statuses = [
        send(client, bearer, {"event_name": "x"}).status_code,
        client.post(
            ONSIDE_URL, json={"events": [onside_event(1)]}, headers=basic_auth(partner)
        ).status_code,
        send(client, bearer, {"event_name": "x"}).status_code,
    ]
    limited = send(client, bearer, {"event_name": "x"})
    assert statuses == [204, 204, 204]
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    onside = client.post(
        ONSIDE_URL, json={"events": [onside_event(2)]}, headers=basic_auth(partner)
    )
    assert onside.status_code == 429
    assert queued_jobs(redis) == 3


def test_redis_down_gets_503(
    thrad_settings: Settings, bearer: dict[str, str], tmp_path: Path
) -> None:
    down = thrad_settings.replace(redis_url=f"unix://{tmp_path}/nothing-here.sock")
    with make_client(down) as c:
        response = send(c, bearer, {"event_name": "x"})
    assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"]


@pytest.mark.parametrize("field", ["tag_id", "event_id"])
def test_a_dedup_key_too_long_to_index_is_refused_not_lost(
    client: TestClient, bearer: dict[str, str], redis: Redis, field: str
) -> None:
    """PostgreSQL indexes ~2.7 KB at most: a 6,000-character id got a 204, then never landed."""
    response = send(client, bearer, {"event_name": "x", field: "a" * 6000})
    errors = assert_error(response, 400, "invalid_request")["errors"]
    assert [e["field"] for e in errors] == [field]
    assert queued_jobs(redis) == 0


def test_ids_at_the_limit_land_on_both_databases(
    client: TestClient, bearer: dict[str, str], run_worker: Callable[[], None], engine: Engine
) -> None:
    # 256 four-byte characters each: the largest key the endpoint accepts.
    body = {"event_name": "x", "tag_id": "\U0001f600" * 256, "event_id": "\U0001f601" * 256}
    assert send(client, bearer, body).status_code == 204
    assert (
        send(
            client, bearer, {"event_name": "y", "page_url": "https://" + "h" * 3000 + ".com/"}
        ).status_code
        == 204
    )
    run_worker()
    stored = thrad_rows(engine)
    assert len(stored) == 2
    assert {r.tag_id for r in stored} == {"\U0001f600" * 256, "site:unknown"}


def test_an_empty_event_id_is_no_event_id(
    client: TestClient, bearer: dict[str, str], run_worker: Callable[[], None], engine: Engine
) -> None:
    """Three different events with event_id "" are three rows, as without an id."""
    for n in range(3):
        body = {"event_name": f"e{n}", "tag_id": "t", "event_id": "" if n < 2 else "  "}
        assert send(client, bearer, body).status_code == 204
    run_worker()
    assert sorted(r.event_name for r in thrad_rows(engine)) == ["e0", "e1", "e2"]


def test_absent_consent_is_sql_null(
    client: TestClient, bearer: dict[str, str], run_worker: Callable[[], None], engine: Engine
) -> None:
    assert send(client, bearer, {"event_name": "x"}).status_code == 204
    assert send(client, bearer, {"event_name": "y", "consent": {"ads": True}}).status_code == 204
    run_worker()
    with engine.connect() as conn:
        absent = (
            conn.execute(
                sa.select(thrad_events.c.event_name).where(thrad_events.c.consent.is_(None))
            )
            .scalars()
            .all()
        )
    assert absent == ["x"]
